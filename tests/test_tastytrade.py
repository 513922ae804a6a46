"""tastytrade through the real SDK against a fake tastytrade API on loopback (tests/fake_tastytrade.py):
market data into the chain schema, dry-run and real orders, retries, the circuit breaker, the live
guard, idempotency under a retry storm, and no credential in logs, errors or the warehouse."""

import datetime as dt
import json
import logging

import pandas as pd
import pytest

from tests.fake_tastytrade import ACCOUNT, REFRESH, SECRET, FakeServer, FakeTastytrade
from tests.test_notify import webhook_server  # noqa: F401  (fixture)
from optrader_pipelines import audit
from optrader_pipelines.broker import OrderRequest
from optrader_pipelines.chain import ChainError
from optrader_pipelines.storage import Warehouse
from optrader_pipelines.tastytrade import (LIVE_CONFIRMATION, CircuitOpenError, LiveTradingGuardError, RateLimiter,
                                           TastytradeBroker, TastytradeClient, TastytradeConfig, TastytradeError,
                                           TastytradeMarket)

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def fake():
    f = FakeTastytrade()
    with FakeServer(f) as server:
        f.url = server.url
        yield f


def _client(fake, alerts=None, **over):
    cfg = dict(provider_secret=SECRET, refresh_token=REFRESH, account_number=ACCOUNT, api_url=fake.url,
               timeout_s=0.5, backoff_initial_s=0.001, backoff_max_s=0.002)
    cfg.update(over)
    return TastytradeClient(TastytradeConfig(**cfg), alert=(alerts.append if alerts is not None else None))


def _order(key="k1", direction="credit", limit=1.10, account=f"tastytrade:{ACCOUNT}"):
    exp = dt.date(2026, 12, 18)
    legs = [{"option_symbol": "a", "expiration": exp.isoformat(), "strike": 95.0, "option_type": "P", "side": -1,
             "bid": 1.9, "ask": 2.0},
            {"option_symbol": "b", "expiration": exp.isoformat(), "strike": 90.0, "option_type": "P", "side": 1,
             "bid": 0.8, "ask": 0.9}]
    return OrderRequest(key, account, DAY, "bull_put_credit", "XYZ", exp, "physical", direction, legs, 2, limit)


def test_config_needs_credentials_and_hides_them():
    with pytest.raises(ValueError, match="refresh_token is not set"):
        TastytradeConfig(provider_secret="x", refresh_token="", account_number="1")
    cfg = TastytradeConfig(provider_secret=SECRET, refresh_token=REFRESH, account_number=ACCOUNT)
    assert SECRET not in repr(cfg) and REFRESH not in repr(cfg)
    assert cfg.sandbox and cfg.dry_run and not cfg.live  # the safe defaults


def test_market_chain_from_nested_chain_and_market_data(fake):
    client = _client(fake)
    market = TastytradeMarket(client, ("XYZ",), max_dte=70, strikes_per_side=4,
                              now=lambda: pd.Timestamp("2026-11-20 17:00", tz="America/New_York"))
    load = market.load_chain(DAY)
    chain = load.chain
    assert set(chain["option_type"]) == {"C", "P"} and (chain["underlying_price"] == 100.0).all()
    assert chain["expiration"].max() <= pd.Timestamp(DAY) + pd.Timedelta(days=70)  # the 200-day expiry left out
    assert len(chain) == 3 * 8 * 2 and (chain["exercise_style"] == "A").all()
    assert (chain["ask"] >= chain["bid"]).all() and chain["option_symbol"].str.match(r"XYZ   \d{6}[CP]\d{8}").all()
    # quotes come in requests of at most 100 symbols (the endpoint's limit): 48 options in one
    assert fake.count("GET", "/market-data/by-type") == 2
    with pytest.raises(ChainError, match="live quotes only"):
        market.load_chain(dt.date(2026, 11, 2))


