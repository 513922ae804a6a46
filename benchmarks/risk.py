"""Benchmark: the intraday risk check over 1,000 open positions (what intraday_risk_sensor does in
one evaluation: marks, snapshot, VaR, record) and one management decision for one position.

Run with `make bench`. Uses a throwaway warehouse under bench_results/. Prints the median of 5.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from optrader_pipelines import calendar as cal  # noqa: E402
from optrader_pipelines.adjust import intraday_decisions  # noqa: E402
from optrader_pipelines.broker import PaperBroker  # noqa: E402
from optrader_pipelines.intraday import legs_table  # noqa: E402
from optrader_pipelines.management import RuleBook  # noqa: E402
from optrader_pipelines.market.synthetic import SyntheticMarket  # noqa: E402
from optrader_pipelines.pricing import greeks_table  # noqa: E402
from optrader_pipelines.storage import Warehouse  # noqa: E402
from optrader_pipelines.strategies import build_candidates  # noqa: E402
from resources import PaperBrokerResource, SyntheticMarketResource, TradingSettingsResource, WarehouseResource  # noqa: E402
from sensors.intraday import take_snapshot  # noqa: E402

N = int(os.environ.get("BENCH_POSITIONS", "1000"))
DAY = pd.Timestamp("2026-11-19").date()
AT = pd.Timestamp("2026-11-20 10:00", tz=cal.NY)
UNIVERSE = ["SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA", "AMZN", "XLF", "TLT", "GLD"]


def book(path: Path) -> PaperBroker:
    """N open positions drawn from the day's candidates, written straight into the ledger."""
    greeks = greeks_table(SyntheticMarket(tuple(UNIVERSE), seed=7, strikes_per_side=12).load_chain(DAY).chain)
    cands = build_candidates(greeks)
    rng = np.random.default_rng(0)
    pick = cands.iloc[rng.integers(0, len(cands), N)].reset_index(drop=True)
    pb = PaperBroker(Warehouse(path), starting_cash=1e7)
    rows = [[f"bench-{i}", "paper", DAY, c.underlying, c.strategy, c.expiration, c.settlement, c.legs, 1,
             c.entry_price if c.direction == "credit" else -c.entry_price, c.max_profit, c.max_loss,
             c.max_loss if c.direction == "credit" else 0.0]
            for i, c in enumerate(pick.itertuples(index=False))]
    pb.wh.execute_many([("INSERT INTO positions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL,NULL,NULL)", r)
                        for r in rows])
    return pb


def median_time(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    out = ROOT / "bench_results" / "risk"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    db = out / "bench.duckdb"
    pb = book(db)
    res = dict(market=SyntheticMarketResource(seed=7, universe=UNIVERSE, strikes_per_side=12),
               broker=PaperBrokerResource(duckdb_path=str(db), starting_cash=1e7),
               warehouse=WarehouseResource(duckdb_path=str(db)), settings=TradingSettingsResource())
    counter = iter(range(10_000))

    def snapshot():  # a new minute each time, so every call records a row as a real tick does
        take_snapshot(AT + pd.Timedelta(minutes=next(counter)), res["market"], res["broker"], res["warehouse"],
                      res["settings"])

    secs = median_time(snapshot)
    one = pb.open_positions(AT.date()).head(1)
    source = res["market"].intraday()
    rules = RuleBook()

    def decide():
        intraday_decisions(one, source.intraday_quotes(legs_table(one), AT), AT.date(), rules)

    secs_one = median_time(decide, repeats=20)
    result = {"positions": N, "risk_evaluation_s": secs, "management_decision_one_position_s": secs_one}
    print(f"intraday risk evaluation over {N:,} open positions (marks, Greeks, VaR, record): "
          f"{secs * 1000:.0f} ms (goal <= 1 s)")
    print(f"management decision for one position (intraday marks + rules): {secs_one * 1000:.1f} ms (goal <= 100 ms)")
    (ROOT / "bench_results" / "risk.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
