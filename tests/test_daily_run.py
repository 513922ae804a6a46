import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets import DAILY_ASSETS, DAILY_CHECKS
from optrader_pipelines.config import Settings
from optrader_pipelines.definitions import build_definitions, build_resources
from optrader_pipelines.market import ChainLoad
from optrader_pipelines.storage import Warehouse
from resources.market import MarketResource, SyntheticMarketResource

from .conftest import DAY, SMALL_UNIVERSE

D1 = dt.date(2026, 11, 19)  # the shared warehouse starts here; D2 = DAY follows it

TABLES = ["option_chains", "option_greeks", "scored_opportunities", "ranked_signals", "safety_checked_orders",
          "daily_report"]


def _resources(tmp: Path, **over):
    settings = Settings(duckdb_path=tmp / "optrader.duckdb", report_dir=tmp / "reports", universe=tuple(SMALL_UNIVERSE),
                        **over)
    res = build_resources(settings)
    if settings.market == "synthetic":
        res["market"] = SyntheticMarketResource(seed=7, universe=list(SMALL_UNIVERSE), strikes_per_side=12)
    return res


def _run(resources, day: dt.date, instance=None):
    return dg.materialize([*DAILY_ASSETS, *DAILY_CHECKS], partition_key=day.isoformat(), resources=resources,
                          instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("daily")
    res = _resources(tmp)
    result = _run(res, D1)
    return tmp, res, result


def test_the_whole_graph_materializes_and_records_every_asset(first_run):
    tmp, _, result = first_run
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 and all(c.passed for c in checks)
    wh = Warehouse(tmp / "optrader.duckdb")
    for table in TABLES:
        assert wh.count(table, D1) > 0, table
        assert set(wh.query(f"SELECT DISTINCT run_id FROM {table}")["run_id"]) == {result.run_id}
    greeks = wh.read_day("option_greeks", D1)
    for col in ["quote_date", "underlying", "expiration", "strike", "option_type", "bid", "ask", "underlying_price",
                "iv", "delta", "gamma", "theta", "vega", "rho"]:
        assert col in greeks.columns
    report = wh.read_day("daily_report", D1).iloc[0]
    text = Path(report["report_path"]).read_text()
    for section in ("## Portfolio", "## Position management", "## Top signals", "## Orders placed", "## Orders rejected", "## Next-day plan"):
        assert section in text
    assert Path(report["report_html_path"]).read_text().startswith("<!doctype html>")
    orders = wh.read_day("safety_checked_orders", D1)
    filled = orders[orders["order_status"] == "filled"]
    assert len(filled) >= 1
    assert wh.count("broker_orders") == int((orders["status"] == "accepted").sum())


def test_rematerializing_a_day_replaces_rows_and_places_no_order_twice(first_run):
    tmp, res, _ = first_run
    wh = Warehouse(tmp / "optrader.duckdb")
    before = {t: wh.count(t) for t in TABLES + ["broker_orders", "positions", "cash_ledger"]}
    orders_before = wh.read_day("safety_checked_orders", D1)
    again = _run(res, D1)
    assert again.success
    after = {t: wh.count(t) for t in TABLES + ["broker_orders", "positions", "cash_ledger"]}
    assert after == before
    orders_after = wh.read_day("safety_checked_orders", D1)
    pd.testing.assert_series_equal(orders_before["order_id"], orders_after["order_id"])
    assert list(orders_after["status"]) == list(orders_before["status"])
    assert orders_after.loc[orders_after["status"] == "accepted", "already_placed"].all()
    assert set(wh.query("SELECT DISTINCT run_id FROM option_chains")["run_id"]) == {again.run_id}


def test_a_downstream_rerun_reads_its_inputs_from_the_warehouse(first_run):
    """A run of only the trading assets loads option_greeks from DuckDB (written by an earlier
    run), and scores the same candidates as the run that had it in memory."""
    tmp, res, _ = first_run
    wh = Warehouse(tmp / "optrader.duckdb")
    before = wh.read_day("scored_opportunities", D1)
    trading = [a for a in DAILY_ASSETS if a.key.path[-1] in ("scored_opportunities", "ranked_signals")]
    result = dg.materialize([*DAILY_ASSETS, *DAILY_CHECKS], partition_key=D1.isoformat(), resources=res,
                            selection=[a.key for a in trading], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    after = wh.read_day("scored_opportunities", D1)
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True), check_dtype=False)
    assert set(wh.query("SELECT DISTINCT run_id FROM scored_opportunities")["run_id"]) == {result.run_id}


