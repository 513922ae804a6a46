"""The warehouse on both engines: atomic per-day writes, migrations, the audit log, backup/restore."""

import datetime as dt
import json

import pandas as pd
import pytest

from optrader_pipelines import audit, migrations
from optrader_pipelines.backup import BackupError, backup, restore, row_counts
from optrader_pipelines.broker import OrderRequest, PaperBroker
from optrader_pipelines.killswitch import KillSwitch
from optrader_pipelines.storage import DuckDBWarehouse, PostgresWarehouse, Warehouse, WarehouseError, redact_url

from .pg import temporary_database

DAY = dt.date(2026, 11, 20)


@pytest.fixture(params=["duckdb", "postgres"])
def wh(request, tmp_path):
    if request.param == "duckdb":
        yield Warehouse(tmp_path / "wh.duckdb")
    else:
        with temporary_database() as url:
            yield Warehouse(url)


def _frame(n: int, offset: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "underlying": [f"S{i % 3}" for i in range(n)],
        "strike": [100.0 + i + offset for i in range(n)],
        "quantity": list(range(n)),
        "accepted": [i % 2 == 0 for i in range(n)],
        "expiration": pd.to_datetime(["2026-12-18"] * n),
        "reason": ["it's 100% \"quoted\", a comma" if i == 0 else None for i in range(n)],
        "iv": [float("nan") if i == 1 else 0.2 for i in range(n)],
    })


def test_target_selects_the_engine(tmp_path):
    assert isinstance(Warehouse(tmp_path / "x.duckdb"), DuckDBWarehouse)
    pg = Warehouse("postgresql://u:s3cret@127.0.0.1:5432/db")
    assert isinstance(pg, PostgresWarehouse)
    assert "s3cret" not in pg.label and pg.label == "postgresql://u:***@127.0.0.1:5432/db"
    assert redact_url("postgres://u@h/db") == "postgres://u@h/db"


def test_replace_day_is_atomic_and_idempotent_and_round_trips_types(wh):
    wh.replace_day("things", DAY, _frame(5), "run-1")
    wh.replace_day("things", DAY + dt.timedelta(days=1), _frame(3), "run-1")
    wh.replace_day("things", DAY, _frame(4, 0.5), "run-2")  # re-materializing replaces the day
    assert wh.count("things", DAY) == 4 and wh.count("things") == 7
    back = wh.read_day("things", DAY).sort_values("quantity").reset_index(drop=True)
    assert list(back["strike"]) == [100.5, 101.5, 102.5, 103.5]
    assert back["reason"].iloc[0] == "it's 100% \"quoted\", a comma" and pd.isna(back["reason"].iloc[1])
    assert pd.isna(back["iv"].iloc[1]) and back["iv"].iloc[0] == 0.2
    assert list(back["accepted"]) == [True, False, True, False]
    assert pd.api.types.is_datetime64_any_dtype(back["expiration"])
    assert set(wh.query("SELECT DISTINCT run_id FROM things WHERE trade_date = ?", [DAY])["run_id"]) == {"run-2"}
    # a frame that fails half-way leaves the previous rows
    bad = _frame(2).assign(strike=["not a number", 1.0])
    with pytest.raises(Exception):
        wh.replace_day("things", DAY, bad, "run-3")
    assert wh.count("things", DAY) == 4
    # a new column arrives on a later day; a column typed by an all-null first day takes its type later
    wh.replace_day("things", DAY + dt.timedelta(days=2), _frame(2).assign(extra=[1.5, 2.5]), "run-4")
    assert wh.read_day("things", DAY + dt.timedelta(days=2))["extra"].tolist() == [1.5, 2.5]
    wh.replace_day("late", DAY, pd.DataFrame({"x": [None, None]}, dtype=object), "r")
    wh.replace_day("late", DAY + dt.timedelta(days=1), pd.DataFrame({"x": [1.25, 2.0]}), "r")
    assert wh.query("SELECT sum(x) AS s FROM late")["s"].iloc[0] == pytest.approx(3.25)


def test_missing_table_is_a_clear_error(wh):
    with pytest.raises(WarehouseError, match="nothing_here"):
        wh.read_day("nothing_here", DAY)


