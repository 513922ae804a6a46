"""Backtests: the daily pipeline replayed over past trading days in date order, on its own account.

A backtest never touches the paper or live account. Its ledger rows (orders, positions, cash) are
those of the account ``backtest:<id>``. The id is derived from the range and every setting, so the
same backtest run twice is the same account, and its idempotent writes make the second run a no-op
with identical trades. One day of the replay is what the daily run does, in the same order and
with the same functions:

1. the chain of the day (from the market source: vendor files or synthetic) and its Greeks;
2. expirations settled at intrinsic value from the underlying's close (cash-settled index,
   physically settled equity closed at intrinsic);
3. the management rules (early exits, rolls) on the positions held at the start of the day;
4. the ranked signals, the safety checks on the book after the closes, and fills at the paper fill
   model (between mid and the touch, ``fill_fraction``) less ``slippage`` per share, with the
   commission per contract;
5. the book at the close recorded in ``backtest_days`` (account, day): tomorrow starts from it.

The book is path-dependent, so days replay strictly in order. A backtest always starts from an
empty account (:func:`reset_account`) and replays its whole range: a retry after a failure ends
with the same book as an uninterrupted run, and a run after a code change never mixes old rows in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd

from . import calendar as cal
from .broker import DEPOSIT_DATE, PaperBroker
from .chain import days_to_expiry
from .daily import book_history, close_book, manage_positions, place_accepted, roll_signals
from .management import RuleBook, rulebook_from_json
from .momentum import closed_trades, strategy_momentum
from .pricing import greeks_table
from .risk import check_signals, get_profile, max_risk_per_contract
from .signals import RankingConfig, rank_signals
from .storage import Warehouse
from .strategies import StrategyConfig, build_candidates

@dataclass(frozen=True)
class BacktestConfig:
    starting_cash: float = 5_000.0
    fill_fraction: float = 0.5
    slippage: float = 0.0  # per share, against the trader
    commission_per_contract: float = 0.65
    risk_profile: str = "small_account"
    risk_level: str = "moderate"
    top_n: int = 4
    management_rules: str = ""  # JSON, as OPTRADER_MANAGEMENT_RULES
    market: str = ""  # a label of the data source (part of the id)

    @property
    def rulebook(self) -> RuleBook:
        return rulebook_from_json(self.management_rules)

    def backtest_id(self, start: dt.date, end: dt.date) -> str:
        raw = json.dumps({"start": start.isoformat(), "end": end.isoformat(), **asdict(self)}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


def account_for(backtest_id: str) -> str:
    return f"backtest:{backtest_id}"


def _broker(wh: Warehouse, account: str, cfg: BacktestConfig) -> PaperBroker:
    return PaperBroker(wh, account, cfg.fill_fraction, cfg.commission_per_contract, cfg.starting_cash, cfg.slippage)


def usable_contracts(chain: pd.DataFrame, day: dt.date, dte_range: tuple[int, int], open_positions: pd.DataFrame
                     ) -> pd.DataFrame:
    """The part of a day's chain the replay can use, so that it prices only that: expirations
    ``dte_range`` (min, max) calendar days out, where the strategies open trades, and every
    expiration of an open position (marks, management, settlement). Whole expirations are kept or
    left out, so the per-expiry figures (parity forward, at-the-money IV) are those of the full
    chain. The daily run's ``option_greeks`` still prices the whole chain."""
    keep = days_to_expiry(chain, day).between(*dte_range)
    if len(open_positions):
        keep |= chain["expiration"].isin(pd.to_datetime(open_positions["expiration"], cache=False).unique())
    return chain[keep.to_numpy()].reset_index(drop=True)


def _lap(timings: dict | None, step: str, since: float) -> float:
    """Add the time since ``since`` to ``timings[step]``; returns now."""
    now = time.perf_counter()
    if timings is not None:
        timings[step] = timings.get(step, 0.0) + now - since
    return now


