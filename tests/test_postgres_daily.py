"""The daily graph on the synthetic market with the Postgres warehouse (the real server here)."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optrader_pipelines import audit
from optrader_pipelines.storage import Warehouse

from .conftest import SMALL_UNIVERSE
from .pg import temporary_database
from .test_daily_run import D1, TABLES, _resources, _run

ROOT = Path(__file__).resolve().parents[1]
MARKET_TABLES = ["option_chains", "option_greeks", "scored_opportunities"]
LEDGER = ["broker_orders", "positions", "cash_ledger", "audit_log"]


@pytest.fixture(scope="module")
def pg_run(tmp_path_factory):
    with temporary_database() as url:
        tmp = tmp_path_factory.mktemp("pgdaily")
        res = _resources(tmp, warehouse_url=url)
        yield url, res, _run(res, D1)


def test_the_daily_graph_writes_every_asset_and_the_ledger_to_postgres(pg_run, tmp_path):
    url, _, result = pg_run
    assert result.success
    wh = Warehouse(url)
    for table in TABLES:
        assert wh.count(table, D1) > 0, table
        assert set(wh.query(f"SELECT DISTINCT run_id FROM {table}")["run_id"]) == {result.run_id}
    orders = wh.read_day("safety_checked_orders", D1)
    accepted = int((orders["status"] == "accepted").sum())
    assert accepted >= 1 and wh.count("broker_orders") == accepted
    log = audit.history(wh, "paper")
    assert (log["action"] == "order_placed").sum() == accepted
    assert (log["action"] == "order_rejected").sum() == int((orders["status"] == "rejected").sum())
    assert (log["action"] == "config_changed").sum() == 1 and set(log["run_id"]) == {result.run_id}
    # the same day on DuckDB gives the same tables (the engines agree)
    duck = _run(_resources(tmp_path), D1)
    assert duck.success
    dwh = Warehouse(tmp_path / "optrader.duckdb")
    for table in TABLES:
        assert dwh.count(table, D1) == wh.count(table, D1), table
    a = wh.read_day("safety_checked_orders", D1).sort_values("signal_id").reset_index(drop=True)
    b = dwh.read_day("safety_checked_orders", D1).sort_values("signal_id").reset_index(drop=True)
    assert list(a["status"]) == list(b["status"]) and list(a["limit_price"]) == list(b["limit_price"])


def test_rematerializing_a_day_on_postgres_replaces_rows_and_places_no_order_twice(pg_run):
    url, res, _ = pg_run
    wh = Warehouse(url)
    before = {t: wh.count(t) for t in TABLES + LEDGER}
    again = _run(res, D1)
    assert again.success
    assert {t: wh.count(t) for t in TABLES + LEDGER} == before
    assert set(wh.query("SELECT DISTINCT run_id FROM option_greeks")["run_id"]) == {again.run_id}
    assert wh.read_day("safety_checked_orders", D1).query("status == 'accepted'")["already_placed"].all()


def _run_daily(url: str, day: dt.date, home: Path) -> subprocess.Popen:
    env = dict(os.environ, OPTRADER_WAREHOUSE_URL=url, OPTRADER_UNIVERSE=",".join(SMALL_UNIVERSE),
               OPTRADER_SYNTHETIC_STRIKES="12", OPTRADER_REPORT_DIR=str(home / "reports"), DAGSTER_HOME=str(home),
               OPTRADER_DUCKDB_PATH=str(home / "unused.duckdb"), OPTRADER_LOG_LEVEL="WARNING")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.Popen([sys.executable, "scripts/run_daily.py", "--date", day.isoformat()], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_runs_of_different_days_at_once_do_not_corrupt_each_other(pg_run, tmp_path):
    """Two `make run` processes for two days write to one Postgres warehouse at the same time."""
    ref_url, _, _ = pg_run
    days = [dt.date(2026, 11, 17), dt.date(2026, 11, 18)]
    with temporary_database() as url:
        procs = [_run_daily(url, d, tmp_path / d.isoformat()) for d in days]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
        for p, out in zip(procs, outputs):
            assert p.returncode == 0, out
        assert all("postgresql://" in out and "succeeded" in out for out in outputs)
        wh = Warehouse(url)
        run_of_day = set()
        for table in TABLES:
            per_day = wh.query(f"SELECT trade_date, count(DISTINCT run_id) AS runs, min(run_id) AS run_id "
                               f"FROM {table} GROUP BY trade_date ORDER BY trade_date")
            assert [d.date() for d in per_day["trade_date"]] == days, table
            assert list(per_day["runs"]) == [1, 1], table
            run_of_day |= {(d.date(), r) for d, r in zip(per_day["trade_date"], per_day["run_id"])}
        assert len(run_of_day) == 2 and len({r for _, r in run_of_day}) == 2  # each day: one run, in every table
        # the market tables of each day equal those of a run alone
        for d in days:
            alone = _single_day_counts(d, tmp_path / f"alone-{d}")
            for table in MARKET_TABLES:
                assert wh.count(table, d) == alone[table], (table, d)
        keys = wh.query("SELECT idempotency_key FROM broker_orders")["idempotency_key"]
        assert keys.is_unique and wh.count("broker_orders") == sum(
            int((wh.read_day("safety_checked_orders", d)["status"] == "accepted").sum()) for d in days)


def _single_day_counts(day: dt.date, tmp: Path) -> dict:
    res = _resources(tmp)
    assert _run(res, day).success
    wh = Warehouse(tmp / "optrader.duckdb")
    return {t: wh.count(t, day) for t in MARKET_TABLES}


def test_a_backtest_on_postgres_gives_the_same_book_as_on_duckdb(tmp_path):
    import pandas as pd

    from optrader_pipelines.backtest import run_backtest

    from .test_backtest import CFG, DAYS, _ledger, _source

    duck = Warehouse(tmp_path / "bt.duckdb")
    account, days = run_backtest(duck, _source(), DAYS, CFG)
    with temporary_database() as url:
        pg = Warehouse(url)
        account2, days2 = run_backtest(pg, _source(), DAYS, CFG)
        assert account2 == account
        for a, b in zip(_ledger(duck, account), _ledger(pg, account)):
            pd.testing.assert_frame_equal(a, b, check_dtype=False)
        pd.testing.assert_series_equal(days["nlv"], days2["nlv"])
        assert len(audit.history(pg)) == 0  # simulated trading is not audited


def test_intraday_risk_sensor_and_kill_switch_on_postgres(pg_run, monkeypatch):
    """The last test on the shared Postgres book: it engages the kill switch there."""
    import dagster as dg
    import pandas as pd

    import sensors.intraday as intraday
    from optrader_pipelines import calendar as cal
    from optrader_pipelines.intraday import RiskLimits
    from optrader_pipelines.killswitch import KillSwitch
    from sensors import intraday_risk_sensor

    url, res, _ = pg_run
    wh = Warehouse(url)
    monkeypatch.setattr(intraday, "now_ny", lambda: pd.Timestamp("2026-11-20 10:00", tz=cal.NY))
    ctx = lambda: dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=res)  # noqa: E731
    first = intraday_risk_sensor(ctx())
    intraday_risk_sensor(ctx())
    assert "within limits" in first.skip_message and wh.count("risk_snapshots") == 1
    monkeypatch.setattr(RiskLimits, "for_profile", classmethod(lambda cls, p: cls(max_vega_pct_nlv=1e-9)))
    out = intraday_risk_sensor(ctx())
    assert "kill switch engaged" in out.skip_message
    assert KillSwitch(wh, "paper").state().actor == "intraday_risk_sensor"
    log = audit.history(wh, "paper")
    assert list(log["action"]).count("kill_switch_engaged") == 1
    assert log[log["action"] == "kill_switch_engaged"]["actor"].iloc[0] == "intraday_risk_sensor"


def test_the_warehouse_password_never_reaches_run_events_logs_or_the_warehouse(tmp_path, monkeypatch, caplog):
    """The URL is bound through dg.EnvVar; the server's trust auth ignores the password, so a
    password-bearing URL still connects here."""
    import dagster as dg
    from urllib.parse import urlsplit, urlunsplit

    from optrader_pipelines.config import Settings
    from optrader_pipelines.definitions import build_resources
    from resources.market import SyntheticMarketResource

    secret = "pw-7c1d-not-for-logs"
    with temporary_database() as url:
        parts = urlsplit(url)
        with_pw = urlunsplit(parts._replace(netloc=f"{parts.username}:{secret}@{parts.hostname}:{parts.port}"))
        monkeypatch.setenv("OPTRADER_WAREHOUSE_URL", with_pw)
        settings = Settings(duckdb_path=tmp_path / "unused.duckdb", report_dir=tmp_path / "reports",
                            warehouse_url=with_pw, universe=tuple(SMALL_UNIVERSE))
        res = build_resources(settings)
        assert isinstance(res["warehouse"].warehouse_url, dg.EnvVar)  # the UI shows the variable's name only
        res["market"] = SyntheticMarketResource(seed=7, universe=["XLF"], strikes_per_side=6)
        instance = dg.DagsterInstance.ephemeral()
        caplog.set_level("DEBUG")
        result = _run(res, D1, instance)
        assert result.success
        events = "\n".join(repr(e) for e in instance.all_logs(result.run_id))
        assert "warehouse" in events and "***" in events  # the location is shown, redacted
        assert secret not in events and secret not in caplog.text and secret not in repr(settings)
        wh = Warehouse(with_pw)
        for table in wh.tables():
            assert not wh.query(f"SELECT * FROM {table}").astype(str).apply(
                lambda col: col.str.contains(secret)).any().any(), table
