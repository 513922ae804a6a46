"""``greeks_table``: the chain with implied volatility and Greeks per contract (``option_greeks``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .european import bsm_greeks
from .implied import IV_STATUS_ALL, implied_vol


def dividend_yield_from_forward(S, F, T, r) -> np.ndarray:
    """Continuous dividend yield implied by a forward: q = r - ln(F/S)/T."""
    S, F, T, r = (np.asarray(a, dtype=np.float64) for a in (S, F, T, r))
    with np.errstate(divide="ignore", invalid="ignore"):
        return r - np.log(F / S) / T


def greeks_table(chain, *, price_column: str = "mid"):
    """The chain plus ``mid, dte, t_years, carry_yield, iv, iv_status, delta, gamma, theta, vega, rho``.

    IV is solved from the mid quote (NaN when there is no bid: a one-sided quote has no mid),
    with the vendor forward when the row has one, else the row's dividend yield. Greeks are at
    that IV. Units: theta per calendar day, vega per volatility point, rho per rate point, vanna
    (change of delta) per volatility point, volga (change of vega per point) per volatility point,
    charm (change of delta) per calendar day.
    """
    out = chain.copy()
    mid = ((out["bid"] + out["ask"]) / 2.0).where(out["bid"] > 0)
    out["mid"] = mid
    dte = (out["expiration"] - out["quote_date"]).dt.days.astype("int64")
    out["dte"] = dte
    t = dte.to_numpy(dtype=np.float64) / 365.0
    out["t_years"] = t
    S = out["underlying_price"].to_numpy(dtype=np.float64)
    r = out["rate"].to_numpy(dtype=np.float64)
    fwd = out["forward"].to_numpy(dtype=np.float64)
    q = np.where(np.isfinite(fwd), dividend_yield_from_forward(S, fwd, t, r), out["dividend_yield"].to_numpy(dtype=np.float64))
    out["carry_yield"] = q
    K = out["strike"].to_numpy(dtype=np.float64)
    is_call = (out["option_type"] == "C").to_numpy()
    price = out[price_column].to_numpy(dtype=np.float64)
    iv, status = implied_vol(price, S, K, t, r, q, is_call)
    status = np.where(np.isnan(price) & (status == 4), 6, status)  # 6: no bid, no mid
    g = bsm_greeks(S, K, t, r, q, iv, is_call, second_order=True)
    out["iv"] = iv
    out["iv_status"] = pd.Series(status, index=out.index).map(IV_STATUS_ALL)
    out["delta"] = g["delta"]
    out["gamma"] = g["gamma"]
    out["theta"] = g["theta"] / 365.0
    out["vega"] = g["vega"] / 100.0
    out["rho"] = g["rho"] / 100.0
    out["vanna"] = g["vanna"] / 100.0
    out["volga"] = g["volga"] / 10_000.0
    out["charm"] = g["charm"] / 365.0
    out["model_price"] = g["price"]
    return out


