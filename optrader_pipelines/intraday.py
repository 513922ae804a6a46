"""Intraday risk: a snapshot of the book at fresh marks, its limits, and the breaches.

A snapshot values every open position's legs at the market's intraday marks and aggregates, per
account: net liquidation value, P&L since the previous close, drawdown from the peak, dollar
Greeks (delta and gamma per unit return of each underlying, vega per vol point, theta per day),
buying power used (collateral over cash), and the one-day 95% value at risk two ways:

* historical: the 5th percentile loss of the book's delta-gamma P&L over the last
  ``var_window`` daily log returns of its underlyings (joint days, so correlations are kept);
* parametric: 1.645 x the standard deviation of the delta P&L under the same returns'
  covariance (delta-normal).

Limits (:class:`RiskLimits`, defaults from the risk profile): daily loss and drawdown as
fractions of NLV, |dollar delta| and |vega| as fractions of NLV, and a circuit breaker on an
extreme move of any held underlying since the previous close (7%, the NYSE level-1 threshold).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .risk import RiskProfile

Z95 = 1.6448536269514722


@dataclass(frozen=True)
class RiskLimits:
    max_daily_loss: float = 0.05
    max_drawdown: float | None = 0.15
    max_delta_pct_nlv: float = 2.0
    max_vega_pct_nlv: float = 0.05
    circuit_breaker_move: float = 0.07

    @classmethod
    def for_profile(cls, profile: RiskProfile) -> "RiskLimits":
        return cls(max_daily_loss=profile.max_daily_loss, max_drawdown=profile.max_drawdown)


def legs_table(positions: pd.DataFrame) -> pd.DataFrame:
    """One row per leg of each position: position_id, underlying, expiration, strike, option_type,
    signed contracts (side x quantity)."""
    rows = []
    for p in positions.itertuples(index=False):
        for leg in json.loads(p.legs):
            rows.append((p.position_id, p.underlying, leg["expiration"], float(leg["strike"]), leg["option_type"],
                         int(leg["side"]) * int(p.quantity)))
    return pd.DataFrame(rows, columns=["position_id", "underlying", "expiration", "strike", "option_type",
                                       "contracts"])


def risk_snapshot(positions: pd.DataFrame, quotes: pd.DataFrame, cash: float, previous_nlv: float,
                  peak_nlv: float, previous_closes: dict[str, float], returns: pd.DataFrame | None,
                  limits: RiskLimits) -> dict:
    """The snapshot (see the module docstring). ``quotes`` is :func:`legs_table` with the market's
    spot, mid, delta, gamma, vega and theta per leg; ``returns`` holds daily log returns, one
    column per underlying."""
    q = quotes.copy()
    n = 100.0 * q["contracts"] if len(q) else pd.Series(dtype=float)
    q["value"] = n * q["mid"] if len(q) else 0.0
    q["delta_usd"] = n * q["delta"] * q["spot"] if len(q) else 0.0
    q["gamma_usd"] = n * q["gamma"] * q["spot"] ** 2 if len(q) else 0.0
    q["vega_usd"] = n * q["vega"] if len(q) else 0.0
    q["theta_usd"] = n * q["theta"] if len(q) else 0.0
    positions_value = float(q["value"].sum()) if len(q) else 0.0
    nlv = cash + positions_value
    collateral = float(positions["collateral"].sum()) if len(positions) else 0.0
    by_und = (q.groupby("underlying")[["delta_usd", "gamma_usd", "vega_usd", "theta_usd"]].sum() if len(q)
              else pd.DataFrame(columns=["delta_usd", "gamma_usd", "vega_usd", "theta_usd"]))
    snap = {
        "nlv": nlv, "cash": cash, "positions_value": positions_value, "open_positions": len(positions),
        "pnl_since_close": nlv - previous_nlv,
        "daily_return": (nlv - previous_nlv) / previous_nlv if previous_nlv > 0 else 0.0,
        "drawdown": max(0.0, (max(peak_nlv, nlv) - nlv) / max(peak_nlv, nlv)) if max(peak_nlv, nlv) > 0 else 0.0,
        "delta_usd": float(by_und["delta_usd"].sum()), "gamma_usd": float(by_und["gamma_usd"].sum()),
        "vega_usd": float(by_und["vega_usd"].sum()), "theta_usd": float(by_und["theta_usd"].sum()),
        "buying_power_used": collateral / cash if cash > 0 else float("inf") if collateral > 0 else 0.0,
        "var95_historical": np.nan, "var95_parametric": np.nan, "var_days": 0,
    }
    if returns is not None and len(by_und):
        cols = [u for u in by_und.index if u in returns.columns]
        r = returns[cols].dropna()
        if len(cols) and len(r) >= 20:
            d = by_und.loc[cols, "delta_usd"].to_numpy()
            g = by_und.loc[cols, "gamma_usd"].to_numpy()
            rv = r.to_numpy()
            pnl = rv @ d + 0.5 * (rv ** 2) @ g
            snap["var95_historical"] = float(max(0.0, -np.quantile(pnl, 0.05)))
            cov = np.atleast_2d(np.cov(rv, rowvar=False))
            snap["var95_parametric"] = float(Z95 * np.sqrt(max(float(d @ cov @ d), 0.0)))
            snap["var_days"] = int(len(r))
    moves = {}
    for u, spot in q.groupby("underlying")["spot"].first().items() if len(q) else []:
        prev = previous_closes.get(u)
        if prev:
            moves[u] = spot / prev - 1.0
    snap["largest_move"] = max(moves.items(), key=lambda kv: abs(kv[1])) if moves else None
    snap["breaches"] = breaches(snap, limits)
    return snap


def breaches(snap: dict, limits: RiskLimits) -> list[tuple[str, str]]:
    """(kind, description) per limit the snapshot is at or beyond."""
    out = []
    nlv = snap["nlv"]
    if -snap["daily_return"] >= limits.max_daily_loss:
        out.append(("daily_loss", f"daily loss {-snap['daily_return']:.1%} >= {limits.max_daily_loss:.0%} "
                                  f"(${-snap['pnl_since_close']:,.2f})"))
    if limits.max_drawdown is not None and snap["drawdown"] >= limits.max_drawdown:
        out.append(("drawdown", f"drawdown {snap['drawdown']:.1%} from peak >= {limits.max_drawdown:.0%}"))
    if nlv > 0 and abs(snap["delta_usd"]) >= limits.max_delta_pct_nlv * nlv:
        out.append(("delta", f"portfolio delta ${snap['delta_usd']:,.0f} beyond {limits.max_delta_pct_nlv:g}x NLV"))
    if nlv > 0 and abs(snap["vega_usd"]) >= limits.max_vega_pct_nlv * nlv:
        out.append(("vega", f"portfolio vega ${snap['vega_usd']:,.0f} per vol point beyond "
                            f"{limits.max_vega_pct_nlv:.0%} of NLV"))
    if snap.get("largest_move") and abs(snap["largest_move"][1]) >= limits.circuit_breaker_move:
        u, m = snap["largest_move"]
        out.append(("circuit_breaker", f"{u} moved {m:+.1%} since the previous close "
                                       f"(circuit breaker {limits.circuit_breaker_move:.0%})"))
    return out
