"""The production topology without Docker: `dagster api grpc`, `dagster-webserver` and
`dagster-daemon` as processes on deploy/dagster.yaml (Postgres storage) and deploy/workspace.yaml,
the warehouse on Postgres; the daily run is launched through the webserver's GraphQL API."""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from optrader_pipelines.storage import Warehouse

from .conftest import SMALL_UNIVERSE
from .pg import ADMIN_URL, temporary_database
from .test_daily_run import TABLES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.sys.executable).parent
DAY = "2026-11-19"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, procs, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode} while waiting for {what}:\n{_tail(p)}")
        if ready():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def _tail(p) -> str:
    try:
        return Path(p.args_log).read_text()[-4000:]
    except Exception:  # noqa: BLE001
        return ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001
        return False


def _grpc_ok(port: int, env: dict) -> bool:
    done = subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)], env=env,
                          capture_output=True, timeout=30)
    return done.returncode == 0


def test_webserver_daemon_and_code_server_on_postgres_run_the_daily_graph(tmp_path):
    from urllib.parse import urlsplit

    import psycopg2
    from dagster_graphql import DagsterGraphQLClient

    with temporary_database("optrader_dagster") as dagster_url, temporary_database("optrader_wh") as wh_url:
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        admin = urlsplit(ADMIN_URL)
        grpc_port, web_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTRADER_", "DAGSTER_"))}
        env.update(
            DAGSTER_HOME=str(home), DAGSTER_PG_HOST=admin.hostname, DAGSTER_PG_PORT=str(admin.port or 5432),
            DAGSTER_PG_USERNAME=admin.username or "postgres", DAGSTER_PG_PASSWORD=admin.password or "",
            DAGSTER_PG_DB=urlsplit(dagster_url).path.lstrip("/"), DAGSTER_GRPC_HOST="127.0.0.1",
            DAGSTER_GRPC_PORT=str(grpc_port), OPTRADER_WAREHOUSE_URL=wh_url,
            OPTRADER_UNIVERSE=",".join(SMALL_UNIVERSE), OPTRADER_SYNTHETIC_STRIKES="12",
            OPTRADER_REPORT_DIR=str(tmp_path / "reports"), OPTRADER_DUCKDB_PATH=str(tmp_path / "unused.duckdb"),
            PYTHONPATH=str(ROOT))
        commands = {
            "code server": [str(BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(grpc_port),
                            "-m", "optrader_pipelines.definitions"],
            "webserver": [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                          "-w", "deploy/workspace.yaml"],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "deploy/workspace.yaml"],
        }
        procs = {}
        try:
            for name, cmd in commands.items():
                log = tmp_path / f"{name.replace(' ', '_')}.log"
                p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
                p.args_log = str(log)
                procs[name] = p
                if name == "code server":
                    _wait("the code server", lambda: _grpc_ok(grpc_port, env), procs)
            _wait("the webserver", lambda: _http_ok(f"http://127.0.0.1:{web_port}/server_info"), procs)

            client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
            run_id = client.submit_job_execution("daily_run_job", repository_location_name="optrader",
                                                 tags={"dagster/partition": DAY})
            status = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                status = client.get_run_status(run_id).value
                if status in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                for name, p in procs.items():
                    assert p.poll() is None, f"{name} died:\n{_tail(p)}"
                time.sleep(2)
            assert status == "SUCCESS", f"run {run_id}: {status}\n{_tail(procs['daemon'])}"

            # the run, its partition and its events are in Dagster's Postgres storage
            con = psycopg2.connect(dagster_url)
            try:
                cur = con.cursor()
                cur.execute("SELECT status, partition FROM runs WHERE run_id = %s", [run_id])
                assert cur.fetchone() == ("SUCCESS", DAY)
                cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                            "'ASSET_MATERIALIZATION'", [run_id])
                assert cur.fetchone()[0] >= len(TABLES)
            finally:
                con.close()
            # and its rows in the Postgres warehouse, tagged with the run
            wh = Warehouse(wh_url)
            for table in TABLES:
                assert wh.count(table) > 0, table
                assert set(wh.query(f"SELECT DISTINCT run_id FROM {table}")["run_id"]) == {run_id}, table
            assert wh.query("SELECT count(*) AS n FROM audit_log WHERE run_id = ?", [run_id])["n"].iloc[0] > 0
        finally:
            for p in procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)
        assert all(p.poll() is not None for p in procs.values())


if __name__ == "__main__":
    pytest.main([__file__, "-x", "-q"])
