"""``greeks_table``: the chain with implied volatility and Greeks per contract (``option_greeks``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import _runtime
from .american import american_greeks, american_implied_vol, early_exercise_premium_bound
from .american import prepare as prepare_american
from .european import bsm_greeks
from .forwards import dividend_yield_from_forward, parity_forwards
from .implied import IV_STATUS_ALL, implied_vol, iv_two_steps_kernel

MODELS = {"E": "bsm", "A": "american_qdfp"}
CARRY_SOURCES = ("vendor forward", "parity forward", "dividend yield")


def carry_yields(chain: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(q per row, its source per row): the vendor's forward where the row has one; else, for
    European-style rows, the forward implied by put-call parity on the chain's expiry; else the
    chain's continuous ``dividend_yield``."""
    t = (chain["expiration"] - chain["quote_date"]).dt.days.to_numpy(dtype=np.float64) / 365.0
    S = chain["underlying_price"].to_numpy(dtype=np.float64)
    r = chain["rate"].to_numpy(dtype=np.float64)
    fwd = chain["forward"].to_numpy(dtype=np.float64)
    q = chain["dividend_yield"].to_numpy(dtype=np.float64).copy()
    source = np.full(len(chain), CARRY_SOURCES[2], dtype=object)
    european = (chain["exercise_style"] == "E").to_numpy()
    if european.any():
        par = parity_forwards(chain[european & ~np.isfinite(fwd)])
        if not par.empty:
            keys = pd.MultiIndex.from_frame(chain[["underlying", "expiration"]])
            q_par = par.set_index(["underlying", "expiration"])["dividend_yield"].reindex(keys).to_numpy(np.float64)
            use = european & ~np.isfinite(fwd) & np.isfinite(q_par)
            q[use] = q_par[use]
            source[use] = CARRY_SOURCES[1]
    vendor = np.isfinite(fwd)
    q[vendor] = dividend_yield_from_forward(S[vendor], fwd[vendor], t[vendor], r[vendor])
    source[vendor] = CARRY_SOURCES[0]
    return q, source


def _mid(chain: pd.DataFrame) -> pd.Series:
    return ((chain["bid"] + chain["ask"]) / 2.0).where(chain["bid"] > 0)


def _may_exercise_early(chain: pd.DataFrame, q: np.ndarray) -> np.ndarray:
    """American rows where early exercise can pay: a call with a positive carry yield, a put at a
    positive rate (the others are priced exactly by the European model)."""
    american = (chain["exercise_style"] == "A").to_numpy()
    is_call = (chain["option_type"] == "C").to_numpy()
    return american & np.where(is_call, q > 0, chain["rate"].to_numpy(dtype=np.float64) > 0)


def prepare_greeks_table(chain: pd.DataFrame, *, price_column: str = "mid") -> list:
    """Start loading, in background threads, the kernels that :func:`greeks_table` of ``chain``
    will run first and longest (the European IV, the American IV and Greeks, at the padded sizes
    the chain needs), and return their futures. A fresh process spends 1.3-1.5 s per American
    kernel and size reading it back from the compile cache, on one core: started while the chain
    is still being validated (``option_chains`` calls this), that time is hidden. Nothing else
    changes: ``greeks_table`` waits for what is not ready, and loads what was never started."""
    price = (_mid(chain) if price_column == "mid" else chain[price_column]).to_numpy(dtype=np.float64)
    quoted = np.isfinite(price)
    if not quoted.any():
        return []
    futures = _runtime.prepare(iv_two_steps_kernel, int(quoted.sum()), ("<f8",) * 6 + ("|b1",), 2)
    american = chain[quoted & (chain["exercise_style"] == "A").to_numpy()]
    if len(american):
        q, _ = carry_yields(american)  # American rows only: no parity forwards to fit
        early = int(_may_exercise_early(american, q).sum())
        if early:
            futures += prepare_american(early)
    return futures


