"""Benchmark: the whole daily run from the command line (start-up included) on the synthetic
market with a universe of about 200,000 contracts. Prints the wall time and the per-step times.

Run with `make bench`. Uses a throwaway warehouse and Dagster instance under bench_results/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_results"
DEFAULT_20 = "SPX,NDX,RUT,SPY,QQQ,IWM,DIA,TLT,GLD,XLF,EEM,AAPL,MSFT,NVDA,AMZN,META,GOOGL,TSLA,AMD,JPM"


def main() -> int:
    names = DEFAULT_20.split(",") + [f"SYN{i:03d}" for i in range(1, 121)]
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "home").mkdir(parents=True)
    env = dict(os.environ, OPTRADER_UNIVERSE=",".join(names), OPTRADER_SYNTHETIC_STRIKES="30",
               OPTRADER_DUCKDB_PATH=str(OUT / "bench.duckdb"), OPTRADER_REPORT_DIR=str(OUT / "reports"),
               DAGSTER_HOME=str(OUT / "home"), OPTRADER_LOG_LEVEL="DEBUG")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "scripts/run_daily.py", "--date", "2026-11-20"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        return 1
    import duckdb

    con = duckdb.connect(str(OUT / "bench.duckdb"), read_only=True)
    contracts = con.execute("SELECT count(*) FROM option_chains").fetchone()[0]
    candidates = con.execute("SELECT count(*) FROM scored_opportunities").fetchone()[0]
    steps = re.findall(r'Finished execution of step "([^"]+)" in ([0-9.]+)(ms|s)', proc.stdout + proc.stderr)
    timing = {name: float(v) / (1000 if unit == "ms" else 1) for name, v, unit in steps}
    print(f"daily run, synthetic market, {len(names)} underlyings, {contracts:,} contracts, {candidates:,} candidates")
    print(f"wall time from the command line (start-up included): {wall:.1f} s")
    for name, secs in timing.items():
        print(f"  {name:45s} {secs:6.2f} s")
    print(f"  {'start-up, imports, run bookkeeping':45s} {wall - sum(timing.values()):6.2f} s")
    (OUT / "daily_run.json").write_text(json.dumps({"wall_s": wall, "contracts": contracts, "steps": timing}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