def test_the_book_carries_to_the_next_trading_day(first_run):
    tmp, res, _ = first_run
    wh = Warehouse(tmp / "optrader.duckdb")
    day1 = wh.read_day("daily_report", D1).iloc[0]
    result = _run(res, DAY)
    assert result.success
    day2 = wh.read_day("daily_report", DAY).iloc[0]
    assert day2["cash"] == pytest.approx(day1["cash"] + wh.query(
        "SELECT coalesce(sum(amount), 0) AS s FROM cash_ledger WHERE trade_date = ?", [DAY])["s"].iloc[0])
    assert day2["open_positions"] >= day1["open_positions"]
    carried = wh.query("SELECT count(*) AS n FROM positions WHERE opened_date = ?", [D1])["n"].iloc[0]
    assert carried == day1["open_positions"]


class CrossedMarket(MarketResource):
    """A feed that returns one crossed quote the loader did not catch."""

    def load_chain(self, day, max_dte=None):
        load = SyntheticMarketResource(universe=["XLF"], strikes_per_side=6).load_chain(day, max_dte)
        chain = load.chain.copy()
        chain.loc[0, "bid"] = chain.loc[0, "ask"] + 1.0
        return ChainLoad(chain, load.drops, load.sources)

    @property
    def label(self):
        return "crossed"


def test_a_chain_that_fails_the_gate_stops_the_run_before_any_order(tmp_path):
    res = _resources(tmp_path)
    res["market"] = CrossedMarket()
    result = _run(res, DAY)
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failed == ["option_chains"]
    wh = Warehouse(tmp_path / "optrader.duckdb")
    assert "option_chains" not in wh.tables() and "safety_checked_orders" not in wh.tables()
    assert "broker_orders" not in wh.tables() or wh.count("broker_orders") == 0


def test_option_chains_starts_loading_the_pricing_kernels_and_survives_if_that_fails(tmp_path, monkeypatch):
    """option_chains starts loading option_greeks' kernels in the background (a head start only):
    it hands the chain to prepare_greeks_table, and if that fails the asset still succeeds, with a
    warning, and the chain is gated and written as always."""
    import assets.market_data as market_data

    seen = []

    def failing(chain):
        seen.append(len(chain))
        raise RuntimeError("no cache directory")

    monkeypatch.setattr(market_data, "prepare_greeks_table", failing)
    res = _resources(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([market_data.option_chains], partition_key=DAY.isoformat(), resources=res,
                            instance=instance, raise_on_error=False)
    assert result.success
    wh = Warehouse(tmp_path / "optrader.duckdb")
    assert seen == [wh.count("option_chains")] and seen[0] > 0
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("pricing kernels not loaded ahead of option_greeks: no cache directory" in m for m in messages)


def test_a_session_that_has_not_closed_is_refused():
    from optrader_pipelines.daily import require_closed

    before_close = pd.Timestamp("2026-11-20 15:00", tz="America/New_York")
    with pytest.raises(ValueError, match="2026-11-20 has not closed yet"):
        require_closed(DAY, now=before_close)
    assert require_closed(DAY, now=before_close + pd.Timedelta(hours=1)) == DAY
    with pytest.raises(ValueError, match="not an NYSE trading day"):
        require_closed(dt.date(2026, 11, 26))


def test_files_market_runs_the_graph_on_real_history(tmp_path, shared_data):
    res = _resources(tmp_path, market="files", history_dir=shared_data)
    res["market"] = build_resources(Settings(market="files", history_dir=shared_data))["market"]
    result = _run(res, dt.date(2018, 1, 2))
    assert result.success
    wh = Warehouse(tmp_path / "optrader.duckdb")
    greeks = wh.read_day("option_greeks", dt.date(2018, 1, 2))
    assert set(greeks["underlying"]) == {"SPX"} and greeks["iv"].notna().sum() > 100


def test_definitions_load_and_schedule_targets_trading_days():
    defs = build_definitions(Settings())
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("daily_run_job")
    assert job.partitions_def is not None
    keys = job.partitions_def.get_partition_keys()
    assert "2026-11-20" in keys and "2026-11-26" not in keys and "2026-11-21" not in keys
    schedule = defs.resolve_schedule_def("daily_run_schedule")
    assert schedule.cron_schedule == "30 16 * * 1-5" and schedule.execution_timezone == "America/New_York"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        tick = pd.Timestamp("2026-11-20 16:30", tz="America/New_York").to_pydatetime()
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick,
                                        repository_def=defs.get_repository_def())
        data = schedule.evaluate_tick(ctx)
        assert [r.partition_key for r in data.run_requests] == ["2026-11-20"]
        holiday = pd.Timestamp("2026-11-26 16:30", tz="America/New_York").to_pydatetime()
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=holiday,
                                                               repository_def=defs.get_repository_def()))
        assert not data.run_requests and "not an NYSE trading day" in data.skip_message


