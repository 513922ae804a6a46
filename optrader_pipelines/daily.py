"""The steps of the daily run that need more than one core module: the book at the close,
order placement for the checked signals, and the report. The Dagster assets call these."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from . import audit
from . import calendar as cal
from .broker import DEPOSIT_DATE, OrderRequest, PaperBroker
from .chain import iso_dates
from .management import DECISION_COLUMNS, RuleBook, evaluate_book, leg_quotes
from .portfolio import mark_positions
from .risk import BookState, idempotency_key
from .storage import Warehouse


def book_history(wh: Warehouse, account: str, before: dt.date, table: str = "daily_report") -> pd.DataFrame:
    """Previous days' closing NLV for the account, from ``table`` (``daily_report`` for the daily
    run, ``backtest_days`` for a backtest account)."""
    if table not in ("daily_report", "backtest_days"):
        raise ValueError(f"no book history in table {table!r}")
    try:
        return wh.query(f"SELECT trade_date, nlv FROM {table} WHERE account = ? AND trade_date < ? ORDER BY trade_date",
                        [account, before])
    except Exception:  # table not created yet: the account has no history
        return pd.DataFrame(columns=["trade_date", "nlv"])


def close_book(broker: PaperBroker, wh: Warehouse, day: dt.date, greeks: pd.DataFrame, kill_switch: bool = False,
               before_orders: bool = False, kill_switch_reason: str = "", history_table: str = "daily_report"
               ) -> tuple[BookState, pd.DataFrame, dict]:
    """The account at the close of ``day`` (positions marked at the day's mids) and a summary;
    ``before_orders`` leaves out the day's own opening orders (the book the safety checks see)."""
    positions = mark_positions(broker.open_positions(day, before_orders), greeks)
    cash = broker.cash(day, before_orders)
    positions_value = float(positions["mark_value"].sum()) if len(positions) else 0.0
    nlv = cash + positions_value
    hist = book_history(wh, broker.account, day, history_table)
    start = broker.cash(DEPOSIT_DATE)
    previous = float(hist["nlv"].iloc[-1]) if len(hist) else start
    peak = max([nlv, start] + ([float(hist["nlv"].max())] if len(hist) else []))
    collateral = float(positions["collateral"].sum()) if len(positions) else 0.0
    realized = wh.query("SELECT coalesce(sum(realized_pnl), 0) AS r FROM positions WHERE account = ? AND closed_date <= ?",
                        [broker.account, day])["r"].iloc[0]
    book = BookState(account=broker.account, cash=cash, nlv=nlv, peak_nlv=peak, previous_nlv=previous,
                     open_positions=positions, kill_switch=kill_switch, kill_switch_reason=kill_switch_reason)
    summary = {
        "nlv": nlv, "cash": cash, "positions_value": positions_value, "buying_power": cash - collateral,
        "previous_nlv": previous, "daily_pnl": nlv - previous, "peak_nlv": peak, "drawdown": book.drawdown,
        "open_positions": len(positions), "realized_pnl": float(realized),
        **{k: float(positions[k].sum()) if len(positions) else 0.0 for k in ("delta", "gamma", "theta", "vega")},
    }
    return book, positions, summary


def place_accepted(decisions: pd.DataFrame, broker: PaperBroker, greeks: pd.DataFrame, day: dt.date, run_id: str
                   ) -> pd.DataFrame:
    """Send every accepted decision to the broker (idempotent by key); add the order outcome columns."""
    quotes = leg_quotes(greeks)
    out = decisions.copy()
    out["order_id"] = None
    out["order_status"] = "not sent"
    out["fill_price"] = np.nan
    out["commission"] = 0.0
    out["cash_flow"] = 0.0
    out["already_placed"] = False
    rejected = [stmt for d in out[out["status"] == "rejected"].itertuples(index=False) for stmt in audit.entry(
        "order_rejected", broker.account, d.idempotency_key,
        {"by": "safety checks", "trade_date": day, "underlying": d.underlying, "strategy": d.strategy,
         "quantity": None if pd.isna(d.quantity) else int(d.quantity),
         "limit_price": None if pd.isna(d.limit_price) else float(d.limit_price), "reason": d.reason}, run_id, "risk checks",
        key=f"order_rejected|{broker.account}|{d.idempotency_key}|{d.reason}")]
    if rejected:
        broker.wh.execute_many(rejected)
    for i, d in out[out["status"] == "accepted"].iterrows():
        legs = json.loads(d["legs"])
        for leg in legs:
            q = quotes.loc[(d["underlying"], leg["expiration"], float(leg["strike"]), leg["option_type"])]
            leg["bid"], leg["ask"] = float(q["bid"]), float(q["ask"])
        req = OrderRequest(
            idempotency_key=d["idempotency_key"], account=broker.account, trade_date=day, strategy=d["strategy"],
            underlying=d["underlying"], expiration=pd.Timestamp(d["expiration"]).date(), settlement=d["settlement"],
            direction=d["direction"], legs=legs, quantity=int(d["quantity"]), limit_price=float(d["limit_price"]),
            run_id=run_id)
        res = broker.place_order(req)
        out.loc[i, ["order_id", "order_status", "fill_price", "commission", "cash_flow", "already_placed"]] = [
            res.order_id, res.status, res.fill_price if res.fill_price is not None else np.nan,
            res.commission, res.cash_flow, res.already_placed]
    return out


def underlying_prices(greeks: pd.DataFrame) -> dict[str, float]:
    return greeks.groupby("underlying")["underlying_price"].first().astype(float).to_dict()


def require_closed(day: dt.date, now: pd.Timestamp | None = None) -> dt.date:
    """Refuse a trading day whose session has not closed yet (no end-of-day chain exists)."""
    day = cal.require_trading_day(day)
    latest = cal.latest_completed_trading_day(now)
    if day > latest:
        raise ValueError(f"{day.isoformat()} has not closed yet (latest completed NYSE session: {latest.isoformat()})")
    return day


ACTION_COLUMNS = DECISION_COLUMNS + ["order_id", "order_status", "fill_price", "realized_pnl", "already_placed"]


def positions_at_open(broker: PaperBroker, day: dt.date) -> pd.DataFrame:
    """Positions open when ``day`` begins (opened before it, not closed before it): the book the
    management rules see, the same on every re-run of the day even after its closes."""
    return broker.wh.query(
        "SELECT * FROM positions WHERE account = ? AND opened_date < ? AND (closed_date IS NULL OR closed_date >= ?) "
        "ORDER BY opened_date, position_id", [broker.account, day, day])


def manage_positions(broker: PaperBroker, day: dt.date, greeks: pd.DataFrame, candidates: pd.DataFrame,
                     rulebook: RuleBook, run_id: str) -> pd.DataFrame:
    """The management rules applied at the close, before new trades: one row per position open at
    the start of the day with its decision; closes (and the closing half of rolls) are sent to the
    broker with a key from (account, day, position, rule), so a re-run never closes twice. The
    opening half of a roll is a signal for the safety checks (``roll_candidate_id``)."""
    book = positions_at_open(broker, day)
    decisions = evaluate_book(mark_positions(book, greeks), greeks, day, rulebook, candidates)
    out = decisions.assign(order_id=None, order_status="none", fill_price=np.nan, realized_pnl=np.nan,
                           already_placed=False)
    closing = out[out["action"].isin(["close", "roll"])]
    g = greeks[greeks["underlying"].isin(closing["underlying"].unique())]
    g = g.assign(_exp=iso_dates(g["expiration"]))
    for i, d in closing.iterrows():
        key = idempotency_key(broker.account, day, f"manage:{d['position_id']}:{d['rule']}")
        rows = g[g["underlying"] == d["underlying"]]
        quotes = {(e, float(k), t): (float(b), float(a)) for e, k, t, b, a in
                  zip(rows["_exp"], rows["strike"], rows["option_type"], rows["bid"], rows["ask"])}
        try:
            res = broker.close_position(d["position_id"], day, quotes, f"{d['rule']}: {d['reason']}", key, run_id)
        except ValueError as exc:  # no quote for a leg: the position stays open, the reason is recorded
            out.loc[i, ["order_status", "reason"]] = ["not sent", f"{d['reason']}; close not sent: {exc}"]
            continue
        pnl = broker.wh.query("SELECT realized_pnl FROM positions WHERE position_id = ?", [d["position_id"]])
        out.loc[i, ["order_id", "order_status", "fill_price", "realized_pnl", "already_placed"]] = [
            res.order_id, res.status, res.fill_price, float(pnl["realized_pnl"].iloc[0]), res.already_placed]
    return out[ACTION_COLUMNS]


def roll_signals(actions: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """The opening halves of the day's rolls as signals (rank 0, ahead of the ranked signals),
    so they pass the same safety checks as any new trade."""
    rolls = actions[(actions["action"] == "roll") & (actions["order_status"] == "filled")]
    if rolls.empty or candidates.empty:
        return pd.DataFrame()
    c = candidates.set_index("candidate_id")
    rows = []
    for r in rolls.itertuples(index=False):
        if r.roll_candidate_id not in c.index:
            continue
        cand = c.loc[r.roll_candidate_id]
        rows.append({**cand.to_dict(), "candidate_id": r.roll_candidate_id, "rank": 0,
                     "signal_id": f"roll:{r.position_id}:{r.roll_candidate_id}",
                     "reasons": f"roll of {r.position_id}: {r.reason}"})
    return pd.DataFrame(rows)