def test_dry_run_by_default_records_the_buying_power_effect(fake, tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    broker = TastytradeBroker(wh, _client(fake))
    res = broker.place_order(_order())
    assert res.status == "dry_run" and "buying power -310.00 (Debit)" in res.reason
    assert fake.count("POST", r"/orders/dry-run$") == 1 and fake.count("POST", r"/orders$") == 0
    row = wh.query("SELECT * FROM tastytrade_orders").iloc[0]
    assert row["mode"] == "dry_run" and row["buying_power_change"] == -310.0 and row["fees"] == -2.24
    assert broker.open_positions(DAY).empty  # a dry run books nothing
    again = broker.place_order(_order())
    assert again.already_placed and fake.count("POST", r"/orders/dry-run$") == 1


def test_production_orders_need_live_and_the_confirmation(fake, tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    client = _client(fake, sandbox=False, dry_run=False, live=True)  # no confirmation
    res = TastytradeBroker(wh, client).place_order(_order())
    assert res.status == "rejected" and "refusing a production order" in res.reason
    assert fake.count("POST", r"/orders") == 0
    with pytest.raises(LiveTradingGuardError):
        TastytradeConfig(provider_secret="a", refresh_token="b", account_number="c", dry_run=True).check_live_guard()
    ok = TastytradeConfig(provider_secret="a", refresh_token="b", account_number="c", sandbox=False, dry_run=False,
                          live=True, confirm_live=LIVE_CONFIRMATION)
    ok.check_live_guard()


def test_sandbox_order_is_routed_polled_and_booked_once(fake, tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    broker = TastytradeBroker(wh, _client(fake, dry_run=False))
    res = broker.place_order(_order(direction="debit", limit=0.95))
    assert res.status == "routed" and fake.count("POST", r"/orders$") == 1
    sent = fake.orders[0]
    assert sent["price"] == "0.95" and sent["price-effect"] == "Debit"  # debit sent as a negative price
    assert [leg["action"] for leg in sent["legs"]] == ["Sell to Open", "Buy to Open"]
    assert sent["external-identifier"] == "k1"
    assert broker.poll_orders(DAY)["status"].tolist() == ["live"] and broker.open_positions(DAY).empty
    fake.orders[0]["status"] = "Filled"
    assert broker.poll_orders(DAY)["status"].tolist() == ["filled"]
    pos = broker.open_positions(DAY)
    assert len(pos) == 1 and pos["entry_price"].iloc[0] == pytest.approx(-0.95)
    assert broker.poll_orders(DAY).empty  # nothing routed any more: a re-poll books nothing twice
    assert len(broker.open_positions(DAY)) == 1
    log = audit.history(wh, broker.account)
    assert list(log["action"]) == ["order_placed", "order_filled"] and set(log["subject"]) == {res.order_id}
    assert json.loads(log["details"].iloc[0])["mode"] == "sandbox"


def test_cancel_and_replace(fake, tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    broker = TastytradeBroker(wh, _client(fake, dry_run=False))
    a = broker.place_order(_order("a"))
    broker.replace_order(a.order_id, 1.05)
    assert fake.orders[0]["status"] == "Cancelled" and fake.orders[1]["price"] == "1.05"
    broker.poll_orders(DAY)
    broker.cancel_order(a.order_id)
    assert fake.orders[1]["status"] == "Cancelled"
    assert wh.query("SELECT status FROM broker_orders")["status"].tolist() == ["cancelled"]
    assert list(audit.history(wh, broker.account)["action"]) == ["order_placed", "order_replaced", "order_cancelled"]


def test_retry_storm_places_each_order_exactly_once_and_logs_no_secret(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wh = Warehouse(tmp_path / "w.duckdb")
    broker = TastytradeBroker(wh, _client(fake, dry_run=False, max_attempts=6))
    # the first placement is handled but its answer is lost (timeout); then 503 and 429 storms
    fake.fail("POST", r"/orders$", "timeout", 503)
    fake.fail("GET", r"/orders/live$", 502)
    fake.fail("GET", r"/balances", 500, 429, "timeout")
    first = broker.place_order(_order("storm-1"))
    fake.fail("POST", r"/orders$", 503, 429, 500)
    second = broker.place_order(_order("storm-2"))
    assert first.status == second.status == "routed"
    keys = [o["external-identifier"] for o in fake.orders]
    assert sorted(keys) == ["storm-1", "storm-2"]  # each exactly once
    assert broker.client.retries >= 4
    bal = broker.sync_account(DAY)
    assert bal["cash_balance"] == 25_000.0 and bal["positions"] == 1
    # replays of the same keys send nothing
    broker.place_order(_order("storm-1"))
    broker.place_order(_order("storm-2"))
    assert len(fake.orders) == 2
    text = caplog.text + wh.query("SELECT * FROM broker_orders").to_csv() + wh.query(
        "SELECT * FROM tastytrade_orders").to_csv()
    assert "retry" in caplog.text
    assert SECRET not in text and REFRESH not in text and "access-" not in text


def test_malformed_body_and_permanent_errors_are_clear_and_not_retried(fake):
    client = _client(fake)
    fake.fail("GET", r"/positions$", "malformed")
    with pytest.raises(TastytradeError, match="positions: malformed response"):
        client.positions()
    assert fake.count("GET", r"/positions$") == 1
    with pytest.raises(TastytradeError, match="option chain NOPE.*not_found"):
        client.nested_chain("NOPE")


def test_circuit_breaker_stops_calling_and_alerts_once(fake):
    alerts = []
    client = _client(fake, alerts, max_attempts=2, breaker_threshold=3, breaker_cooldown_s=600)
    client.account()
    fake.fail("GET", r"/balances", *([500] * 6))
    for _ in range(3):
        with pytest.raises(TastytradeError, match="500"):
            client.balances()
    before = fake.count("GET", r"/balances")
    assert before == 6
    with pytest.raises(CircuitOpenError):
        client.balances()
    assert fake.count("GET", r"/balances") == before  # not called while open
    assert len(alerts) == 1 and "circuit breaker opened after 3" in alerts[0]


def test_expired_token_is_refreshed_once(fake):
    client = _client(fake)
    client.account()
    fake.tokens.clear()  # the API revokes every token
    assert client.balances().cash_balance == 25_000
    assert fake.count("POST", "/oauth/token") == 2


def test_rate_limit_spaces_orders_to_the_limit_per_minute():
    t = [0.0]
    limiter = RateLimiter(3, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
    for _ in range(7):
        limiter.acquire()
    assert t[0] == pytest.approx(120.0)  # orders 4-6 wait for the first minute, 7 for the second


def test_daily_graph_end_to_end_with_tastytrade_as_market_and_broker(tmp_path, monkeypatch, caplog):
    import dagster as dg

    from assets import DAILY_ASSETS, DAILY_CHECKS
    from optrader_pipelines import calendar as cal
    from optrader_pipelines.config import Settings
    from optrader_pipelines.definitions import build_resources

    caplog.set_level(logging.DEBUG)
    day = cal.latest_completed_trading_day()
    fake = FakeTastytrade(today=day)
    with FakeServer(fake) as server:
        monkeypatch.setenv("OPTRADER_TASTYTRADE_SECRET", SECRET)
        monkeypatch.setenv("OPTRADER_TASTYTRADE_REFRESH_TOKEN", REFRESH)
        monkeypatch.setenv("OPTRADER_TASTYTRADE_ACCOUNT", ACCOUNT)
        settings = Settings(duckdb_path=tmp_path / "w.duckdb", report_dir=tmp_path / "reports", universe=("XYZ",),
                            market="tastytrade", broker="tastytrade", tastytrade_api_url=server.url)
        res = build_resources(settings)
        assert res["market"].label == "tastytrade (sandbox)"
        for _ in range(2):  # the second run of the day sends nothing new
            result = dg.materialize([*DAILY_ASSETS, *DAILY_CHECKS], partition_key=day.isoformat(), resources=res)
            assert result.success
        wh = Warehouse(tmp_path / "w.duckdb")
        chains = wh.query("SELECT * FROM option_chains")
        assert set(chains["source"]) == {"tastytrade"} and len(chains) > 50
        greeks = wh.query("SELECT iv, delta FROM option_greeks WHERE iv_status = 'ok'")
        assert len(greeks) > 50 and greeks["iv"].between(0.05, 2).all()  # our engine's IV on the fake's quotes
        orders = wh.query("SELECT * FROM broker_orders")
        tt = wh.query("SELECT * FROM tastytrade_orders")
        assert len(orders) >= 1 and set(orders["status"]) == {"dry_run"} and set(orders["account"]) == {f"tastytrade:{ACCOUNT}"}
        assert len(tt) == len(orders) and (tt["buying_power_change"] == -310.0).all()
        assert fake.count("POST", r"/orders/dry-run$") == len(orders) and fake.count("POST", r"/orders$") == 0
        assert wh.query("SELECT cash_balance FROM tastytrade_balances")["cash_balance"].tolist() == [25_000.0]
        dump = "".join(wh.query(f"SELECT * FROM {t}").to_csv() for t in
                       ("broker_orders", "tastytrade_orders", "tastytrade_balances", "daily_report"))
        events = "".join(str(e) for e in result.all_events)
    for text in (caplog.text, dump, events):
        assert SECRET not in text and REFRESH not in text


def test_the_breaker_alert_reaches_the_desk_notifier(fake, tmp_path, webhook_server):  # noqa: F811
    from resources import NotifierResource, TastytradeBrokerResource, TastytradeCredentials

    url, hook = webhook_server
    creds = TastytradeCredentials(provider_secret=SECRET, refresh_token=REFRESH, account_number=ACCOUNT,
                                  api_url=fake.url, timeout_s=0.5, max_attempts=1, backoff_initial_s=0.001,
                                  backoff_max_s=0.002, breaker_threshold=2, breaker_cooldown_s=600,
                                  notifier=NotifierResource(kind="webhook", webhook_url=url))
    import dagster as dg

    fake.fail("GET", r"/balances", *([503] * 4))
    with dg.build_resources({"broker": TastytradeBrokerResource(duckdb_path=str(tmp_path / "w.duckdb"),
                                                                credentials=creds)}) as res:
        broker = res.broker.get()
        for _ in range(2):
            with pytest.raises(TastytradeError):
                broker.sync_account(DAY)
        with pytest.raises(CircuitOpenError):
            broker.sync_account(DAY)
    assert len(hook.received) == 1
    text = hook.received[0][2]["text"]
    assert text.startswith("*[CRITICAL] optrader: tastytrade circuit breaker open*") and "after 2" in text
    assert SECRET not in text and REFRESH not in text
