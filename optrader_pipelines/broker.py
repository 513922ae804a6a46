"""Brokers. :class:`PaperBroker` is the internal default: no network, ledger in the warehouse.

Paper fills: a multi-leg limit order is marketable when the modelled fill, ``mid - f * (mid -
natural)`` for a credit (``mid + f * (natural - mid)`` for a debit; ``f`` = fill fraction, 0 at
the mid, 1 at the touch), is at least as good as the limit; it then fills at the limit price.
Commission is charged per contract (per leg and unit). Each order carries an idempotency key;
placing the same key twice returns the first order and writes nothing. An order, its position
and its cash entries are written in one transaction.

Expiration settlement: a position still open on or after its expiration is settled at intrinsic
value from the underlying's price on the settlement day (index options are cash settled; equity
and ETF spreads are closed at intrinsic, which equals assignment followed by an immediate offset,
without assignment fees).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import audit
from .risk import collateral_per_spread, expiry_pnl_per_share, max_loss_per_spread
from .storage import Warehouse

DEPOSIT_DATE = dt.date(1900, 1, 1)


@dataclass(frozen=True)
class OrderRequest:
    idempotency_key: str
    account: str
    trade_date: dt.date
    strategy: str
    underlying: str
    expiration: dt.date
    settlement: str
    direction: str  # credit | debit
    legs: list[dict]  # each with bid and ask of the day
    quantity: int
    limit_price: float  # per share, positive
    run_id: str = ""


@dataclass(frozen=True)
class OrderResult:
    order_id: str
    status: str  # filled | unfilled | rejected
    fill_price: float | None
    commission: float
    cash_flow: float
    reason: str
    already_placed: bool = False


class Broker(ABC):
    name = "abstract"

    @abstractmethod
    def place_order(self, order: OrderRequest) -> OrderResult: ...

    @abstractmethod
    def cash(self, as_of: dt.date) -> float: ...

    @abstractmethod
    def open_positions(self, as_of: dt.date) -> pd.DataFrame: ...

    @abstractmethod
    def close_position(self, position_id: str, day: dt.date, quotes: dict[tuple, tuple[float, float]], reason: str,
                       idempotency_key: str, run_id: str = "") -> OrderResult: ...

    @abstractmethod
    def settle_expirations(self, day: dt.date, underlying_prices: dict[str, float], run_id: str = "") -> pd.DataFrame: ...


def order_id_for(key: str) -> str:
    return "ord-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def modelled_fill(legs: list[dict], direction: str, fill_fraction: float, slippage: float = 0.0
                  ) -> tuple[float, float, float]:
    """(mid, natural, modelled fill) per share for the spread, sign-adjusted so all are positive;
    ``slippage`` (per share) moves the fill against us: less credit, more debit."""
    sign = 1.0 if direction == "credit" else -1.0
    mid = sum(-int(leg["side"]) * (leg["bid"] + leg["ask"]) / 2 for leg in legs) * sign
    natural = sum(-int(leg["side"]) * (leg["bid"] if int(leg["side"]) < 0 else leg["ask"]) for leg in legs) * sign
    if direction == "credit":
        fill = mid - fill_fraction * (mid - natural) - slippage
    else:
        fill = mid + fill_fraction * (natural - mid) + slippage
    return mid, natural, fill


class PaperBroker(Broker):
    name = "paper"

    def __init__(self, warehouse: Warehouse, account: str = "paper", fill_fraction: float = 0.5,
                 commission_per_contract: float = 0.65, starting_cash: float = 5_000.0, slippage: float = 0.0):
        if not 0.0 <= fill_fraction <= 1.0:
            raise ValueError(f"fill_fraction {fill_fraction} must be within [0, 1]")
        if slippage < 0:
            raise ValueError(f"slippage {slippage} must be >= 0 (per share, against the trader)")
        self.slippage = slippage
        self.wh = warehouse
        self.account = account
        self.fill_fraction = fill_fraction
        self.commission_per_contract = commission_per_contract
        self.starting_cash = starting_cash
        self.wh.ensure_ledger()
        self.wh.execute_many([(
            "INSERT INTO cash_ledger VALUES (?, ?, ?, ?, 'deposit', 'initial deposit', NULL) ON CONFLICT DO NOTHING",
            [f"{account}:initial-deposit", account, DEPOSIT_DATE, float(starting_cash)])])

    # -- reads -------------------------------------------------------------------------------
    def cash(self, as_of: dt.date, before_orders: bool = False) -> float:
        """Cash at the close of ``as_of``; with ``before_orders``, before that day's opening orders
        (so a re-run of the day sees the same book its first run saw)."""
        sql = "SELECT coalesce(sum(amount), 0) AS c FROM cash_ledger WHERE account = ? AND trade_date <= ?"
        if before_orders:
            sql += " AND NOT (trade_date = ? AND kind IN ('premium', 'commission'))"
        df = self.wh.query(sql, [self.account, as_of] + ([as_of] if before_orders else []))
        return float(df["c"].iloc[0])

    def open_positions(self, as_of: dt.date, before_orders: bool = False) -> pd.DataFrame:
        """Positions open at the close of ``as_of`` (opened on or before, not closed by then);
        with ``before_orders``, leaving out those opened on ``as_of`` itself."""
        return self.wh.query(
            f"SELECT * FROM positions WHERE account = ? AND opened_date {'<' if before_orders else '<='} ? "
            "AND (closed_date IS NULL OR closed_date > ?) ORDER BY opened_date, position_id",
            [self.account, as_of, as_of])

    def orders(self, trade_date: dt.date | None = None) -> pd.DataFrame:
        if trade_date is None:
            return self.wh.query("SELECT * FROM broker_orders WHERE account = ? ORDER BY created_at", [self.account])
        return self.wh.query("SELECT * FROM broker_orders WHERE account = ? AND trade_date = ? ORDER BY created_at",
                             [self.account, trade_date])

    # -- writes ------------------------------------------------------------------------------
    def _existing(self, key: str) -> OrderResult | None:
        """The recorded result of the order with idempotency key ``key``, if one was placed."""
        existing = self.wh.query("SELECT * FROM broker_orders WHERE idempotency_key = ?", [key])
        if not len(existing):
            return None
        e = existing.iloc[0]
        return OrderResult(e["order_id"], e["status"], None if pd.isna(e["fill_price"]) else float(e["fill_price"]),
                           float(e["commission"] or 0.0), float(e["cash_flow"] or 0.0), e["reason"] or "",
                           already_placed=True)

    def _audit_details(self, order: OrderRequest, reason: str, fill_price: float | None = None, **extra) -> dict:
        return {"broker": self.name, "action": "open", "idempotency_key": order.idempotency_key,
                "trade_date": order.trade_date, "underlying": order.underlying, "strategy": order.strategy,
                "expiration": order.expiration, "direction": order.direction, "quantity": int(order.quantity),
                "limit_price": float(order.limit_price), "fill_price": fill_price, "reason": reason, **extra}

    def place_order(self, order: OrderRequest) -> OrderResult:
        if order.account != self.account:
            raise ValueError(f"order for account {order.account!r} sent to paper account {self.account!r}")
        done = self._existing(order.idempotency_key)
        if done is not None:
            return done
        oid = order_id_for(order.idempotency_key)
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        legs_json = json.dumps([{k: leg[k] for k in ("option_symbol", "expiration", "strike", "option_type", "side")}
                                for leg in order.legs], sort_keys=True)
        sign = 1.0 if order.direction == "credit" else -1.0
        _, _, fill = modelled_fill(order.legs, order.direction, self.fill_fraction, self.slippage)
        marketable = fill >= order.limit_price - 1e-9 if order.direction == "credit" else fill <= order.limit_price + 1e-9
        base = [oid, order.idempotency_key, order.account, order.trade_date, oid, "open", order.strategy,
                order.underlying, order.expiration, legs_json, int(order.quantity), float(order.limit_price)]
        if order.quantity < 1 or not marketable:
            reason = ("quantity must be at least 1" if order.quantity < 1 else
                      f"limit {order.limit_price:.2f} not reached: modelled fill {fill:.2f}")
            status = "rejected" if order.quantity < 1 else "unfilled"
            self.wh.execute_many([(
                "INSERT INTO broker_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL,0,0,?,?,?,?) ON CONFLICT DO NOTHING",
                base + [status, reason, now, order.run_id])] + audit.order_entry(
                order.account, oid, status, self._audit_details(order, reason), order.run_id))
            return OrderResult(oid, status, None, 0.0, 0.0, reason)
        price = float(order.limit_price)
        commission = round(self.commission_per_contract * len(order.legs) * order.quantity, 2)
        premium = round(sign * price * 100 * order.quantity, 2)
        per_loss = max_loss_per_spread(order.legs, sign * price)
        per_profit = float(np.max(expiry_pnl_per_share(order.legs, sign * price,
                                                       np.array([0.0] + [leg["strike"] for leg in order.legs] + [1e12])))) * 100
        collateral = collateral_per_spread(order.legs) * order.quantity if order.direction == "credit" else 0.0
        reason = f"filled {order.quantity} at {price:.2f} ({order.direction})"
        self.wh.execute_many([
            ("INSERT INTO broker_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
             base + [price, commission, premium - commission, "filled", reason, now, order.run_id]),
            ("INSERT INTO positions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL,NULL,NULL)",
             [oid, order.account, order.trade_date, order.underlying, order.strategy, order.expiration,
              order.settlement, legs_json, int(order.quantity), sign * price, per_profit * order.quantity,
              per_loss * order.quantity, collateral]),
            ("INSERT INTO cash_ledger VALUES (?,?,?,?,?,?,?)",
             [f"{oid}:premium", order.account, order.trade_date, premium, "premium", oid, order.run_id]),
            ("INSERT INTO cash_ledger VALUES (?,?,?,?,?,?,?)",
             [f"{oid}:commission", order.account, order.trade_date, -commission, "commission", oid, order.run_id]),
            *audit.order_entry(order.account, oid, "filled", self._audit_details(order, reason, price), order.run_id),
        ])
        return OrderResult(oid, "filled", price, commission, premium - commission, reason)

    def _closing_legs(self, position_id: str, day: dt.date, quotes: dict[tuple, tuple[float, float]]
                      ) -> tuple[pd.Series, list[dict]]:
        """The open position and the legs that close it (sides reversed, with the day's bid and
        ask); a clear error for an unknown or closed position or a leg without a quote."""
        pos = self.wh.query("SELECT * FROM positions WHERE position_id = ? AND account = ?", [position_id, self.account])
        if pos.empty:
            raise ValueError(f"position {position_id!r} not found in {self.name} account {self.account!r}")
        p = pos.iloc[0]
        if not pd.isna(p["closed_date"]):
            raise ValueError(f"position {position_id!r} is already closed ({p['close_reason']})")
        closing = []
        for leg in json.loads(p["legs"]):
            key = (leg["expiration"], float(leg["strike"]), leg["option_type"])
            if key not in quotes:
                raise ValueError(f"no quote for leg {key} of position {position_id!r} on {day.isoformat()}")
            bid, ask = quotes[key]
            closing.append(dict(leg, side=-int(leg["side"]), bid=float(bid), ask=float(ask)))
        return p, closing

    def close_position(self, position_id: str, day: dt.date, quotes: dict[tuple, tuple[float, float]], reason: str,
                       idempotency_key: str, run_id: str = "") -> OrderResult:
        """Close an open position at the paper fill model (a marketable closing order: limit = the
        modelled fill). ``quotes`` maps (expiration 'YYYY-MM-DD', strike, option type) to (bid, ask)
        for the day. Idempotent by key; the order, the position update and the cash entries are
        written in one transaction. Realized P&L excludes commissions, as at settlement; the
        position's ``exit_price`` is per share received (+) or paid (-) to close, as the settlement
        value is."""
        done = self._existing(idempotency_key)
        if done is not None:
            return done
        p, closing = self._closing_legs(position_id, day, quotes)
        opened_credit = float(p["entry_price"]) > 0
        direction = "debit" if opened_credit else "credit"
        _, _, fill = modelled_fill(closing, direction, self.fill_fraction, self.slippage)
        price = round(max(fill, 0.0), 2)
        qty = int(p["quantity"])
        sign = 1.0 if direction == "credit" else -1.0
        premium = round(sign * price * 100 * qty, 2)
        commission = round(self.commission_per_contract * len(closing) * qty, 2)
        pnl = round(float(p["entry_price"]) * 100 * qty + premium, 2)
        oid = order_id_for(idempotency_key)
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        legs_json = json.dumps([{k: leg[k] for k in ("option_symbol", "expiration", "strike", "option_type", "side")}
                                for leg in closing], sort_keys=True)
        text = f"closed {qty} at {price:.2f} ({direction}): {reason}"
        self.wh.execute_many([
            ("INSERT INTO broker_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
             [oid, idempotency_key, self.account, day, position_id, "close", p["strategy"], p["underlying"],
              p["expiration"], legs_json, qty, price, price, commission, premium - commission, "filled", text, now,
              run_id]),
            ("UPDATE positions SET closed_date = ?, exit_price = ?, realized_pnl = ?, close_reason = ? "
             "WHERE position_id = ? AND closed_date IS NULL", [day, sign * price, pnl, reason, position_id]),
            ("INSERT INTO cash_ledger VALUES (?,?,?,?,?,?,?)",
             [f"{oid}:close", self.account, day, premium, "close", oid, run_id]),
            ("INSERT INTO cash_ledger VALUES (?,?,?,?,?,?,?)",
             [f"{oid}:close-commission", self.account, day, -commission, "close_commission", oid, run_id]),
            *audit.order_entry(self.account, oid, "filled", {
                "broker": self.name, "action": "close", "position_id": position_id, "trade_date": day,
                "underlying": p["underlying"], "strategy": p["strategy"], "quantity": qty, "fill_price": price,
                "direction": direction, "reason": reason}, run_id),
        ])
        return OrderResult(oid, "filled", price, commission, premium - commission, text)

    def settle_expirations(self, day: dt.date, underlying_prices: dict[str, float], run_id: str = "") -> pd.DataFrame:
        """Settle every open position expiring on or before ``day`` at intrinsic value; idempotent."""
        due = self.wh.query(
            "SELECT * FROM positions WHERE account = ? AND closed_date IS NULL AND expiration <= ? AND opened_date <= ?",
            [self.account, day, day])
        rows, statements = [], []
        for p in due.itertuples(index=False):
            spot = underlying_prices.get(p.underlying)
            if spot is None or not np.isfinite(spot):
                rows.append({"position_id": p.position_id, "underlying": p.underlying, "status": "awaiting price",
                             "settlement_value": np.nan, "realized_pnl": np.nan})
                continue
            legs = json.loads(p.legs)
            value = float(expiry_pnl_per_share(legs, 0.0, np.array([spot]))[0]) * 100 * p.quantity
            pnl = value + p.entry_price * 100 * p.quantity
            exp = pd.Timestamp(p.expiration).date()
            statements += [
                ("INSERT INTO cash_ledger VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                 [f"{p.position_id}:settlement", self.account, exp, round(value, 2), "settlement", p.position_id, run_id]),
                ("UPDATE positions SET closed_date = ?, exit_price = ?, realized_pnl = ?, close_reason = ? "
                 "WHERE position_id = ? AND closed_date IS NULL",
                 [exp, value / (100 * p.quantity), round(pnl, 2), f"expired; {p.underlying} settled at {spot:.2f}",
                  p.position_id]),
            ]
            rows.append({"position_id": p.position_id, "underlying": p.underlying, "status": "settled",
                         "settlement_value": round(value, 2), "realized_pnl": round(pnl, 2)})
        if statements:
            self.wh.execute_many(statements)
        return pd.DataFrame(rows, columns=["position_id", "underlying", "status", "settlement_value", "realized_pnl"])