def test_migrations_are_versioned_recorded_and_checked(wh, monkeypatch):
    assert wh.schema_version() == 0
    assert wh.migrate() == [m.version for m in migrations.MIGRATIONS]
    assert wh.migrate() == []  # nothing pending: a no-op
    applied = wh.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert list(applied["version"]) == [1, 2, 3] and wh.schema_version() == migrations.LATEST
    assert list(applied["checksum"]) == [m.checksum for m in migrations.MIGRATIONS]
    for table in ("broker_orders", "positions", "cash_ledger", "kill_switch_events", "risk_snapshots",
                  "tastytrade_orders", "backtest_days", "audit_log"):
        assert table in wh.tables()
    # an edited migration is refused
    edited = migrations.Migration(2, "edited", ("CREATE TABLE IF NOT EXISTS x (a INTEGER)",))
    monkeypatch.setattr("optrader_pipelines.storage.MIGRATIONS", (migrations.MIGRATIONS[0], edited,
                                                                  migrations.MIGRATIONS[2]))
    with pytest.raises(WarehouseError, match="migration 2 .* differs from the code"):
        wh.migrate()
    # a warehouse newer than the code is refused
    monkeypatch.setattr("optrader_pipelines.storage.MIGRATIONS", migrations.MIGRATIONS[:2])
    with pytest.raises(WarehouseError, match="schema version 3"):
        wh.migrate()


def test_a_warehouse_made_before_migrations_adopts_them(tmp_path):
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(migrations.LEDGER_DDL[0].replace("DOUBLE PRECISION", "DOUBLE"))  # the old broker_orders table
    con.execute("INSERT INTO broker_orders (order_id, idempotency_key, account, trade_date, action, legs, quantity, "
                "status, created_at) VALUES ('o1', 'k1', 'paper', '2026-11-19', 'open', '[]', 1, 'filled', now())")
    con.close()
    wh = Warehouse(path)
    assert wh.migrate() == [1, 2, 3]
    assert wh.count("broker_orders") == 1 and "audit_log" in wh.tables()


def _order(key: str, qty: int = 1, limit: float = 0.45) -> OrderRequest:
    legs = [{"option_symbol": "SPY 261218P00500000", "expiration": "2026-12-18", "strike": 500.0, "option_type": "P",
             "side": -1, "bid": 1.00, "ask": 1.10},
            {"option_symbol": "SPY 261218P00495000", "expiration": "2026-12-18", "strike": 495.0, "option_type": "P",
             "side": 1, "bid": 0.50, "ask": 0.55}]
    return OrderRequest(key, "paper", DAY, "bull_put_credit", "SPY", dt.date(2026, 12, 18), "physical", "credit", legs,
                        qty, limit, run_id="run-a")


def test_every_trading_action_is_audited_once_and_the_log_is_append_only(wh):
    broker = PaperBroker(wh, "paper")
    filled = broker.place_order(_order("k-fill"))
    broker.place_order(_order("k-fill"))  # a re-run: no second order, no second audit row
    unfilled = broker.place_order(_order("k-high", limit=5.00))
    rejected = broker.place_order(_order("k-zero", qty=0))
    ks = KillSwitch(wh, "paper")
    ks.engage("daily loss limit", "risk sensor", run_id="run-b")
    ks.release("reviewed", "alice")
    assert audit.record_config(wh, "paper", {"risk_level": "moderate", "top_n": 4}, "run-c")
    assert not audit.record_config(wh, "paper", {"risk_level": "moderate", "top_n": 4}, "run-d")  # unchanged
    assert audit.record_config(wh, "paper", {"risk_level": "high", "top_n": 4}, "run-e")
    log = audit.history(wh, "paper")
    assert list(log["action"]) == ["order_placed", "order_placed", "order_rejected", "kill_switch_engaged",
                                   "kill_switch_released", "config_changed", "config_changed"]
    assert list(log["subject"][:3]) == [filled.order_id, unfilled.order_id, rejected.order_id]
    assert list(log["actor"][3:5]) == ["risk sensor", "alice"]
    assert log["run_id"].iloc[0] == "run-a" and log["run_id"].iloc[3] == "run-b"
    assert json.loads(log["details"].iloc[0])["status"] == "filled"
    assert json.loads(log["details"].iloc[-1])["changed"] == ["risk_level"]
    assert log["event_at"].is_monotonic_increasing
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log",
                "DROP TABLE audit_log", "  delete from AUDIT_LOG where 1=1"):
        with pytest.raises(WarehouseError, match="append-only"):
            wh.execute_many([(sql, [])])
    assert len(audit.history(wh)) == 7
    # a backtest account replays simulated history: not audited
    PaperBroker(wh, "backtest:x").place_order(dataclass_replace(_order("k-bt"), account="backtest:x"))
    assert len(audit.history(wh)) == 7


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_postgres_enforces_the_append_only_audit_log_itself():
    import psycopg2

    with temporary_database() as url:
        wh = Warehouse(url)
        KillSwitch(wh, "paper").engage("manual", "bob")
        con = psycopg2.connect(url)
        try:
            for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
                with pytest.raises(psycopg2.Error, match="append-only"):
                    con.cursor().execute(sql)
                con.rollback()
        finally:
            con.close()
        assert list(audit.history(wh)["actor"]) == ["bob"]


