"""Forwards and dividend yields: from a vendor forward, or implied by put-call parity on the chain.

Put-call parity for European options, C - P = e^{-rT} (F - K), gives one forward per strike where
both sides are quoted: F_i = K_i + e^{rT} (C_mid - P_mid). Data vendors take the strikes nearest
the money, where both quotes are tight; so does :func:`parity_forwards` (the median over up to
``n_strikes``). The continuous dividend (carry) yield is then q = r - ln(F/S)/T.

For American options parity is only a pair of bounds (early exercise adds a premium to both
sides), so the engine applies the implied forward to European-style rows only; American rows use
the vendor's forward or the chain's continuous yield.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def dividend_yield_from_forward(S, F, T, r) -> np.ndarray:
    """Continuous dividend yield implied by a forward: q = r - ln(F/S)/T."""
    S, F, T, r = (np.asarray(a, dtype=np.float64) for a in (S, F, T, r))
    with np.errstate(divide="ignore", invalid="ignore"):
        return r - np.log(F / S) / T


def parity_forwards(chain: pd.DataFrame, n_strikes: int = 5) -> pd.DataFrame:
    """One row per (underlying, expiration) with at least one strike quoted on both sides:
    ``forward``, ``dividend_yield`` (q = r - ln(F/S)/T) and ``pairs`` (strikes used).

    Uses the chain's ``bid``/``ask`` mids where the bid is positive, ``rate``, ``underlying_price``,
    ``quote_date`` and ``expiration``. Expiries with no usable pair are absent."""
    columns = ["underlying", "expiration", "forward", "dividend_yield", "pairs"]
    mid = (chain["bid"] + chain["ask"]) / 2
    t = (chain["expiration"] - chain["quote_date"]).dt.days / 365.0
    base = chain.assign(mid=mid, t=t)[chain["bid"] > 0]
    key = ["underlying", "expiration", "strike"]
    calls = base[base["option_type"] == "C"].set_index(key)
    puts = base[base["option_type"] == "P"].set_index(key)
    pairs = calls[["mid", "t", "rate", "underlying_price"]].join(puts[["mid"]], rsuffix="_put", how="inner")
    pairs = pairs.reset_index()
    pairs = pairs[pairs["t"] > 0]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    pairs["dist"] = (pairs["strike"] - pairs["underlying_price"]).abs()
    pairs["fwd"] = pairs["strike"] + np.exp(pairs["rate"] * pairs["t"]) * (pairs["mid"] - pairs["mid_put"])
    near = pairs.sort_values("dist", kind="stable").groupby(["underlying", "expiration"]).head(n_strikes)
    agg = near.groupby(["underlying", "expiration"]).agg(
        forward=("fwd", "median"), t=("t", "first"), rate=("rate", "first"), spot=("underlying_price", "first"),
        pairs=("fwd", "size")).reset_index()
    agg = agg[agg["forward"] > 0]
    agg["dividend_yield"] = dividend_yield_from_forward(agg["spot"], agg["forward"], agg["t"], agg["rate"])
    return agg[columns].reset_index(drop=True)


def implied_dividend_yields(chain: pd.DataFrame, n_strikes: int = 5) -> pd.Series:
    """Per-row dividend yield from :func:`parity_forwards` (clipped to +-500%); 0 where the row's
    expiry has no usable call/put pair."""
    agg = parity_forwards(chain, n_strikes).set_index(["underlying", "expiration"])
    keys = pd.MultiIndex.from_frame(chain[["underlying", "expiration"]])
    q = agg["dividend_yield"].clip(-5.0, 5.0).reindex(keys).to_numpy(dtype=np.float64)
    return pd.Series(np.nan_to_num(q, nan=0.0), index=chain.index)
