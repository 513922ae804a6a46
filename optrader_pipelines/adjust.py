"""Intraday position adjustments: the management rules on intraday marks (what the sensor asks
for) and the adjustment itself (what the job it requests does)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .broker import DEPOSIT_DATE, PaperBroker
from .daily import book_history, place_accepted
from .intraday import legs_table
from .killswitch import KillSwitch
from .management import RuleBook, evaluate_position, find_roll, leg_quotes
from .portfolio import mark_positions
from .pricing import greeks_table
from .risk import BookState, RiskProfile, check_signals, idempotency_key
from .strategies import StrategyConfig, build_candidates


def quotes_frame(quotes: pd.DataFrame) -> pd.DataFrame:
    """Leg quotes from a market's ``intraday_quotes`` in the shape of an ``option_greeks`` table
    (what :func:`..portfolio.mark_positions` and the rules read)."""
    return quotes.rename(columns={"spot": "underlying_price"}).assign(
        expiration=pd.to_datetime(quotes["expiration"]))


def intraday_decisions(positions: pd.DataFrame, quotes: pd.DataFrame, day: dt.date, rulebook: RuleBook
                       ) -> pd.DataFrame:
    """The rule decision for each open position at intraday marks (close and roll kept apart)."""
    if positions.empty:
        return pd.DataFrame(columns=["position_id", "underlying", "strategy", "action", "rule", "reason"])
    q = quotes_frame(quotes)
    marked = mark_positions(positions, q)
    idx = leg_quotes(q)
    spots = q.groupby("underlying")["underlying_price"].first()
    rows = []
    for p in marked.itertuples(index=False):
        d = evaluate_position(p, day, rulebook.for_strategy(p.strategy), idx, float(spots.get(p.underlying, np.nan)))
        rows.append({"position_id": p.position_id, "underlying": p.underlying, "strategy": p.strategy,
                     "action": d.action, "rule": d.rule, "reason": d.reason})
    return pd.DataFrame(rows)


def adjust_position(broker: PaperBroker, source, position_id: str, rule: str, reason: str, at: pd.Timestamp,
                    rulebook: RuleBook, profile: RiskProfile, risk_level: str, run_id: str = "") -> dict:
    """Close the position at the intraday quotes; for a tested credit spread with rolling on, open
    the roll target found on the intraday chain, through the same safety checks as a new trade.
    Idempotent: a position already closed is reported, not closed again."""
    day = at.date()
    pos = broker.wh.query("SELECT * FROM positions WHERE position_id = ? AND account = ?", [position_id, broker.account])
    if pos.empty:
        raise ValueError(f"position {position_id!r} not found in account {broker.account!r}")
    p = pos.iloc[0]
    out = {"position_id": position_id, "rule": rule, "closed": False, "close_order": None, "roll_order": None,
           "roll_status": "none", "note": ""}
    if not pd.isna(p["closed_date"]):
        out["note"] = f"already closed on {pd.Timestamp(p['closed_date']).date()}: {p['close_reason']}"
        return out
    legs = legs_table(pos)
    q = source.intraday_quotes(legs, at)
    quotes = {(pd.Timestamp(r.expiration).strftime("%Y-%m-%d"), float(r.strike), r.option_type): (r.bid, r.ask)
              for r in q.itertuples(index=False)}
    rules = rulebook.for_strategy(p["strategy"])
    target = None
    if rule == "tested" and rules.roll:
        chain = source.intraday_chain(p["underlying"], at)
        greeks = greeks_table(chain)
        cands = build_candidates(greeks, StrategyConfig(fill_fraction=broker.fill_fraction,
                                                        commission_per_contract=broker.commission_per_contract))
        row = pd.Series(p).copy()
        best, net, why = find_roll(row, cands, leg_quotes(quotes_frame(q)), rules)
        target = (best, why, greeks) if best is not None else None
        if best is None:
            out["note"] = f"{why}: closing instead"
    key = idempotency_key(broker.account, day, f"adjust:{position_id}:{rule}")
    res = broker.close_position(position_id, day, quotes, f"{rule} (intraday {at.strftime('%H:%M')}): {reason}",
                                key, run_id)
    out.update(closed=True, close_order=res.order_id, note=out["note"] or res.reason)
    if target is not None:
        best, why, greeks = target
        signal = pd.DataFrame([{**best.to_dict(), "rank": 0, "signal_id": f"roll:{position_id}:{best['candidate_id']}",
                                "reasons": why}])
        hist = book_history(broker.wh, broker.account, day)
        cash = broker.cash(day)
        nlv = float(hist["nlv"].iloc[-1]) if len(hist) else broker.cash(DEPOSIT_DATE)
        state = KillSwitch(broker.wh, broker.account).state()
        book = BookState(broker.account, cash, nlv, max([nlv] + list(hist["nlv"].astype(float))), nlv,
                         broker.open_positions(day), state.engaged, state.describe())
        decisions = check_signals(signal, book, profile, risk_level, day, broker.commission_per_contract)
        placed = place_accepted(decisions, broker, greeks, day, run_id)
        d = placed.iloc[0]
        out["roll_status"] = d["order_status"] if d["status"] == "accepted" else f"rejected: {d['reason']}"
        out["roll_order"] = d["order_id"]
    return out


__all__ = ["adjust_position", "intraday_decisions", "quotes_frame"]