def test_backup_restores_into_an_empty_warehouse_with_equal_row_counts(wh, tmp_path):
    broker = PaperBroker(wh, "paper")
    broker.place_order(_order("k1"))
    KillSwitch(wh, "paper").engage("manual", "bob")
    wh.replace_day("option_chains", DAY, _frame(6), "run-1")
    counts = row_counts(wh)
    manifest = backup(wh, tmp_path / "bk")
    assert manifest["tables"] == counts and manifest["engine"] == wh.dialect and counts["audit_log"] == 2
    with pytest.raises(BackupError, match="not empty"):
        backup(wh, tmp_path / "bk")
    with pytest.raises(BackupError, match="needs an empty warehouse"):
        restore(wh, tmp_path / "bk")
    if wh.dialect == "duckdb":
        target = Warehouse(tmp_path / "restored.duckdb")
        assert restore(target, tmp_path / "bk") == counts
        _check_restored(target)
    else:
        with temporary_database("optrader_restore") as url:
            target = Warehouse(url)
            assert restore(target, tmp_path / "bk") == counts
            _check_restored(target)
            with pytest.raises(WarehouseError, match="append-only"):  # the trigger came back too
                target.execute_many([("DELETE FROM audit_log", [])])


def _check_restored(target):
    assert target.schema_version() == migrations.LATEST
    assert target.read_day("option_chains", DAY)["strike"].tolist() == _frame(6)["strike"].tolist()
    assert PaperBroker(target, "paper").place_order(_order("k1")).already_placed  # the ledger came back


def test_restore_checks_the_backup(tmp_path):
    src = Warehouse(tmp_path / "a.duckdb")
    PaperBroker(src, "paper")
    backup(src, tmp_path / "bk")
    with pytest.raises(BackupError, match="manifest.json is missing"):
        restore(Warehouse(tmp_path / "b.duckdb"), tmp_path)
    with pytest.raises(BackupError, match="duckdb backup; the target warehouse is postgres"):
        restore(Warehouse("postgresql://u@127.0.0.1:1/none"), tmp_path / "bk")
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    manifest["tables"]["cash_ledger"] += 1
    (tmp_path / "bk" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="cash_ledger"):
        restore(Warehouse(tmp_path / "c.duckdb"), tmp_path / "bk")


def test_an_unreachable_postgres_is_a_clear_error_without_the_password():
    with pytest.raises(WarehouseError) as err:
        Warehouse("postgresql://optrader:hunter2@127.0.0.1:1/optrader").tables()
    assert "cannot connect" in str(err.value) and "hunter2" not in str(err.value)


def _cli(*args, env=None):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "scripts/warehouse.py", *args], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=120)


def test_the_backup_and_restore_commands_round_trip_a_postgres_warehouse(tmp_path):
    with temporary_database() as src_url, temporary_database("optrader_restore") as dst_url:
        src = Warehouse(src_url)
        PaperBroker(src, "paper").place_order(_order("k1"))
        src.replace_day("option_greeks", DAY, _frame(8), "run-1")
        done = _cli("backup", str(tmp_path / "bk"), env={"OPTRADER_WAREHOUSE_URL": src_url})
        assert done.returncode == 0, done.stderr
        assert "tables" in done.stdout and (tmp_path / "bk" / "warehouse.dump").stat().st_size > 0
        done = _cli("restore", str(tmp_path / "bk"), env={"OPTRADER_WAREHOUSE_URL": dst_url})
        assert done.returncode == 0, done.stderr
        assert row_counts(Warehouse(dst_url)) == row_counts(src)
        again = _cli("restore", str(tmp_path / "bk"), env={"OPTRADER_WAREHOUSE_URL": dst_url})
        assert again.returncode == 2 and "needs an empty warehouse" in again.stderr
        log = _cli("audit", "--account", "paper", env={"OPTRADER_WAREHOUSE_URL": dst_url})
        assert log.returncode == 0 and "order_placed" in log.stdout
        migrate = _cli("migrate", env={"OPTRADER_WAREHOUSE_URL": dst_url})
        assert migrate.returncode == 0 and f"schema version {migrations.LATEST} (up to date)" in migrate.stdout
