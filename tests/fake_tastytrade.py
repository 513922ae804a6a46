"""A fake tastytrade API on loopback, with the real API's payload shapes (``{"data": {...}}``,
``{"data": {"items": [...]}}``, ``{"error": {...}}``) and scripted faults (a status code, a delay
past the client's timeout, a malformed body). The real SDK talks to it over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SECRET = "provider-secret-Zq81xW"
REFRESH = "refresh-token-Pf02kL"
ACCOUNT = "5WT00001"
NOW = "2026-11-20T21:00:00.000+00:00"


def _account():
    return {"account-number": ACCOUNT, "opened-at": NOW, "nickname": "Individual", "account-type-name": "Individual",
            "is-closed": False, "day-trader-status": False, "is-firm-error": False, "is-firm-proprietary": False,
            "is-futures-approved": False, "margin-or-cash": "Margin", "is-foreign": False, "created-at": NOW,
            "suitable-options-level": "No Restrictions"}


BALANCE_FIELDS = """cash-balance long-equity-value short-equity-value long-derivative-value short-derivative-value
long-futures-value short-futures-value long-futures-derivative-value short-futures-derivative-value
long-margineable-value short-margineable-value margin-equity equity-buying-power derivative-buying-power
day-trading-buying-power futures-margin-requirement available-trading-funds maintenance-requirement
maintenance-call-value reg-t-call-value day-trading-call-value day-equity-call-value net-liquidating-value
cash-available-to-withdraw day-trade-excess pending-cash long-cryptocurrency-value short-cryptocurrency-value
cryptocurrency-margin-requirement unsettled-cryptocurrency-fiat-amount closed-loop-available-balance
equity-offering-margin-requirement long-bond-value bond-margin-requirement used-derivative-buying-power
reg-t-margin-requirement futures-overnight-margin-requirement futures-intraday-margin-requirement
maintenance-excess pending-margin-interest effective-cryptocurrency-buying-power""".split()


class FakeTastytrade:
    """State and fault script of the fake API. ``fail(method, path_regex, *faults)`` queues faults
    for matching requests: an int (that HTTP status with an error body), ``"timeout"`` (handle the
    request, then hold the response past the client's timeout) or ``"malformed"`` (200, not JSON)."""

    def __init__(self, spot: float = 100.0, timeout_delay: float = 1.5, today: dt.date | None = None):
        self.spot = spot
        self.today = today or dt.date.fromisoformat(NOW[:10])
        self.timeout_delay = timeout_delay
        self.cash = 25_000.0
        self.tokens: set[str] = set()
        self.orders: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.faults: list[tuple[str, re.Pattern, list]] = []
        self.positions = [{"account-number": ACCOUNT, "symbol": "XYZ   261218P00090000", "instrument-type": "Equity Option",
                           "underlying-symbol": "XYZ", "quantity": "1", "quantity-direction": "Short",
                           "close-price": "1.25", "average-open-price": "1.60", "multiplier": "100",
                           "cost-effect": "Credit", "is-suppressed": False, "is-frozen": False,
                           "realized-day-gain": "0", "realized-today": "0", "created-at": NOW, "updated-at": NOW}]
        self.fill_on_place = False
        self.lock = threading.Lock()
        self._next_id = 1000

    # -- script --------------------------------------------------------------------------------
    def fail(self, method: str, path: str, *faults) -> None:
        self.faults.append((method, re.compile(path), list(faults)))

    def _fault(self, method: str, path: str):
        for m, rx, queue in self.faults:
            if m == method and rx.search(path) and queue:
                return queue.pop(0)
        return None

    def count(self, method: str, path: str) -> int:
        rx = re.compile(path)
        return sum(1 for m, p in self.requests if m == method and rx.search(p))

    # -- chain ---------------------------------------------------------------------------------
    def expirations(self, today: dt.date):
        out = []
        for days in (10, 31, 45, 200):
            exp = today + dt.timedelta(days=days)
            while exp.weekday() != 4:
                exp += dt.timedelta(days=1)
            out.append(exp)
        return out

    def occ(self, exp: dt.date, typ: str, strike: float) -> str:
        return f"XYZ   {exp:%y%m%d}{typ}{int(round(strike * 1000)):08d}"

    def nested_chain(self, today: dt.date) -> dict:
        exps = []
        for exp in self.expirations(today):
            strikes = [{"strike-price": f"{k:.1f}", "call": self.occ(exp, "C", k), "put": self.occ(exp, "P", k),
                        "call-streamer-symbol": f".XYZ{exp:%y%m%d}C{k:g}",
                        "put-streamer-symbol": f".XYZ{exp:%y%m%d}P{k:g}"}
                       for k in range(int(self.spot * 0.7), int(self.spot * 1.3) + 1, 5)]
            exps.append({"expiration-type": "Regular", "expiration-date": exp.isoformat(),
                         "days-to-expiration": (exp - today).days, "settlement-type": "PM", "strikes": strikes})
        return {"underlying-symbol": "XYZ", "root-symbol": "XYZ", "option-chain-type": "Standard",
                "shares-per-contract": 100, "tick-sizes": [{"value": "0.01"}], "expirations": exps}

    def quote(self, symbol: str, today: dt.date) -> dict:
        import math

        def cdf(x):
            return 0.5 * math.erfc(-x / math.sqrt(2))

        base = {"symbol": symbol, "updated-at": NOW, "bid-size": "10", "ask-size": "10", "close-price-type": "Regular",
                "summary-date": today.isoformat(), "prev-close-date": today.isoformat(),
                "prev-close-price-type": "Regular", "halt-start-time": -1, "halt-end-time": -1}
        if symbol == "XYZ":
            return base | {"instrument-type": "Equity", "bid": f"{self.spot - 0.01:.2f}", "ask": f"{self.spot + 0.01:.2f}",
                           "mark": f"{self.spot:.2f}", "last": f"{self.spot:.2f}"}
        exp = dt.datetime.strptime(symbol[6:12], "%y%m%d").date()
        typ, k = symbol[12], int(symbol[13:]) / 1000
        t = max((exp - today).days, 1) / 365
        vol = 0.30 + 0.2 * abs(k / self.spot - 1)
        d1 = (math.log(self.spot / k) + (0.04 + vol * vol / 2) * t) / (vol * t ** 0.5)
        d2 = d1 - vol * t ** 0.5
        disc = math.exp(-0.04 * t)
        px = (self.spot * cdf(d1) - k * disc * cdf(d2) if typ == "C"
              else k * disc * cdf(-d2) - self.spot * cdf(-d1))
        px = max(px, max(0.0, (self.spot - k) if typ == "C" else (k - self.spot)) + 0.01)
        half = max(0.02, 0.02 * px)
        return base | {"instrument-type": "Equity Option", "bid": f"{max(px - half, 0):.2f}", "ask": f"{px + half:.2f}",
                       "mark": f"{px:.2f}", "volume": "120", "open-interest": "900"}

    # -- orders --------------------------------------------------------------------------------
    def order_json(self, body: dict, oid: int | None, status: str) -> dict:
        out = {"account-number": ACCOUNT, "time-in-force": body.get("time-in-force", "Day"),
               "order-type": body.get("order-type", "Limit"), "underlying-symbol": "XYZ",
               "underlying-instrument-type": "Equity", "status": status, "cancellable": True, "editable": True,
               "edited": False, "updated-at": NOW, "price": body.get("price"), "price-effect": body.get("price-effect"),
               "legs": [{"instrument-type": leg["instrument-type"], "symbol": leg["symbol"], "action": leg["action"],
                         "quantity": leg.get("quantity"), "remaining-quantity": leg.get("quantity")}
                        for leg in body.get("legs", [])],
               "external-identifier": body.get("external-identifier")}
        if oid is not None:
            out["id"] = oid
        return out

    def bp_effect(self) -> dict:
        return {"change-in-margin-requirement": "400.0", "change-in-margin-requirement-effect": "Debit",
                "change-in-buying-power": "310.0", "change-in-buying-power-effect": "Debit",
                "current-buying-power": "20000.0", "current-buying-power-effect": "Credit",
                "new-buying-power": "19690.0", "new-buying-power-effect": "Credit",
                "isolated-order-margin-requirement": "400.0", "isolated-order-margin-requirement-effect": "Debit",
                "is-spread": True, "impact": "310.0", "effect": "Debit"}

    def fees(self) -> dict:
        return {"regulatory-fees": "0.04", "regulatory-fees-effect": "Debit", "clearing-fees": "0.20",
                "clearing-fees-effect": "Debit", "commission": "2.00", "commission-effect": "Debit",
                "proprietary-index-option-fees": "0", "proprietary-index-option-fees-effect": "None",
                "total-fees": "2.24", "total-fees-effect": "Debit"}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTastytrade = None  # set per server

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, payload=None, raw: bytes | None = None):
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str):
        self._send(status, {"error": {"code": code, "message": message}})

    def _handle(self, method: str):
        fake = self.fake
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        with fake.lock:
            fake.requests.append((method, path))
            fault = fake._fault(method, path)
        if isinstance(fault, int):
            return self._error(fault, "fault", f"injected {fault}")
        if fault == "malformed":
            return self._send(200, raw=b"<html>502 upstream</html>")
        delay = fake.timeout_delay if fault == "timeout" else 0.0
        today = fake.today

        if path == "/oauth/token":
            if body.get("client_secret") != SECRET or body.get("refresh_token") != REFRESH:
                return self._error(401, "invalid_grant", "bad credentials")
            token = f"access-{len(fake.tokens)}-Yt55"
            fake.tokens.add(token)
            return self._send(200, {"access_token": token, "expires_in": 900, "token_type": "Bearer"})
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in fake.tokens:
            return self._error(401, "unauthorized", "token expired")

        acct = f"/accounts/{ACCOUNT}"
        out = None
        if method == "GET" and path == "/customers/me/accounts":
            out = (200, {"data": {"items": [{"account": _account(), "authority-level": "owner"}]}})
        elif method == "GET" and path == f"/customers/me/accounts/{ACCOUNT}":
            out = (200, {"data": _account()})
        elif method == "GET" and path == f"{acct}/balances/USD":
            bal = {f: "0.0" for f in BALANCE_FIELDS} | {
                "account-number": ACCOUNT, "cash-balance": f"{fake.cash:.2f}", "net-liquidating-value": f"{fake.cash + 125:.2f}",
                "derivative-buying-power": "20000.0", "maintenance-requirement": "1000.0",
                "snapshot-date": today.isoformat(), "updated-at": NOW}
            out = (200, {"data": bal})
        elif method == "GET" and path == f"{acct}/positions":
            out = (200, {"data": {"items": fake.positions}})
        elif method == "GET" and re.fullmatch(r"/option-chains/[^/]+/nested", path):
            sym = path.split("/")[2]
            if sym != "XYZ":
                return self._error(404, "not_found", f"no chain for {sym}")
            out = (200, {"data": {"items": [fake.nested_chain(today)]}})
        elif method == "GET" and path == "/market-data/by-type":
            syms = []
            for key in ("equity", "equity-option", "index"):
                for v in query.get(key, []) + query.get(key + "[]", []):
                    syms += v.split(",")
            if len(syms) > 100:
                return self._error(400, "too_many_symbols", "combined limit is 100")
            out = (200, {"data": {"items": [fake.quote(s, today) for s in syms]}})
        elif method == "POST" and path == f"{acct}/orders/dry-run":
            out = (200, {"data": {"order": fake.order_json(body, None, "Received"),
                                  "buying-power-effect": fake.bp_effect(), "fee-calculation": fake.fees(),
                                  "warnings": []}})
        elif method == "POST" and path == f"{acct}/orders":
            with fake.lock:
                fake._next_id += 1
                order = fake.order_json(body, fake._next_id, "Filled" if fake.fill_on_place else "Live")
                fake.orders.append(order)
            out = (201, {"data": {"order": order, "buying-power-effect": fake.bp_effect(),
                                  "fee-calculation": fake.fees()}})
        elif method == "GET" and path == f"{acct}/orders/live":
            out = (200, {"data": {"items": list(fake.orders)}})
        elif re.fullmatch(rf"{acct}/orders/\d+", path):
            oid = int(path.rsplit("/", 1)[1])
            order = next((o for o in fake.orders if o["id"] == oid), None)
            if order is None:
                return self._error(404, "order_not_found", f"no order {oid}")
            if method == "GET":
                out = (200, {"data": order})
            elif method == "DELETE":
                order["status"] = "Cancelled"
                out = (200, {"data": order})
            elif method == "PUT":
                order["status"] = "Cancelled"
                with fake.lock:
                    fake._next_id += 1
                    new = dict(order, id=fake._next_id, status="Live", price=body.get("price"),
                               **{"price-effect": body.get("price-effect")})
                    fake.orders.append(new)
                out = (200, {"data": new})
        if out is None:
            return self._error(404, "not_found", f"{method} {path}")
        if delay:
            time.sleep(delay)  # handled, but the answer comes after the client gave up
        return self._send(*out)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")


class FakeServer:
    def __init__(self, fake: FakeTastytrade):
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that gave up (timeout tests)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
