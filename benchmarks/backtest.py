"""Benchmark: a 252-session backtest on the synthetic market with 20 underlyings (goal <= 5 min).

Run with `make bench`. Uses a throwaway warehouse under bench_results/. Prints the wall time, the
time per session and where it goes (the backtest's own per-step timings, so no profiler slows
the run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optrader_pipelines import calendar as cal  # noqa: E402
from optrader_pipelines.backtest import BacktestConfig, equity_and_trades, run_backtest  # noqa: E402
from optrader_pipelines.market.synthetic import DEFAULT_UNIVERSE, SyntheticMarket  # noqa: E402
from optrader_pipelines.performance import performance  # noqa: E402
from optrader_pipelines.storage import Warehouse  # noqa: E402

SESSIONS = int(os.environ.get("BENCH_BACKTEST_SESSIONS", "252"))
END = dt.date(2026, 11, 20)


def main() -> int:
    out = ROOT / "bench_results" / "backtest"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    days = cal.trading_days(END - dt.timedelta(days=int(SESSIONS * 1.5) + 10), END)[-SESSIONS:]
    universe = tuple(u.symbol for u in DEFAULT_UNIVERSE)[:20]
    source = SyntheticMarket(universe, seed=7, strikes_per_side=20)
    wh = Warehouse(out / "bench.duckdb")
    parts: dict[str, float] = {}
    t0 = time.perf_counter()
    account, rows = run_backtest(wh, source, days, BacktestConfig(market="synthetic seed 7"), timings=parts)
    secs = time.perf_counter() - t0
    m = performance(*equity_and_trades(wh, account))
    print(f"backtest: {len(days)} sessions ({days[0]}...{days[-1]}), {len(universe)} underlyings: "
          f"{secs:.1f} s wall ({secs / len(days):.2f} s per session; goal <= 300 s)")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:20s} {v:7.1f} s")
    print(f"  trades {m['trades']}, total return {m['total_return']:+.2%}, max drawdown {m['max_drawdown']:.2%}")
    (ROOT / "bench_results" / "backtest.json").write_text(json.dumps(
        {"sessions": len(days), "underlyings": len(universe), "seconds": secs, "parts": parts,
         "metrics": {k: (None if v != v else v) for k, v in m.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
