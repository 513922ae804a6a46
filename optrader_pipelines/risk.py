"""Risk profiles, the defined-risk test, sizing, and the pre-trade safety checks.

Profiles (``OPTRADER_RISK_PROFILE``):

* ``small_account``: a position risks at most $300 and at least $50; at most 4 open positions;
  at least $100 of buying power left after every trade; no new entries once the account is 15%
  below its peak or has lost 10% since the previous close.
* ``moderate``: a position risks at most 25% of net liquidation value; no new entries after a 5%
  daily loss; total risk of open positions at most 2x net liquidation value (leverage cap).

Risk level (``OPTRADER_RISK_LEVEL``) scales the per-position budget: low 50%, moderate 75%,
high 100% of the profile's cap. "Risk" of a position is its max loss at expiration in dollars.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RiskProfile:
    name: str
    max_position_risk: float | None  # dollars
    max_position_pct_nlv: float | None
    min_position_risk: float
    max_positions: int
    cash_buffer: float
    max_drawdown: float | None  # fraction below peak NLV that halts new entries
    max_daily_loss: float  # fraction of previous close NLV that halts new entries
    max_leverage: float | None  # total open max loss / NLV


PROFILES = {
    "small_account": RiskProfile("small_account", 300.0, None, 50.0, 4, 100.0, 0.15, 0.10, None),
    "moderate": RiskProfile("moderate", None, 0.25, 0.0, 10, 0.0, None, 0.05, 2.0),
}
LEVEL_SCALE = {"low": 0.5, "moderate": 0.75, "high": 1.0}


def get_profile(name: str) -> RiskProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown risk profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def max_risk_per_contract(profile: RiskProfile, level: str, nlv: float) -> float:
    """The most one spread may risk under this profile and level (the ranking's affordability filter)."""
    scale = LEVEL_SCALE[level]
    caps = []
    if profile.max_position_risk is not None:
        caps.append(profile.max_position_risk * scale)
    if profile.max_position_pct_nlv is not None:
        caps.append(profile.max_position_pct_nlv * max(nlv, 0.0) * scale)
    return min(caps) if caps else math.inf


class UndefinedRisk(ValueError):
    """The legs can lose an unbounded amount, or do not form one defined-risk position."""


def expiry_pnl_per_share(legs: list[dict], entry_cash: float, prices: np.ndarray) -> np.ndarray:
    """P&L per share at expiration for underlying ``prices``; ``entry_cash`` > 0 for a credit."""
    pnl = np.full(len(prices), float(entry_cash))
    for leg in legs:
        k = float(leg["strike"])
        intrinsic = np.maximum(prices - k, 0) if leg["option_type"] == "C" else np.maximum(k - prices, 0)
        pnl += int(leg["side"]) * intrinsic
    return pnl


def max_loss_per_spread(legs: list[dict], entry_cash: float) -> float:
    """Max loss at expiration in dollars for one unit (x100), or raise UndefinedRisk.

    The payoff is piecewise linear in the underlying price: its minimum is at 0, at a strike,
    or at infinity. Net short calls (slope below zero as the price rises) is unbounded risk.
    """
    if not legs:
        raise UndefinedRisk("order has no legs")
    if len({leg["expiration"] for leg in legs}) != 1:
        raise UndefinedRisk("legs have different expirations (calendar risk is not defined here)")
    for leg in legs:
        if leg["option_type"] not in ("C", "P") or int(leg["side"]) not in (-1, 1) or not float(leg["strike"]) > 0:
            raise UndefinedRisk(f"malformed leg {leg}")
    call_slope = sum(int(leg["side"]) for leg in legs if leg["option_type"] == "C")
    if call_slope < 0:
        raise UndefinedRisk(f"net short {-call_slope} call(s): loss is unbounded as the price rises")
    points = np.array([0.0] + sorted(float(leg["strike"]) for leg in legs))
    worst = float(expiry_pnl_per_share(legs, entry_cash, points).min())
    return max(0.0, -worst) * 100.0


def collateral_per_spread(legs: list[dict]) -> float:
    """Cash a cash account holds against short options: the worst payout of the legs (x100)."""
    return max_loss_per_spread(legs, 0.0)


def idempotency_key(account: str, trade_date, signal_id: str) -> str:
    raw = f"{account}|{pd.Timestamp(trade_date).date().isoformat()}|{signal_id}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass
class BookState:
    """What the checks need to know about the account at the close, before new orders."""

    account: str
    cash: float
    nlv: float
    peak_nlv: float
    previous_nlv: float
    open_positions: pd.DataFrame = field(default_factory=pd.DataFrame)  # position_id, underlying, strategy, expiration, max_loss, collateral, quantity
    kill_switch: bool = False
    kill_switch_reason: str = ""

    @property
    def drawdown(self) -> float:
        return 0.0 if self.peak_nlv <= 0 else max(0.0, (self.peak_nlv - self.nlv) / self.peak_nlv)

    @property
    def daily_return(self) -> float:
        return 0.0 if self.previous_nlv <= 0 else (self.nlv - self.previous_nlv) / self.previous_nlv


DECISION_COLUMNS = [
    "signal_id", "rank", "candidate_id", "strategy", "underlying", "expiration", "direction", "settlement",
    "legs", "limit_price", "quantity", "max_loss_per_spread", "total_risk", "buying_power_effect",
    "status", "reason", "idempotency_key",
]


def check_signals(signals: pd.DataFrame, book: BookState, profile: RiskProfile, level: str,
                  trade_date, commission_per_contract: float = 0.65) -> pd.DataFrame:
    """Size each signal and run the safety checks in rank order; one row per signal with its verdict."""
    rows = []
    n_open = len(book.open_positions)
    held = set()
    if n_open:
        held = set(zip(book.open_positions["underlying"], pd.to_datetime(book.open_positions["expiration"]),
                       book.open_positions["strategy"]))
    open_risk = float(book.open_positions["max_loss"].sum()) if n_open else 0.0
    buying_power = book.cash - (float(book.open_positions["collateral"].sum()) if n_open else 0.0)
    budget = max_risk_per_contract(profile, level, book.nlv)
    halted = None
    if book.kill_switch:
        halted = "kill switch engaged: no opening orders" + (f" ({book.kill_switch_reason})"
                                                              if book.kill_switch_reason else "")
    elif profile.max_drawdown is not None and book.drawdown >= profile.max_drawdown:
        halted = f"halted: drawdown {book.drawdown:.1%} from peak ${book.peak_nlv:,.2f} >= {profile.max_drawdown:.0%}"
    elif -book.daily_return >= profile.max_daily_loss:
        halted = f"halted: daily loss {-book.daily_return:.1%} >= {profile.max_daily_loss:.0%}"
    accepted = 0
    for s in signals.itertuples(index=False):
        legs = json.loads(s.legs)
        credit = s.direction == "credit"
        price = float(s.entry_price)
        row = {
            "signal_id": s.signal_id, "rank": int(s.rank), "candidate_id": s.candidate_id, "strategy": s.strategy,
            "underlying": s.underlying, "expiration": pd.Timestamp(s.expiration), "direction": s.direction,
            "settlement": s.settlement, "legs": s.legs, "limit_price": price, "quantity": 0,
            "max_loss_per_spread": np.nan, "total_risk": 0.0, "buying_power_effect": 0.0,
            "status": "rejected", "reason": "",
            "idempotency_key": idempotency_key(book.account, trade_date, s.signal_id),
        }
        rows.append(row)
        try:
            per = max_loss_per_spread(legs, price if credit else -price)
        except UndefinedRisk as exc:
            row["reason"] = f"undefined risk: {exc}"
            continue
        row["max_loss_per_spread"] = per
        commission = commission_per_contract * len(legs)
        if halted:
            row["reason"] = halted
            continue
        if per <= 0:
            row["reason"] = "max loss is zero or negative: quotes are inconsistent"
            continue
        if n_open + accepted >= profile.max_positions:
            row["reason"] = f"at the limit of {profile.max_positions} open positions"
            continue
        key = (s.underlying, pd.Timestamp(s.expiration), s.strategy)
        if key in held:
            row["reason"] = f"already holding a {s.strategy} on {s.underlying} for {pd.Timestamp(s.expiration).date()}"
            continue
        qty = int(math.floor(budget / per)) if math.isfinite(budget) else 0
        if qty < 1:
            row["reason"] = f"one spread risks ${per:,.2f}, above the ${budget:,.2f} position budget"
            continue
        qty = min(qty, int(max(0.0, buying_power - profile.cash_buffer) // (per + commission)))
        if qty < 1:
            row["reason"] = (f"insufficient buying power: ${buying_power:,.2f} available, one spread needs "
                             f"${per + commission:,.2f} plus a ${profile.cash_buffer:,.2f} cash buffer")
            continue
        if profile.max_leverage is not None:
            room = profile.max_leverage * book.nlv - open_risk
            qty = min(qty, int(max(0.0, room) // per))
            if qty < 1:
                row["reason"] = f"leverage cap: open risk ${open_risk:,.2f} already near {profile.max_leverage}x NLV"
                continue
        total = qty * per
        if total < profile.min_position_risk:
            row["reason"] = f"position risk ${total:,.2f} is below the ${profile.min_position_risk:,.2f} minimum"
            continue
        bp_effect = qty * (per + commission)
        row.update(quantity=qty, total_risk=total, buying_power_effect=bp_effect, status="accepted",
                   reason=f"{qty} x ${per:,.2f} risk within the ${budget:,.2f} budget; buying power "
                          f"${buying_power:,.2f} -> ${buying_power - bp_effect:,.2f}")
        accepted += 1
        held.add(key)
        open_risk += total
        buying_power -= bp_effect
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)
