"""Intraday sensors with dg.build_sensor_context: when they evaluate, what they record, breaches
that engage the kill switch, and run-failure alerts."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

import sensors.intraday as intraday
from optrader_pipelines import calendar as cal
from optrader_pipelines.intraday import RiskLimits
from optrader_pipelines.killswitch import KillSwitch
from optrader_pipelines.storage import Warehouse
from resources import NotifierResource
from sensors import intraday_risk_sensor, run_failure_alert_sensor

from .conftest import DAY
from .test_daily_run import D1, _resources, _run
from .test_notify import webhook_server  # noqa: F401  (fixture)


def _at(text):
    return pd.Timestamp(text, tz=cal.NY)


@pytest.mark.parametrize("when, why", [
    ("2026-11-14 10:00", "is not an NYSE trading day"),  # Saturday
    ("2026-09-07 10:00", "is not an NYSE trading day"),  # Labor Day
    ("2026-11-20 09:29", "outside regular hours (09:30-16:00"),
    ("2026-11-20 16:00", "outside regular hours"),
    ("2025-11-28 13:05", "half day"),  # the day after Thanksgiving closes at 13:00
])
def test_risk_sensor_skips_outside_sessions_with_a_reason(monkeypatch, tmp_path, when, why):
    monkeypatch.setattr(intraday, "now_ny", lambda: _at(when))
    res = _resources(tmp_path)
    out = intraday_risk_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res))
    assert isinstance(out, dg.SkipReason) and why in out.skip_message


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """A paper book opened by the daily run of D1, and the resources pointing at it."""
    tmp = tmp_path_factory.mktemp("sensors")
    res = _resources(tmp)
    assert _run(res, D1).success
    return tmp, res


def test_a_tick_at_10am_records_one_snapshot_per_minute(monkeypatch, book):
    tmp, res = book
    monkeypatch.setattr(intraday, "now_ny", lambda: _at("2026-11-20 10:00"))
    wh = Warehouse(tmp / "optrader.duckdb")
    first = intraday_risk_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res))
    again = intraday_risk_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res))
    assert "within limits" in first.skip_message and "VaR95" in first.skip_message
    snaps = wh.query("SELECT * FROM risk_snapshots")
    assert len(snaps) == 1 and again.skip_message == first.skip_message  # the same tick twice: one row
    s = snaps.iloc[0]
    assert s["open_positions"] >= 1 and s["var_days"] >= 200
    assert s["var95_historical"] > 0 and s["var95_parametric"] > 0
    held = wh.query("SELECT sum(collateral) AS c FROM positions WHERE closed_date IS NULL")["c"].iloc[0]
    cash = wh.query("SELECT sum(amount) AS c FROM cash_ledger")["c"].iloc[0]
    assert s["buying_power_used"] == pytest.approx((held or 0.0) / cash)
    # the marks move with the intraday path: an hour later the book is worth something else
    monkeypatch.setattr(intraday, "now_ny", lambda: _at("2026-11-20 11:00"))
    intraday_risk_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res))
    snaps = wh.query("SELECT * FROM risk_snapshots ORDER BY taken_at")
    assert len(snaps) == 2 and snaps["nlv"].iloc[0] != snaps["nlv"].iloc[1]


def test_a_breach_engages_the_kill_switch_and_the_next_daily_run_opens_nothing(monkeypatch, book,
                                                                               webhook_server):  # noqa: F811
    tmp, res = book
    url, hook = webhook_server
    res = dict(res, notifier=NotifierResource(kind="webhook", webhook_url=url))
    monkeypatch.setattr(intraday, "now_ny", lambda: _at("2026-11-20 10:30"))
    monkeypatch.setattr(RiskLimits, "for_profile", classmethod(lambda cls, p: cls(max_vega_pct_nlv=1e-9)))
    out = intraday_risk_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res))
    assert "BREACH" in out.skip_message and "kill switch engaged" in out.skip_message
    again = intraday_risk_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res))
    assert "already engaged" in again.skip_message
    assert len(hook.received) == 1  # one alert, not one per tick
    assert "kill switch engaged" in hook.received[0][2]["text"] and "vega" in hook.received[0][2]["text"]
    wh = Warehouse(tmp / "optrader.duckdb")
    state = KillSwitch(wh, "paper").state()
    assert state.engaged and state.actor == "intraday_risk_sensor"
    assert _run(res, DAY).success
    orders = wh.read_day("safety_checked_orders", DAY)
    assert (orders["status"] == "rejected").all() and orders["reason"].str.startswith("kill switch engaged").all()
    assert wh.query("SELECT count(*) AS n FROM broker_orders WHERE trade_date = ? AND action = 'open'",
                    [DAY])["n"].iloc[0] == 0


def test_run_failure_sensor_alerts_with_run_step_and_error(tmp_path, webhook_server):  # noqa: F811
    from .test_daily_run import CrossedMarket

    url, hook = webhook_server
    res = _resources(tmp_path)
    res["market"] = CrossedMarket()
    instance = dg.DagsterInstance.ephemeral()
    result = _run(res, D1, instance=instance)
    assert not result.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"notifier": NotifierResource(kind="webhook", webhook_url=url)}).for_run_failure()
    run_failure_alert_sensor(ctx)
    assert len(hook.received) == 1
    text = hook.received[0][2]["text"]
    assert result.run_id in text and "option_chains" in text and f"partition {D1.isoformat()}" in text
    assert json.dumps(hook.received[0][2])  # a JSON body Slack and Discord accept


def test_adjustment_sensor_requests_one_keyed_run_per_position_and_the_job_closes_once(monkeypatch,
                                                                                     tmp_path):
    from jobs import position_adjustment_job
    from sensors import position_adjustment_sensor

    res = _resources(tmp_path)
    assert _run(res, D1).success
    wh = Warehouse(tmp_path / "optrader.duckdb")
    held = wh.query("SELECT position_id FROM positions WHERE closed_date IS NULL")["position_id"].tolist()
    assert held
    monkeypatch.setattr(intraday, "now_ny", lambda: _at("2026-11-20 10:00"))
    # rules that nothing reaches: no request
    calm = _resources(tmp_path, management_rules='{"default": {"dte_exit": 0, "profit_target": 1.0, '
                                                  '"stop_loss_credit_multiple": 50, "stop_loss_debit_fraction": 1.0, '
                                                  '"tested_delta": 0.99}}')
    quiet = position_adjustment_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=calm))
    assert isinstance(quiet, dg.SkipReason) and "no rule fired" in quiet.skip_message
    res2 = _resources(tmp_path, management_rules='{"default": {"dte_exit": 400, "roll": false}}')
    first = position_adjustment_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res2))
    second = position_adjustment_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res2))
    assert sorted(r.run_key for r in first) == sorted(f"{p}|time_exit|2026-11-20" for p in held)
    assert [r.run_key for r in second] == [r.run_key for r in first]  # same tick, same keys: no new runs
    job_res = {k: res2[k] for k in ("market", "broker", "settings", "notifier")}
    for req in first:
        assert position_adjustment_job.execute_in_process(run_config=req.run_config, resources=job_res).success
    # a repeated run of the same request closes nothing twice
    assert position_adjustment_job.execute_in_process(run_config=first[0].run_config, resources=job_res).success
    closes = wh.query("SELECT * FROM broker_orders WHERE action = 'close'")
    assert sorted(closes["position_id"]) == sorted(held)
    pos = wh.query("SELECT * FROM positions WHERE position_id IN (SELECT unnest(?))", [held])
    assert pos["close_reason"].str.startswith("time_exit (intraday 10:00)").all()
    assert (pd.to_datetime(pos["closed_date"]).dt.date == DAY).all()
    after = position_adjustment_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res2))
    assert isinstance(after, dg.SkipReason) and "no open position" in after.skip_message


def test_intraday_roll_opens_the_new_spread_through_the_safety_checks(tmp_path):
    from optrader_pipelines.adjust import adjust_position
    from optrader_pipelines.broker import OrderRequest, PaperBroker
    from optrader_pipelines.management import ManagementRules, RuleBook
    from optrader_pipelines.market.synthetic import SyntheticMarket
    from optrader_pipelines.pricing import greeks_table
    from optrader_pipelines.risk import PROFILES
    from optrader_pipelines.strategies import build_candidates

    from .conftest import SMALL_UNIVERSE

    market = SyntheticMarket(tuple(SMALL_UNIVERSE), seed=7, strikes_per_side=12)
    greeks = greeks_table(market.load_chain(D1).chain)
    cands = build_candidates(greeks)
    iwm = cands[(cands["strategy"] == "bull_put_credit") & (cands["underlying"] == "IWM")]
    c = iwm[iwm["expiration"] == iwm["expiration"].min()].iloc[0]  # the nearest expiry: later ones exist
    q = greeks.assign(_exp=greeks["expiration"].dt.strftime("%Y-%m-%d")).set_index(
        ["_exp", "strike", "option_type"])
    legs = json.loads(c["legs"])
    for leg in legs:
        row = q.loc[(leg["expiration"], float(leg["strike"]), leg["option_type"])]
        row = row[row["underlying"] == "IWM"].iloc[0]
        leg["bid"], leg["ask"] = float(row["bid"]), float(row["ask"])
    broker = PaperBroker(Warehouse(tmp_path / "w.duckdb"), fill_fraction=0.0, starting_cash=20_000.0)
    opened = broker.place_order(OrderRequest("open-iwm", "paper", D1, c["strategy"], "IWM",
                                             pd.Timestamp(c["expiration"]).date(), c["settlement"], "credit", legs,
                                             1, np.floor(float(c["mid_price"]) * 100) / 100))
    assert opened.status == "filled"
    # any later spread will do: the test is about the roll going through the safety checks
    rules = RuleBook(ManagementRules(tested_delta=0.99, roll_min_net_credit=-100.0, roll_max_width_ratio=10.0))
    out = adjust_position(broker, market, opened.order_id, "tested", "short put tested", _at("2026-11-20 11:00"),
                          rules, PROFILES["moderate"], "high", "run-x")
    assert out["closed"] and out["roll_order"] is not None, out["note"]
    new = broker.orders(DAY)
    roll = new[new["order_id"] == out["roll_order"]]
    assert out["roll_status"] in ("filled", "unfilled") and len(roll) == 1
    assert roll["underlying"].iloc[0] == "IWM" and roll["strategy"].iloc[0] == "bull_put_credit"
    assert pd.Timestamp(roll["expiration"].iloc[0]) >= pd.Timestamp(c["expiration"]) + pd.Timedelta(days=7)
    # again: the position is closed, nothing more is sent
    again = adjust_position(broker, market, opened.order_id, "tested", "short put tested", _at("2026-11-20 11:05"),
                            rules, PROFILES["moderate"], "high", "run-y")
    assert not again["closed"] and "already closed" in again["note"]
    assert len(broker.orders(DAY)) == len(new)


def test_each_risk_limit_breaches_at_its_threshold_and_not_before():
    from optrader_pipelines.intraday import breaches

    limits = RiskLimits(max_daily_loss=0.10, max_drawdown=0.15, max_delta_pct_nlv=2.0, max_vega_pct_nlv=0.05,
                        circuit_breaker_move=0.07)
    calm = dict(nlv=1000.0, daily_return=-0.0999, pnl_since_close=-99.9, drawdown=0.1499, delta_usd=1999.0,
                vega_usd=-49.9, largest_move=("SPY", -0.0699))
    assert breaches(calm, limits) == []
    at = dict(calm, daily_return=-0.10, drawdown=0.15, delta_usd=-2000.0, vega_usd=50.0, largest_move=("SPY", -0.07))
    kinds = [k for k, _ in breaches(at, limits)]
    assert kinds == ["daily_loss", "drawdown", "delta", "vega", "circuit_breaker"]
    assert "SPY moved -7.0%" in dict(breaches(at, limits))["circuit_breaker"]
