"""docker-compose.yml, .env.example, the Dockerfile and deploy/dagster.yaml, checked without an engine."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        reason = "docker-compose not installed (Debian: apt-get install docker-compose; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return exe


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def test_docker_compose_config_validates_with_the_example_env(tmp_path):
    exe = _docker_compose()
    done = subprocess.run([exe, "--env-file", str(ENV_EXAMPLE), "config", "-q"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # the password is required: an env file without it fails validation, naming it
    bare = tmp_path / "bare.env"
    bare.write_text("POSTGRES_USER=optrader\n")
    done = subprocess.run([exe, "--env-file", str(bare), "config", "-q"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr
    # the resolved topology: every app service runs the project's image with the Postgres storage
    done = subprocess.run([exe, "--env-file", str(ENV_EXAMPLE), "config"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    resolved = yaml.safe_load(done.stdout)["services"]
    assert resolved["user_code"]["environment"]["OPTRADER_WAREHOUSE_URL"] == \
        "postgresql://optrader:change-me@postgres:5432/optrader"
    for name in ("webserver", "daemon"):
        assert resolved[name]["environment"]["DAGSTER_PG_HOST"] == "postgres"
    # the code server's environment, exactly as compose resolves it, loads the definitions
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTRADER_", "DAGSTER_"))}
    env.update({k: str(v) for k, v in resolved["user_code"]["environment"].items() if v is not None})
    env.pop("DAGSTER_HOME")
    done = subprocess.run([sys.executable, "-c", "import dagster as dg; from optrader_pipelines.definitions import defs; "
                           "dg.Definitions.validate_loadable(defs); from sensors.intraday import _interval_minutes; "
                           "print(_interval_minutes())"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_compose_topology_and_env_example_cover_every_variable():
    text = COMPOSE.read_text()
    spec = yaml.safe_load(text)
    services = spec["services"]
    assert set(services) == {"postgres", "user_code", "webserver", "daemon"}
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["user_code"]
    assert services["user_code"]["build"] == "." and all(s["image"] == "optrader:latest" for n, s in services.items()
                                                          if n != "postgres")
    assert "dagster api grpc" in " ".join(services["user_code"]["command"])
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("user_code", "webserver", "daemon"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    example = _env_example()
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))  # $${X}: the container's own
    assert referenced <= set(example), f"missing from .env.example: {sorted(referenced - set(example))}"
    # every OPTRADER_* setting the code reads reaches the containers and is listed in .env.example
    code_vars = set()
    for folder in ("optrader_pipelines", "resources", "assets", "sensors", "jobs"):
        for f in (ROOT / folder).rglob("*.py"):
            code_vars |= set(re.findall(r"\"(OPTRADER_[A-Z0-9_]+)\"", f.read_text()))
    code_vars -= {"OPTRADER_DUCKDB_PATH"}  # the compose topology uses the Postgres warehouse
    app_env = services["user_code"]["environment"]
    assert code_vars <= set(app_env), f"not passed to user_code: {sorted(code_vars - set(app_env))}"
    passed_from_env = code_vars - {"OPTRADER_WAREHOUSE_URL", "OPTRADER_REPORT_DIR", "OPTRADER_JAX_CACHE"}
    assert passed_from_env <= set(example), f"missing from .env.example: {sorted(passed_from_env - set(example))}"


def test_the_dockerfile_copies_every_package_the_definitions_import():
    copied = set(re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), re.M))
    for package in ("optrader_pipelines", "assets", "sensors", "resources", "jobs", "deploy", "scripts"):
        assert package in copied, package
    assert "deploy/dagster.yaml /opt/dagster/home/dagster.yaml" in (ROOT / "Dockerfile").read_text()


def test_production_instance_config_is_valid_for_this_dagster():
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(ROOT / "deploy"), "dagster.yaml")
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] is True
    limits = {d["key"]: d["limit"] for d in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits["optrader/book"] == 1
    from optrader_pipelines.definitions import daily_run_job

    assert daily_run_job.tags["optrader/book"] == "trading"
