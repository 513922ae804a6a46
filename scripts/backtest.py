"""`make backtest START=YYYY-MM-DD END=YYYY-MM-DD`: backfill the backtest assets over a range.

Same environment as `make run` (OPTRADER_MARKET, OPTRADER_HISTORY_DIR, OPTRADER_DUCKDB_PATH, ...).
One run, recorded in DAGSTER_HOME, replays the range in date order; prints the metrics. The same as
`dagster asset materialize -m optrader_pipelines.definitions --select group:backtest
--partition-range START...END`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    args = parser.parse_args(argv)

    from optrader_pipelines import calendar as cal
    from optrader_pipelines.config import ConfigError, Settings

    try:
        Settings.from_env()
        start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
        if end < start:
            raise ValueError(f"END {end} is before START {start}")
        days = cal.trading_days(start, end)
        if not days:
            raise ValueError(f"no NYSE session between {start} and {end}")
        if end > cal.latest_completed_trading_day():
            raise ValueError(f"{end} has not closed yet")
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import dagster as dg

    from _cli import print_failures
    from assets import BACKTEST_ASSETS
    from optrader_pipelines.definitions import defs

    s, e = days[0].isoformat(), days[-1].isoformat()
    print(f"optrader: backtest {s}...{e} ({len(days)} sessions)", flush=True)
    resources = defs.resources
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(BACKTEST_ASSETS, resources=resources, instance=instance, raise_on_error=False,
                                tags={"dagster/asset_partition_range_start": s,
                                      "dagster/asset_partition_range_end": e})
    if not result.success:
        print_failures(result)
        return 1
    meta = result.asset_materializations_for_node("backtest_performance")[0].metadata
    print(f"run {result.run_id} succeeded; account {meta['backtest_account'].value}")
    print("| metric | value |\n|---|---|")
    for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "profit_factor",
              "avg_days_in_trade", "var95", "cvar95", "trades", "days"):
        v = meta[k].value
        text = "n/a" if isinstance(v, float) and math.isnan(v) else (f"{v:.4f}" if isinstance(v, float) else str(v))
        print(f"| {k} | {text} |")
    print(f"report:      {meta['report_path'].value}")
    print(f"equity plot: {meta['equity_plot_path'].value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