def test_management_rules_close_positions_before_new_trades_once(tmp_path):
    """Day 1 opens positions; on day 2 a 400-day time exit (rolls off) closes every one of them at
    the close, before the day's new orders, and a re-run of day 2 closes nothing twice."""
    res = _resources(tmp_path)
    assert _run(res, D1).success
    wh = Warehouse(tmp_path / "optrader.duckdb")
    opened = wh.query("SELECT position_id FROM positions WHERE opened_date = ?", [D1])["position_id"].tolist()
    assert opened
    res2 = _resources(tmp_path, management_rules='{"default": {"dte_exit": 400, "roll": false}}')
    result = _run(res2, DAY)
    assert result.success
    actions = wh.read_day("position_actions", DAY)
    assert sorted(actions["position_id"]) == sorted(opened)
    assert set(actions["action"]) == {"close"} and set(actions["rule"]) <= {"time_exit", "stop_loss", "profit_target",
                                                                             "tested"}
    # a leg the day's chain no longer lists cannot be closed at the paper fill: it stays open, and
    # the decision says why
    unsent = actions[actions["order_status"] != "filled"]
    assert unsent["reason"].str.contains("close not sent: no quote for leg").all()
    filled = actions[actions["order_status"] == "filled"]["position_id"].tolist()
    assert filled
    closed = wh.query("SELECT * FROM positions WHERE position_id IN (SELECT unnest(?))", [filled])
    assert (pd.to_datetime(closed["closed_date"]).dt.date == DAY).all() and closed["realized_pnl"].notna().all()
    assert closed["close_reason"].str.startswith(("time_exit", "stop_loss", "profit_target", "tested")).all()
    closes = wh.query("SELECT * FROM broker_orders WHERE action = 'close'")
    assert sorted(closes["position_id"]) == sorted(filled)
    # the day's new trades saw the book after the closes: none was refused for a position it closed
    orders = wh.read_day("safety_checked_orders", DAY)
    assert not orders["reason"].str.contains("already holding").any()
    counts = {t: wh.count(t) for t in ("broker_orders", "positions", "cash_ledger")}
    again = _run(res2, DAY)
    assert again.success
    assert {t: wh.count(t) for t in ("broker_orders", "positions", "cash_ledger")} == counts
    report = Path(wh.read_day("daily_report", DAY).iloc[0]["report_path"]).read_text()
    assert "## Position management" in report and "time_exit" in report
    rerun = wh.read_day("position_actions", DAY)
    assert rerun.loc[rerun["order_status"] == "filled", "already_placed"].all()


def test_management_rules_setting_is_validated():
    from optrader_pipelines.config import ConfigError

    import os
    os.environ["OPTRADER_MANAGEMENT_RULES"] = '{"iron_condr": {"profit_target": 0.3}}'
    try:
        with pytest.raises(ConfigError, match="unknown strategy 'iron_condr'"):
            Settings.from_env()
        os.environ["OPTRADER_MANAGEMENT_RULES"] = '{"default": {"profit_targt": 0.3}}'
        with pytest.raises(ConfigError, match="unknown field.*profit_targt"):
            Settings.from_env()
        os.environ["OPTRADER_MANAGEMENT_RULES"] = '{"default": {"dte_exit": -1}}'
        with pytest.raises(ConfigError, match="dte_exit=-1"):
            Settings.from_env()
    finally:
        del os.environ["OPTRADER_MANAGEMENT_RULES"]


def test_kill_switch_blocks_opening_orders_until_explicitly_released(tmp_path):
    from jobs import release_kill_switch_job
    from optrader_pipelines.killswitch import KillSwitch

    res = _resources(tmp_path)
    wh = Warehouse(tmp_path / "optrader.duckdb")
    ks = KillSwitch(wh, "paper")
    assert ks.engage("daily loss 12% >= 10%", actor="intraday_risk_sensor", key="breach-1")
    assert not ks.engage("daily loss 12% >= 10%", actor="intraday_risk_sensor", key="breach-1")  # one event
    result = _run(res, D1)
    assert result.success
    orders = wh.read_day("safety_checked_orders", D1)
    assert len(orders) >= 1 and (orders["status"] == "rejected").all()
    assert orders["reason"].str.startswith("kill switch engaged: no opening orders").all()
    assert orders["reason"].str.contains("intraday_risk_sensor").all()
    assert wh.count("broker_orders") == 0
    # releasing is explicit and recorded with who and why; a job in the UI does it
    with pytest.raises(ValueError, match="actor"):
        ks.release("looks fine", actor=" ")
    out = release_kill_switch_job.execute_in_process(
        run_config={"ops": {"release_kill_switch": {"config": {"actor": "jane@desk", "reason": "loss reviewed"}}}},
        resources={"warehouse": res["warehouse"], "broker": res["broker"]})
    assert out.success
    state = ks.state()
    assert not state.engaged and state.actor == "jane@desk" and state.reason == "loss reviewed"
    hist = ks.history()
    assert list(hist["engaged"]) == [True, False] and list(hist["actor"]) == ["intraday_risk_sensor", "jane@desk"]
    assert _run(res, D1).success  # the same day again, now released: orders go out
    assert wh.count("broker_orders") >= 1
