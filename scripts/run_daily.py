"""`make run`: materialize daily_run_job for one NYSE session in the project's Dagster instance.

The run is recorded in DAGSTER_HOME (so it shows in `make dev`), executes in this process (one
DuckDB writer), and prints where the report and the warehouse are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--date", help="trading day YYYY-MM-DD (default: the latest completed NYSE session)")
    args = parser.parse_args(argv)

    from optrader_pipelines import calendar as cal
    from optrader_pipelines.config import ConfigError, Settings

    try:
        settings = Settings.from_env()
        day = dt.date.fromisoformat(args.date) if args.date else cal.latest_completed_trading_day()
        cal.require_trading_day(day)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import dagster as dg

    from _cli import print_failures
    from optrader_pipelines.definitions import defs
    from optrader_pipelines.storage import Warehouse

    print(f"optrader: daily run for {day.isoformat()} (market {settings.market}, "
          f"risk profile {settings.risk_profile})", flush=True)
    job = defs.resolve_job_def("daily_run_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False,
                                        run_config={"loggers": {"console": {"config": {
                                            "log_level": os.environ.get("OPTRADER_LOG_LEVEL", "INFO")}}}})
    if not result.success:
        print_failures(result)
        return 1
    wh = Warehouse(settings.warehouse_target)
    row = wh.query("SELECT * FROM daily_report WHERE trade_date = ? AND account = ?", [day, settings.account]).iloc[0]
    print(f"run {result.run_id} succeeded")
    print(f"net liquidation ${row['nlv']:,.2f}, cash ${row['cash']:,.2f}, open positions {row['open_positions']}, "
          f"orders accepted {row['orders_accepted']}, rejected {row['orders_rejected']}")
    print(f"report:    {row['report_path']}")
    print(f"           {row['report_html_path']}")
    print(f"warehouse: {wh.label if settings.warehouse_url else settings.duckdb_path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