def greeks_table(chain, *, price_column: str = "mid"):
    """The chain plus ``mid, dte, t_years, carry_yield, carry_source, pricing_model, iv, iv_status``,
    the Greeks and ``model_price``.

    IV is solved from the mid quote (NaN when there is no bid: a one-sided quote has no mid) with
    the model of the contract's exercise style: Black-Scholes-Merton for European, the American
    fixed-point engine for American (its Greeks are exact derivatives of that model). The carry
    yield comes from :func:`carry_yields`. Greeks are at the IV. Units: theta per calendar day,
    vega per volatility point, rho per rate point, vanna (change of delta) per volatility point,
    volga (change of vega per point) per volatility point, charm (change of delta) per calendar day.
    """
    out = chain.copy()
    out["mid"] = _mid(out)
    dte = (out["expiration"] - out["quote_date"]).dt.days.astype("int64")
    out["dte"] = dte
    t = dte.to_numpy(dtype=np.float64) / 365.0
    out["t_years"] = t
    S = out["underlying_price"].to_numpy(dtype=np.float64)
    r = out["rate"].to_numpy(dtype=np.float64)
    q, source = carry_yields(out)
    out["carry_yield"] = q
    out["carry_source"] = source
    K = out["strike"].to_numpy(dtype=np.float64)
    is_call = (out["option_type"] == "C").to_numpy()
    price = out[price_column].to_numpy(dtype=np.float64)
    american = (out["exercise_style"] == "A").to_numpy()
    out["pricing_model"] = np.where(american, MODELS["A"], MODELS["E"])

    n = len(out)
    iv = np.full(n, np.nan)
    status = np.full(n, 4, dtype=np.int8)
    greeks = {k: np.full(n, np.nan) for k in ("price", "delta", "gamma", "theta", "vega", "rho",
                                              "vanna", "volga", "charm")}
    # American rows where early exercise can never pay (a call with no dividend yield, a put at a
    # non-positive rate) are priced exactly by the European model; so are those whose
    # early-exercise premium is provably negligible at their European IV (bounded by
    # early_exercise_premium_bound below 1e-10 x vega and 1e-12 x S: the European IV then solves the
    # American price to 1e-10 in vol). The American engine, which costs hundreds of European
    # evaluations, runs only where it changes the answer.
    early = _may_exercise_early(out, q)
    quoted = np.isfinite(price)
    if (early & quoted).any():  # the American kernels load in the background meanwhile
        prepare_american(int((early & quoted).sum()))
    iv[quoted], status[quoted] = implied_vol(price[quoted], S[quoted], K[quoted], t[quoted], r[quoted], q[quoted],
                                             is_call[quoted])
    check = early & quoted & (status == 0)
    if check.any():
        args = (S[check], K[check], t[check], r[check], q[check], iv[check], is_call[check])
        bound = early_exercise_premium_bound(*args)
        vega = bsm_greeks(*args)["vega"]
        negligible = np.zeros(n, dtype=bool)
        negligible[check] = bound <= np.minimum(1e-10 * vega, 1e-12 * S[check])
        early = early & ~negligible
    rows = early & quoted
    if rows.any():
        iv[rows], status[rows] = american_implied_vol(price[rows], S[rows], K[rows], t[rows], r[rows], q[rows],
                                                      is_call[rows])
    for model, rows in (("E", ~early & quoted), ("A", early & quoted)):
        solved = rows & (status == 0)  # Greeks at a NaN IV are NaN: not worth computing
        if solved.any():
            args = (S[solved], K[solved], t[solved], r[solved], q[solved], iv[solved], is_call[solved])
            g = american_greeks(*args) if model == "A" else bsm_greeks(*args, second_order=True)
            for k in greeks:
                greeks[k][solved] = g[k]
    status = np.where(~quoted, 6, status)  # 6: no bid, no mid
    out["iv"] = iv
    out["iv_status"] = pd.Series(status, index=out.index).map(IV_STATUS_ALL)
    out["delta"] = greeks["delta"]
    out["gamma"] = greeks["gamma"]
    out["theta"] = greeks["theta"] / 365.0
    out["vega"] = greeks["vega"] / 100.0
    out["rho"] = greeks["rho"] / 100.0
    out["vanna"] = greeks["vanna"] / 100.0
    out["volga"] = greeks["volga"] / 10_000.0
    out["charm"] = greeks["charm"] / 365.0
    out["model_price"] = greeks["price"]
    return out
