"""tastytrade through its SDK (``tastytrade`` 13.x, async, OAuth): a market source and a broker.

* :class:`TastytradeClient` wraps one SDK ``Session`` with what a broker connection needs:
  timeouts (httpx), retries with exponential backoff and jitter on transient errors (tenacity:
  429, 5xx, connection errors and timeouts), a circuit breaker that stops calling after
  ``breaker_threshold`` consecutive failed calls and alerts once, a rate limit on orders (default
  60 per minute), and the SDK's own token refresh (a 401 forces one refresh and one retry).
* An order is never sent twice: each order carries its idempotency key as the SDK's
  ``external_identifier``, and before any retry of a placement the client looks for that key among
  the account's live orders; a placement whose response was lost is found there, not resent.
* Orders are dry runs by default (the SDK's ``place_order(..., dry_run=True)`` posts to the
  dry-run endpoint, which returns the buying-power effect and places nothing). Real orders go to
  the sandbox (cert environment, ``sandbox=True``) when ``dry_run`` is off, and to the production
  API only when ``live`` and ``confirm_live`` are both set.
* No credential is ever logged, put into an error message or written to the warehouse: errors
  name the call and the HTTP status, never a request body or header, and :func:`redact` scrubs the
  secrets from any text that leaves this module.

:class:`TastytradeMarket` turns nested chains and the market-data endpoint into the chain schema
(our Greeks are still computed by the JAX engine; the broker's are not used).
:class:`TastytradeBroker` keeps the book in the warehouse like the paper broker, sends the orders
through tastytrade, records each order's dry-run or live response (with its buying-power effect),
polls live orders for fills, and syncs balances and positions into ``tastytrade_balances`` and
``tastytrade_positions``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import httpx2
import numpy as np
import pandas as pd
import pydantic
import tenacity

from . import audit
from . import calendar as cal
from .broker import OrderRequest, OrderResult, PaperBroker, order_id_for
from .chain import ChainError, DropLog, conform, occ_symbol
from .market import ChainLoad, MarketSource
from .storage import Warehouse

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
LIVE_CONFIRMATION = "I understand this places real orders"


class TastytradeError(RuntimeError):
    """A tastytrade call failed; the message names the call, never a credential."""


class TransientError(TastytradeError):
    """A failure worth retrying: 429, 5xx, a dropped connection or a timeout."""


class AuthError(TastytradeError):
    """401 from the API (expired or revoked token)."""


class CircuitOpenError(TastytradeError):
    """The circuit breaker is open: no call is made until the cool-down has passed."""


class LiveTradingGuardError(TastytradeError):
    """A real order to the production API without both the live setting and the confirmation."""


@dataclass
class TastytradeConfig:
    provider_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    account_number: str
    sandbox: bool = True  # the SDK's is_test: the cert environment
    dry_run: bool = True
    live: bool = False
    confirm_live: str = ""  # must equal LIVE_CONFIRMATION for a production order
    api_url: str = ""  # overrides the SDK's base URL (a proxy, or a test server)
    timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    orders_per_minute: int = 60
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 60.0

    def __post_init__(self):
        for name in ("provider_secret", "refresh_token", "account_number"):
            if not str(getattr(self, name) or "").strip():
                raise ValueError(f"tastytrade {name} is not set (see README: tastytrade)")
        if self.orders_per_minute < 1 or self.max_attempts < 1 or self.breaker_threshold < 1:
            raise ValueError("orders_per_minute, max_attempts and breaker_threshold must be at least 1")

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.provider_secret, self.refresh_token) if s)

    def check_live_guard(self) -> None:
        """Raise unless a real (non-dry-run) order may be sent with these settings."""
        if self.dry_run:
            raise LiveTradingGuardError("dry_run is on: orders go to the dry-run endpoint only")
        if not self.sandbox and not (self.live and self.confirm_live == LIVE_CONFIRMATION):
            raise LiveTradingGuardError(
                "refusing a production order: set OPTRADER_TASTYTRADE_LIVE=true and "
                f"OPTRADER_TASTYTRADE_CONFIRM_LIVE={LIVE_CONFIRMATION!r} (or use the sandbox)")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class RateLimiter:
    """At most ``per_minute`` events in any 60 s window; ``acquire`` waits for a free slot."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.per_minute, self.clock, self.sleep = per_minute, clock, sleep
        self.stamps: collections.deque[float] = collections.deque()
        self.waited = 0.0

    def acquire(self) -> None:
        now = self.clock()
        while self.stamps and now - self.stamps[0] >= 60.0:
            self.stamps.popleft()
        if len(self.stamps) >= self.per_minute:
            wait = 60.0 - (now - self.stamps[0])
            self.waited += wait
            self.sleep(wait)
            now = self.clock()
            self.stamps.popleft()
        self.stamps.append(now)


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed calls; while open every call fails at once
    with :class:`CircuitOpenError`; after ``cooldown_s`` one trial call is let through."""

    def __init__(self, threshold: int, cooldown_s: float, on_open: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.threshold, self.cooldown_s, self.on_open, self.clock = threshold, cooldown_s, on_open, clock
        self.failures = 0
        self.opened_at: float | None = None
        self.opened_count = 0

    def before_call(self, what: str) -> None:
        if self.opened_at is not None and self.clock() - self.opened_at < self.cooldown_s:
            raise CircuitOpenError(f"tastytrade circuit breaker open after {self.failures} consecutive failures; "
                                   f"{what} not attempted")

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self, why: str) -> None:
        self.failures += 1
        if self.failures >= self.threshold and self.opened_at is None:
            self.opened_at = self.clock()
            self.opened_count += 1
            if self.on_open:
                self.on_open(f"tastytrade circuit breaker opened after {self.failures} consecutive failures "
                             f"(last: {why}); calls stop for {self.cooldown_s:.0f} s")
        elif self.opened_at is not None:
            self.opened_at = self.clock()  # a failed trial call keeps it open


class TastytradeClient:
    """A synchronous, guarded face over one SDK session (see the module docstring)."""

    def __init__(self, config: TastytradeConfig, *, alert: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 transport: Any = None):
        from tastytrade import Session

        self.config = config
        self.sleep = sleep
        self.calls: collections.Counter[str] = collections.Counter()
        self.retries = 0
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {"timeout": config.timeout_s,
                                  "event_hooks": {"response": [self._classify]}}
        if transport is not None:
            kwargs["transport"] = transport
        self.session = Session(config.provider_secret, config.refresh_token, is_test=config.sandbox, **kwargs)
        if config.api_url:
            self.session._client.base_url = config.api_url
        self.limiter = RateLimiter(config.orders_per_minute, clock=clock, sleep=sleep)
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s,
                                      on_open=alert, clock=clock)
        self._account = None

    # -- plumbing ------------------------------------------------------------------------------
    @staticmethod
    async def _classify(response) -> None:
        status = response.status_code
        if status in TRANSIENT_STATUS or status == 401:
            await response.aread()
            where = f"{response.request.method} {response.request.url.path}"
            if status == 401:
                raise AuthError(f"tastytrade 401 on {where}")
            raise TransientError(f"tastytrade {status} on {where}")

    def _run(self, coro):
        with self._lock:
            return self._loop.run_until_complete(coro)

    def _once(self, what: str, factory: Callable[[], Any]):
        """One attempt, its errors sorted into transient, auth and permanent."""
        self.calls[what] += 1
        try:
            return self._run(factory())
        except (TransientError, AuthError):
            raise
        except httpx2.TransportError as e:  # connect/read/write errors and timeouts
            raise TransientError(f"tastytrade {what}: {type(e).__name__}") from None
        except (json.JSONDecodeError, KeyError, TypeError, pydantic.ValidationError) as e:
            raise TastytradeError(f"tastytrade {what}: malformed response ({type(e).__name__})") from None
        except Exception as e:  # the SDK's TastytradeError carries the API's error code and message
            raise TastytradeError(redact(f"tastytrade {what}: {type(e).__name__}: {e}".strip(),
                                         self.config.secrets)) from None

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            wait=tenacity.wait_random_exponential(multiplier=self.config.backoff_initial_s,
                                                  max=self.config.backoff_max_s),
            stop=tenacity.stop_after_attempt(self.config.max_attempts),
            sleep=self.sleep, reraise=True,
            before_sleep=lambda rs: self._note_retry(rs))

    def _note_retry(self, rs) -> None:
        self.retries += 1
        log.warning("tastytrade: %s; retry %d", rs.outcome.exception(), rs.attempt_number)

    def call(self, what: str, factory: Callable[[], Any]):
        """A read (or a dry run: nothing is placed): retried on transient errors, through the breaker."""
        self.breaker.before_call(what)
        try:
            out = self._with_auth(what, lambda: self._retrying()(self._once, what, factory))
        except TastytradeError as e:
            self.breaker.failure(str(e))
            raise
        self.breaker.success()
        return out

    def _with_auth(self, what: str, fn):
        try:
            return fn()
        except AuthError:
            log.warning("tastytrade: 401 on %s; refreshing the token once", what)
            self._run(self.session.refresh(force=True))
            return fn()

    # -- reads ---------------------------------------------------------------------------------
    def account(self):
        if self._account is None:
            from tastytrade import Account

            self._account = self.call("account", lambda: Account.get(self.session, self.config.account_number))
        return self._account

    def balances(self):
        acct = self.account()
        return self.call("balances", lambda: acct.get_balances(self.session))

    def positions(self):
        acct = self.account()
        return self.call("positions", lambda: acct.get_positions(self.session))

    def live_orders(self):
        acct = self.account()
        return self.call("live orders", lambda: acct.get_live_orders(self.session))

    def order(self, broker_order_id: int):
        acct = self.account()
        return self.call("order status", lambda: acct.get_order(self.session, int(broker_order_id)))

    def nested_chain(self, symbol: str):
        from tastytrade.instruments import NestedOptionChain

        return self.call(f"option chain {symbol}", lambda: NestedOptionChain.get(self.session, symbol))

    def market_data(self, equities: list[str] = (), options: list[str] = (), indices: list[str] = ()) -> list:
        from tastytrade.market_data import get_market_data_by_type

        out = []
        symbols = [("e", s) for s in equities] + [("i", s) for s in indices] + [("o", s) for s in options]
        for i in range(0, len(symbols), 100):  # the endpoint's combined limit
            batch = symbols[i:i + 100]
            kinds = {k: [s for kk, s in batch if kk == k] or None for k in "eio"}
            out += self.call("market data", lambda kinds=kinds: get_market_data_by_type(
                self.session, equities=kinds["e"], indices=kinds["i"], options=kinds["o"]))
        return out

    # -- orders --------------------------------------------------------------------------------
    def dry_run(self, order):
        acct = self.account()
        return self.call("dry-run order", lambda: acct.place_order(self.session, order, dry_run=True))

    def place_live(self, order, key: str):
        """Place a real order once. Before every retry the live orders are searched for ``key``
        (the order's external identifier): a placement whose response was lost is adopted, not
        resent. Returns (placed order, response or None when adopted)."""
        self.config.check_live_guard()
        acct = self.account()
        self.breaker.before_call("order")
        self.limiter.acquire()
        try:
            for attempt in self._retrying():
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        found = self.find_by_key(key)
                        if found is not None:
                            log.warning("tastytrade: order %s was placed before the failure; not resent", key)
                            self.breaker.success()
                            return found, None
                    resp = self._with_auth("order", lambda: self._once(
                        "order", lambda: acct.place_order(self.session, order, dry_run=False)))
        except TastytradeError as e:
            self.breaker.failure(str(e))
            raise
        self.breaker.success()
        return resp.order, resp

    def find_by_key(self, key: str):
        acct = self.account()
        orders = self._once("live orders", lambda: acct.get_live_orders(self.session))
        return next((o for o in orders if o.external_identifier == key), None)

    def cancel(self, broker_order_id: int) -> None:
        acct = self.account()
        self.call("cancel order", lambda: acct.delete_order(self.session, int(broker_order_id)))

    def replace(self, broker_order_id: int, order):
        self.config.check_live_guard()
        acct = self.account()
        self.limiter.acquire()
        return self.call("replace order", lambda: acct.replace_order(self.session, int(broker_order_id), order))

    def close(self) -> None:
        try:
            self._run(self.session._client.aclose())
        finally:
            self._loop.close()


# -- orders -----------------------------------------------------------------------------------
def sdk_order(order: OrderRequest, closing: bool = False):
    """The SDK's multi-leg limit order for ``order``: one leg per option (OCC symbol), opening or
    closing actions by side, price positive for a credit and negative for a debit."""
    from tastytrade.order import InstrumentType, Leg, LimitOrder, OrderAction

    legs = []
    for leg in order.legs:
        sell = int(leg["side"]) < 0
        if closing:
            action = OrderAction.SELL_TO_CLOSE if sell else OrderAction.BUY_TO_CLOSE
        else:
            action = OrderAction.SELL_TO_OPEN if sell else OrderAction.BUY_TO_OPEN
        symbol = occ_symbol(order.underlying, pd.Timestamp(leg["expiration"]), leg["option_type"], float(leg["strike"]))
        legs.append(Leg(instrument_type=InstrumentType.EQUITY_OPTION, symbol=symbol, action=action,
                        quantity=int(order.quantity)))
    price = Decimal(f"{order.limit_price:.2f}")
    return LimitOrder(legs=legs, price=price if order.direction == "credit" else -price,
                      external_identifier=order.idempotency_key)


class TastytradeBroker(PaperBroker):
    """The book (orders, positions, cash) is kept in the warehouse as for the paper broker, under
    the account ``tastytrade:<account number>``; orders go through tastytrade.

    * dry run (default): the dry-run response is recorded (status ``dry_run``, with the
      buying-power effect and fees); nothing is placed and the book does not change;
    * real (sandbox, or production with the live guard): the order is placed once (see
      :meth:`TastytradeClient.place_live`) and recorded as ``routed``; :meth:`poll_orders` books
      it when tastytrade reports it filled, or records its cancellation or rejection.
    Cash is the synced cash balance where a sync exists (:meth:`sync_account`)."""

    name = "tastytrade"

    def __init__(self, warehouse: Warehouse, client: TastytradeClient, commission_per_contract: float = 1.0):
        self.client = client
        super().__init__(warehouse, f"tastytrade:{client.config.account_number}", fill_fraction=0.5,
                         commission_per_contract=commission_per_contract, starting_cash=0.0)

    @property
    def mode(self) -> str:
        c = self.client.config
        return "dry_run" if c.dry_run else ("sandbox" if c.sandbox else "live")

    # -- sync ----------------------------------------------------------------------------------
    def sync_account(self, as_of: dt.date) -> dict:
        """Balances and positions from tastytrade into the warehouse for ``as_of`` (replacing that
        day's rows, in one transaction); returns the balances."""
        b = self.client.balances()
        pos = self.client.positions()
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        bal = {"cash_balance": float(b.cash_balance), "net_liquidating_value": float(b.net_liquidating_value),
               "derivative_buying_power": float(b.derivative_buying_power),
               "maintenance_requirement": float(b.maintenance_requirement)}
        stmts = [("DELETE FROM tastytrade_balances WHERE account = ? AND as_of = ?", [self.account, as_of]),
                 ("INSERT INTO tastytrade_balances VALUES (?,?,?,?,?,?,?)",
                  [self.account, as_of, *bal.values(), now]),
                 ("DELETE FROM tastytrade_positions WHERE account = ? AND as_of = ?", [self.account, as_of])]
        for p in pos:
            qty = float(p.quantity) * (-1.0 if str(p.quantity_direction).lower() == "short" else 1.0)
            stmts.append(("INSERT INTO tastytrade_positions VALUES (?,?,?,?,?,?,?,?,?,?)",
                          [self.account, as_of, p.symbol, p.underlying_symbol, str(p.instrument_type.value),
                           qty, float(p.average_open_price), float(p.close_price), float(p.multiplier), now]))
        self.wh.execute_many(stmts)
        return bal | {"positions": len(pos)}

    def cash(self, as_of: dt.date, before_orders: bool = False) -> float:
        synced = self.wh.query("SELECT cash_balance FROM tastytrade_balances WHERE account = ? AND as_of <= ? "
                               "ORDER BY as_of DESC LIMIT 1", [self.account, as_of])
        if len(synced):
            return float(synced["cash_balance"].iloc[0])
        return super().cash(as_of, before_orders)

    # -- orders --------------------------------------------------------------------------------
    def place_order(self, order: OrderRequest) -> OrderResult:
        if order.account != self.account:
            raise ValueError(f"order for account {order.account!r} sent to tastytrade account {self.account!r}")
        done = self._existing(order.idempotency_key)
        if done is not None:
            return done
        return self._send(order)

    def _send(self, order: OrderRequest, action: str = "open", position_id: str | None = None, closing: bool = False,
              why: str = "") -> OrderResult:
        oid = order_id_for(order.idempotency_key)
        legs_json = json.dumps([{k: leg[k] for k in ("option_symbol", "expiration", "strike", "option_type", "side")}
                                for leg in order.legs], sort_keys=True)
        base = [oid, order.idempotency_key, order.account, order.trade_date, position_id or oid, action, order.strategy,
                order.underlying, order.expiration, legs_json, int(order.quantity), float(order.limit_price)]
        sdk = sdk_order(order, closing=closing)
        mode = self.mode
        try:
            if mode == "dry_run":
                resp = self.client.dry_run(sdk)
                placed, status = resp.order, "dry_run"
            else:
                placed, resp = self.client.place_live(sdk, order.idempotency_key)
                status = "routed"
        except TastytradeError as e:
            reason = str(e)
            self._record(base, oid, order.idempotency_key, mode, None, "rejected", None, reason, order.run_id)
            return OrderResult(oid, "rejected", None, 0.0, 0.0, reason)
        bpe = getattr(resp, "buying_power_effect", None) if resp is not None else None
        fees = getattr(resp, "fee_calculation", None) if resp is not None else None
        text = (f"{mode}: {status} {action} at {order.limit_price:.2f} {order.direction}" + (f" ({why})" if why else "")
                + (f"; buying power {float(bpe.change_in_buying_power):+.2f} ({bpe.effect.value})" if bpe else ""))
        self._record(base, oid, order.idempotency_key, mode, getattr(placed, "id", None), status, (bpe, fees, resp),
                     text, order.run_id)
        return OrderResult(oid, status, None, 0.0, 0.0, text)

    def close_position(self, position_id: str, day: dt.date, quotes: dict[tuple, tuple[float, float]], reason: str,
                       idempotency_key: str, run_id: str = "") -> OrderResult:
        """A closing order for a booked position through tastytrade, limit at the paper fill model
        of the day's quotes: a dry run records it and changes nothing; a real order is routed and
        the position is closed in the book when :meth:`poll_orders` sees it filled."""
        done = self._existing(idempotency_key)
        if done is not None:
            return done
        p, closing = self._closing_legs(position_id, day, quotes)
        direction = "debit" if float(p["entry_price"]) > 0 else "credit"
        from .broker import modelled_fill

        _, _, fill = modelled_fill(closing, direction, self.fill_fraction)
        req = OrderRequest(idempotency_key, self.account, day, p["strategy"], p["underlying"],
                           pd.Timestamp(p["expiration"]).date(), p["settlement"], direction, closing,
                           int(p["quantity"]), round(max(fill, 0.0), 2), run_id)
        return self._send(req, action="close", position_id=position_id, closing=True, why=reason)

    def _record(self, base, oid, key, mode, broker_id, status, detail, reason, run_id) -> None:
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        bpe, fees, resp = detail if detail else (None, None, None)
        warnings = "; ".join(f"{w.code}: {w.message}" for w in (getattr(resp, "warnings", None) or []))
        self.wh.execute_many([
            ("INSERT INTO broker_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL,0,0,?,?,?,?) ON CONFLICT DO NOTHING",
             base + [status, reason, now, run_id]),
            ("INSERT INTO tastytrade_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
             [oid, key, self.account, mode, broker_id, status,
              float(bpe.change_in_buying_power) if bpe else None, bpe.effect.value if bpe else None,
              float(bpe.change_in_margin_requirement) if bpe else None,
              float(fees.total_fees) if fees else None, warnings or None, now]),
            *audit.order_entry(self.account, oid, status, {
                "broker": self.name, "mode": mode, "broker_order_id": broker_id, "action": base[5],
                "idempotency_key": key, "trade_date": base[3], "underlying": base[7], "strategy": base[6],
                "expiration": base[8], "quantity": base[10], "limit_price": base[11], "reason": reason,
                "buying_power_change": float(bpe.change_in_buying_power) if bpe else None}, run_id),
        ])

    def poll_orders(self, day: dt.date, run_id: str = "") -> pd.DataFrame:
        """Status of every routed order: a filled one is booked (position and cash, in one
        transaction), a cancelled, rejected or expired one recorded; idempotent."""
        routed = self.wh.query("SELECT o.*, t.broker_order_id FROM broker_orders o JOIN tastytrade_orders t "
                               "USING (order_id) WHERE o.account = ? AND o.status = 'routed'", [self.account])
        out = []
        for r in routed.itertuples():
            placed = self.client.order(int(r.broker_order_id))
            status = placed.status.value.lower()
            if status == "filled":
                self._book_fill(r, placed, day, run_id)
            elif status in ("cancelled", "rejected", "expired"):
                self.wh.execute_many([
                    ("UPDATE broker_orders SET status = ?, reason = ? WHERE order_id = ?",
                     [status, f"tastytrade: {status}" + (f" ({placed.reject_reason})" if placed.reject_reason else ""),
                      r.order_id]),
                    ("UPDATE tastytrade_orders SET status = ?, updated_at = now() WHERE order_id = ?",
                     [status, r.order_id]),
                    *audit.entry("order_rejected" if status == "rejected" else "order_cancelled", self.account,
                                 r.order_id, {"broker": self.name, "status": status, "by": "tastytrade",
                                              "broker_order_id": int(r.broker_order_id),
                                              "reject_reason": placed.reject_reason}, run_id)])
            out.append({"order_id": r.order_id, "broker_order_id": int(r.broker_order_id), "status": status})
        return pd.DataFrame(out, columns=["order_id", "broker_order_id", "status"])

    def _book_fill(self, r, placed, day, run_id) -> None:
        legs = json.loads(r.legs)
        signed = float(placed.price) if placed.price is not None else float(r.limit_price)
        direction = "credit" if signed >= 0 else "debit"  # the SDK signs prices: debit negative
        price = abs(signed)
        fills = [f for leg in placed.legs for f in (leg.fills or [])]
        fees = 0.0
        qty = int(r.quantity)
        sign = 1.0 if direction == "credit" else -1.0
        premium = round(sign * price * 100 * qty, 2)
        from .risk import collateral_per_spread, expiry_pnl_per_share, max_loss_per_spread

        per_loss = max_loss_per_spread(legs, sign * price)
        per_profit = float(np.max(expiry_pnl_per_share(legs, sign * price, np.array(
            [0.0] + [leg["strike"] for leg in legs] + [1e12])))) * 100
        collateral = collateral_per_spread(legs) * qty if direction == "credit" else 0.0
        text = f"filled {qty} at {price:.2f} ({direction}) on tastytrade, {len(fills)} fills"
        filled = {"broker": self.name, "action": r.action, "broker_order_id": int(r.broker_order_id),
                  "fill_price": price, "direction": direction, "quantity": qty, "fills": len(fills)}
        if r.action == "close":
            pos = self.wh.query("SELECT entry_price FROM positions WHERE position_id = ?", [r.position_id])
            pnl = round(float(pos["entry_price"].iloc[0]) * 100 * qty + premium, 2) if len(pos) else None
            self.wh.execute_many([
                ("UPDATE broker_orders SET status = 'filled', fill_price = ?, commission = ?, cash_flow = ?, reason = ? "
                 "WHERE order_id = ? AND status = 'routed'", [price, fees, premium - fees, text, r.order_id]),
                ("UPDATE tastytrade_orders SET status = 'filled', updated_at = now() WHERE order_id = ?", [r.order_id]),
                ("UPDATE positions SET closed_date = ?, exit_price = ?, realized_pnl = ?, close_reason = ? "
                 "WHERE position_id = ? AND closed_date IS NULL", [day, sign * price, pnl, "closed on tastytrade",
                                                                   r.position_id]),
                ("INSERT INTO cash_ledger VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                 [f"{r.order_id}:close", self.account, day, premium, "close", r.order_id, run_id]),
                *audit.entry("order_filled", self.account, r.order_id, filled, run_id),
            ])
            return
        self.wh.execute_many([
            ("UPDATE broker_orders SET status = 'filled', fill_price = ?, commission = ?, cash_flow = ?, reason = ? "
             "WHERE order_id = ? AND status = 'routed'", [price, fees, premium - fees, text, r.order_id]),
            ("UPDATE tastytrade_orders SET status = 'filled', updated_at = now() WHERE order_id = ?", [r.order_id]),
            ("INSERT INTO positions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL,NULL,NULL) ON CONFLICT DO NOTHING",
             [r.order_id, self.account, r.trade_date, r.underlying, r.strategy, r.expiration,
              "physical", r.legs, qty, sign * price, per_profit * qty, per_loss * qty, collateral]),
            ("INSERT INTO cash_ledger VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
             [f"{r.order_id}:premium", self.account, r.trade_date, premium, "premium", r.order_id, run_id]),
            *audit.entry("order_filled", self.account, r.order_id, filled, run_id),
        ])

    def cancel_order(self, order_id: str) -> None:
        row = self.wh.query("SELECT broker_order_id FROM tastytrade_orders WHERE order_id = ?", [order_id])
        if row.empty or pd.isna(row["broker_order_id"].iloc[0]):
            raise ValueError(f"order {order_id!r} was not routed to tastytrade")
        self.client.cancel(int(row["broker_order_id"].iloc[0]))
        self.wh.execute_many([("UPDATE broker_orders SET status = 'cancelled', reason = 'cancelled by us' "
                               "WHERE order_id = ? AND status = 'routed'", [order_id]),
                              ("UPDATE tastytrade_orders SET status = 'cancelled', updated_at = now() "
                               "WHERE order_id = ?", [order_id]),
                              *audit.entry("order_cancelled", self.account, order_id,
                                           {"broker": self.name, "by": "optrader",
                                            "broker_order_id": int(row["broker_order_id"].iloc[0])})])

    def replace_order(self, order_id: str, new_limit: float) -> None:
        """A new limit price for a routed order (same legs)."""
        from tastytrade.order import LimitOrder

        row = self.wh.query("SELECT o.*, t.broker_order_id FROM broker_orders o JOIN tastytrade_orders t "
                            "USING (order_id) WHERE order_id = ?", [order_id])
        if row.empty or row["status"].iloc[0] != "routed":
            raise ValueError(f"order {order_id!r} is not a routed tastytrade order")
        r = row.iloc[0]
        placed = self.client.order(int(r["broker_order_id"]))
        sign = 1 if float(placed.price or 0) >= 0 else -1
        new = LimitOrder(legs=placed.legs, price=Decimal(f"{new_limit:.2f}") * sign,
                         external_identifier=r["idempotency_key"])
        replaced = self.client.replace(int(r["broker_order_id"]), new)
        self.wh.execute_many([("UPDATE broker_orders SET limit_price = ? WHERE order_id = ?", [new_limit, order_id]),
                              ("UPDATE tastytrade_orders SET broker_order_id = ?, updated_at = now() "
                               "WHERE order_id = ?", [int(replaced.id), order_id]),
                              *audit.entry("order_replaced", self.account, order_id,
                                           {"broker": self.name, "old_limit": float(r["limit_price"]),
                                            "new_limit": float(new_limit), "old_broker_order_id": int(r["broker_order_id"]),
                                            "broker_order_id": int(replaced.id)},
                                           key=f"order_replaced|{order_id}|{int(replaced.id)}")])


# -- market -----------------------------------------------------------------------------------
INDEX_ROOTS = {"SPX", "SPXW", "XSP", "NDX", "NDXP", "RUT", "RUTW", "VIX", "VIXW", "DJX"}


class TastytradeMarket(MarketSource):
    """Chains from tastytrade's nested chain endpoint and quotes from its market-data endpoint,
    normalized to the chain schema. Live data only: a past day is an error (backtests read the
    history directory). Expirations up to ``max_dte`` days and ``strikes_per_side`` strikes either
    side of the spot keep the quote requests bounded (100 symbols per request)."""

    name = "tastytrade"

    def __init__(self, client: TastytradeClient, universe: tuple[str, ...], risk_free_rate: float = 0.04,
                 max_dte: int = 70, strikes_per_side: int = 10, now: Callable[[], pd.Timestamp] | None = None):
        if not universe:
            raise ValueError("the tastytrade market needs a universe (OPTRADER_UNIVERSE)")
        self.client, self.universe, self.rate = client, tuple(universe), risk_free_rate
        self.max_dte, self.strikes_per_side = max_dte, strikes_per_side
        self.now = now

    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        latest = cal.latest_completed_trading_day(self.now() if self.now else None)
        if day < latest:
            raise ChainError(f"tastytrade serves live quotes only; {day.isoformat()} is past (latest session "
                             f"{latest.isoformat()}): backtest with OPTRADER_MARKET=files")
        drops = DropLog()
        frames = []
        horizon = self.max_dte if max_dte is None else min(self.max_dte, max_dte)
        for symbol in self.universe:
            frames.append(self._one(symbol, day, drops, horizon))
        chain = conform(pd.concat(frames, ignore_index=True))
        return ChainLoad(chain, drops, [f"tastytrade:{s}" for s in self.universe])

    def _one(self, symbol: str, day: dt.date, drops: DropLog, max_dte: int) -> pd.DataFrame:
        chains = self.client.nested_chain(symbol)
        if not chains:
            raise ChainError(f"tastytrade returned no option chain for {symbol}")
        index = symbol in INDEX_ROOTS
        spot_md = self.client.market_data(indices=[symbol]) if index else self.client.market_data(equities=[symbol])
        spot = _mark(spot_md[0]) if spot_md else float("nan")
        if not np.isfinite(spot) or spot <= 0:
            raise ChainError(f"tastytrade has no price for the underlying {symbol}")
        rows = []
        for ch in chains:
            for exp in ch.expirations:
                dte = (exp.expiration_date - day).days
                if dte < 0 or dte > max_dte:
                    continue
                strikes = sorted(exp.strikes, key=lambda s: abs(float(s.strike_price) - spot))[:2 * self.strikes_per_side]
                for s in strikes:
                    for typ, occ in (("C", s.call), ("P", s.put)):
                        rows.append({"underlying": symbol, "root": ch.root_symbol, "option_symbol": occ,
                                     "expiration": pd.Timestamp(exp.expiration_date), "strike": float(s.strike_price),
                                     "option_type": typ, "settlement": "cash" if exp.settlement_type.upper() == "PM"
                                     and index else ("cash" if index else "physical"),
                                     "exercise_style": "E" if index else "A",
                                     "multiplier": int(ch.shares_per_contract)})
        if not rows:
            raise ChainError(f"tastytrade chain for {symbol} has no expiration within {self.max_dte} days")
        df = pd.DataFrame(rows)
        quotes = {m.symbol: m for m in self.client.market_data(options=list(df["option_symbol"]))}
        missing = ~df["option_symbol"].isin(quotes)
        if missing.any():
            drops.add(f"tastytrade:{symbol}", "no quote from the market-data endpoint", int(missing.sum()))
            df = df[~missing]
        q = df["option_symbol"].map(quotes)
        df = df.assign(
            quote_date=pd.Timestamp(day), bid=[_num(m.bid) for m in q], ask=[_num(m.ask) for m in q],
            last=[_num(m.last) for m in q], volume=[int(_num(m.volume, 0)) for m in q],
            open_interest=[int(_num(m.open_interest, 0)) for m in q], underlying_price=spot, forward=np.nan,
            rate=self.rate, dividend_yield=0.0, vendor_iv=np.nan, vendor_delta=np.nan, source="tastytrade")
        bad = ~(np.isfinite(df["bid"]) & np.isfinite(df["ask"]) & (df["ask"] >= df["bid"]) & (df["bid"] >= 0))
        if bad.any():
            drops.add(f"tastytrade:{symbol}", "missing or crossed bid/ask", int(bad.sum()))
            df = df[~bad]
        return df


def _num(x, default=float("nan")) -> float:
    return default if x is None else float(x)


def _mark(m) -> float:
    for v in (m.mark, m.mid, m.last, m.close):
        if v is not None and float(v) > 0:
            return float(v)
    if m.bid is not None and m.ask is not None:
        return (float(m.bid) + float(m.ask)) / 2
    return float("nan")
