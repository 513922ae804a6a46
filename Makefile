# optrader: `make run` runs the daily graph for the latest completed NYSE session, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv

.PHONY: run test dev bench install clean-data backtest migrate backup restore audit

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Locked install: exactly the versions in uv.lock (fails if pyproject.toml and the lock disagree).
# Bytecode is compiled once at install: with PYTHONDONTWRITEBYTECODE set (as on CI machines)
# every process would otherwise recompile ~4,000 modules from source (~8 s per run).
.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --compile-bytecode --python $(PYTHON)
	touch $@

install: .venv/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# make run [DATE=YYYY-MM-DD]
run: install $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/python scripts/run_daily.py $(if $(DATE),--date $(DATE),)

# make backtest START=YYYY-MM-DD END=YYYY-MM-DD (same environment variables as make run)
backtest: install $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/python scripts/backtest.py --start $(START) --end $(END)

# The warehouse the environment names (OPTRADER_WAREHOUSE_URL, else OPTRADER_DUCKDB_PATH).
migrate: install
	.venv/bin/python scripts/warehouse.py migrate

# make backup DEST=backups/2026-11-21 ; make restore SRC=backups/2026-11-21 (into an empty warehouse)
backup: install
	.venv/bin/python scripts/warehouse.py backup $(DEST)

restore: install
	.venv/bin/python scripts/warehouse.py restore $(SRC)

audit: install
	.venv/bin/python scripts/warehouse.py audit $(if $(ACCOUNT),--account $(ACCOUNT),)

test: install
	.venv/bin/python -m pytest

dev: install $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# py_vollib_vectorized (pricing benchmark only) lives outside the project's locked environment.
.bench-deps/.installed: benchmarks/requirements-vollib.txt | .venv/.installed
	$(UV) pip install --quiet --no-deps --target .bench-deps -r benchmarks/requirements-vollib.txt --python .venv/bin/python
	touch $@

bench: install .bench-deps/.installed
	.venv/bin/python benchmarks/pricing.py
	.venv/bin/python benchmarks/daily_run.py
	.venv/bin/python benchmarks/risk.py
	.venv/bin/python benchmarks/backtest.py

clean-data:
	rm -rf data .dagster_home