def replay_day(wh: Warehouse, source, day: dt.date, account: str, cfg: BacktestConfig, run_id: str = "",
               timings: dict | None = None) -> dict:
    """One day of the backtest (module docstring); returns the day's row of ``backtest_days``.
    ``timings``, when given, accumulates the seconds each step took."""
    t = time.perf_counter()
    day = cal.require_trading_day(day)
    wh.ensure_ledger()
    broker = _broker(wh, account, cfg)
    strategy = StrategyConfig(fill_fraction=cfg.fill_fraction, commission_per_contract=cfg.commission_per_contract)
    held = broker.open_positions(day, before_orders=True)
    held_dte = int(days_to_expiry(held, day).max()) if len(held) else 0
    chain = source.load_chain(day, max_dte=max(strategy.max_dte, held_dte)).chain
    t = _lap(timings, "chain", t)
    spots = chain.groupby("underlying")["underlying_price"].first().astype(float).to_dict()
    usable = usable_contracts(chain, day, (strategy.min_dte, strategy.max_dte), held)
    t = _lap(timings, "book", t)
    greeks = greeks_table(usable)
    t = _lap(timings, "greeks", t)
    settled = broker.settle_expirations(day, spots, run_id)
    t = _lap(timings, "settlement", t)
    cands = build_candidates(greeks, strategy)
    t = _lap(timings, "candidates", t)
    actions = manage_positions(broker, day, greeks, cands, cfg.rulebook, run_id)
    t = _lap(timings, "management", t)
    hist = book_history(wh, account, day, "backtest_days")
    nlv = float(hist["nlv"].iloc[-1]) if len(hist) else broker.cash(DEPOSIT_DATE)
    profile = get_profile(cfg.risk_profile)
    cap = max_risk_per_contract(profile, cfg.risk_level, nlv)
    mom = strategy_momentum(closed_trades(wh, account), day)
    signals, _ = rank_signals(cands, day, RankingConfig(
        top_n=cfg.top_n, max_risk_per_contract=cap, time_exit_dte=cfg.rulebook.time_exits(),
        momentum=tuple((r.strategy, float(r.momentum)) for r in mom.itertuples() if pd.notna(r.momentum))))
    rolls = roll_signals(actions, cands)
    signals = pd.concat([rolls, signals], ignore_index=True) if len(rolls) else signals
    if len(signals) and cfg.slippage:
        # the limit accepts the slippage the fill model charges: less credit, more debit
        sign = signals["direction"].map({"credit": -1.0, "debit": 1.0})
        signals = signals.assign(entry_price=(signals["entry_price"] + sign * cfg.slippage).round(2))
    t = _lap(timings, "signals", t)
    book, _, _ = close_book(broker, wh, day, greeks, before_orders=True, history_table="backtest_days")
    decisions = check_signals(signals, book, profile, cfg.risk_level, day, cfg.commission_per_contract)
    t = _lap(timings, "safety checks", t)
    orders = place_accepted(decisions, broker, greeks, day, run_id)
    t = _lap(timings, "orders", t)
    _, _, summary = close_book(broker, wh, day, greeks, history_table="backtest_days")
    row = {"account": account, "trade_date": day, "nlv": summary["nlv"], "cash": summary["cash"],
           "positions_value": summary["positions_value"], "open_positions": summary["open_positions"],
           "realized_pnl": summary["realized_pnl"], "orders_filled": int((orders["order_status"] == "filled").sum()),
           "positions_closed": int((actions["order_status"] == "filled").sum()),
           "settled": int((settled["status"] == "settled").sum()) if len(settled) else 0, "run_id": run_id}
    cols = list(row)
    wh.execute_many([
        ("DELETE FROM backtest_days WHERE account = ? AND trade_date = ?", [account, day]),
        (f"INSERT INTO backtest_days ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
         [row[c] for c in cols]),
    ])
    _lap(timings, "book", t)
    return row


def reset_account(wh: Warehouse, account: str) -> None:
    """Delete every ledger row of a backtest account, in one transaction: a backtest always replays
    its range from the first day, so a retry after a failure, or a run after a code change, ends
    with the book an uninterrupted run of the current code gives."""
    if not account.startswith("backtest:"):
        raise ValueError(f"refusing to reset {account!r}: only backtest accounts are reset")
    wh.ensure_ledger()
    wh.execute_many([(f"DELETE FROM {t} WHERE account = ?", [account]) for t in
                     ("broker_orders", "positions", "cash_ledger", "kill_switch_events", "risk_snapshots",
                      "backtest_days")])


def run_backtest(wh: Warehouse, source, days: list[dt.date], cfg: BacktestConfig, run_id: str = "",
                 backtest_id: str | None = None, timings: dict | None = None,
                 progress: Callable[[int, int, dict], None] | None = None) -> tuple[str, pd.DataFrame]:
    """Replay ``days`` (NYSE sessions, replayed in date order) on the backtest's own account;
    returns (account, the days' rows). ``timings``, when given, accumulates seconds per step;
    ``progress(i, n, row)`` is called after day ``i`` of ``n`` with that day's row."""
    if not days:
        raise ValueError("a backtest needs at least one trading day")
    days = sorted(days)
    account = account_for(backtest_id or cfg.backtest_id(days[0], days[-1]))
    reset_account(wh, account)
    rows = []
    for i, d in enumerate(days, 1):
        with wh.session():  # one connection per day: the day's ~20 warehouse calls share it
            rows.append(replay_day(wh, source, d, account, cfg, run_id, timings))
        if progress is not None:
            progress(i, len(days), rows[-1])
    return account, pd.DataFrame(rows)


def equity_and_trades(wh: Warehouse, account: str) -> tuple[pd.Series, pd.DataFrame]:
    """The backtest's daily equity curve and its closed trades (for :mod:`.performance`)."""
    days = wh.query("SELECT trade_date, nlv FROM backtest_days WHERE account = ? ORDER BY trade_date", [account])
    equity = pd.Series(days["nlv"].to_numpy(float), index=pd.to_datetime(days["trade_date"]), name="nlv")
    trades = wh.query("SELECT strategy, opened_date, closed_date, realized_pnl FROM positions "
                      "WHERE account = ? AND closed_date IS NOT NULL ORDER BY closed_date, position_id", [account])
    return equity, trades
