"""Backtest assets: a backfill of the daily partitions replays the book over that range.

Both assets have ``BackfillPolicy.single_run()``: a backfill of a range (the UI's backfill dialog,
``dagster asset materialize --partition-range A...B``, or Python) is one run that receives the whole
range and replays its days in date order, the only order a path-dependent book allows. (A job
backfill would launch one run per day at once, in no order, against one DuckDB writer.)
"""

import base64
import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from optrader_pipelines.backtest import account_for, equity_and_trades, run_backtest
from optrader_pipelines.performance import by_strategy, equity_plot_png, performance
from optrader_pipelines.reports import write_backtest_report
from resources.backtest import BacktestSettingsResource
from resources.market import MarketResource
from resources.settings import TradingSettingsResource
from resources.warehouse import WarehouseResource

from ._meta import md_table
from .partitions import trading_day_partitions

BACKTEST = dict(partitions_def=trading_day_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
                group_name="backtest")


def _range(context) -> tuple[list[dt.date], str]:
    keys = context.partition_keys
    days = sorted(dt.date.fromisoformat(k) for k in keys)
    return days, f"{days[0].isoformat()}...{days[-1].isoformat()}"


@dg.asset(kinds={"duckdb"}, **BACKTEST)
def backtest_book(context: dg.AssetExecutionContext, market: MarketResource, warehouse: WarehouseResource,
                  backtest: BacktestSettingsResource) -> dg.MaterializeResult:
    """The backtest's book, replayed day by day over the backfilled range on its own account
    (``backtest:<id>``, from the range and the settings; never the paper or live account): chains,
    Greeks, settlement at expiration, management exits, signals, safety checks and simulated fills
    (between mid and the touch, slippage, commission). One row per day in ``backtest_days``. A
    missing day in the history fails the run naming it; a retried backfill replays the range
    idempotently and ends with the same book."""
    days, label = _range(context)
    cfg = backtest.config(market.label)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def progress(i: int, n: int, row: dict) -> None:  # a line a month of sessions, and the last day
        if i % 21 == 0 or i == n:
            context.log.info(f"backtest {label}: {i}/{n} sessions replayed, through {row['trade_date']}: "
                             f"NLV {row['nlv']:,.2f}, {row['open_positions']} open positions "
                             f"({time.perf_counter() - started:.0f} s)")

    account, rows = run_backtest(warehouse.get(), market, days, cfg, context.run_id, timings=timings,
                                 progress=progress)
    show = rows[["trade_date", "nlv", "cash", "open_positions", "orders_filled", "positions_closed", "settled"]]
    steps = pd.DataFrame([{"step": k, "seconds": round(v, 2)} for k, v in
                          sorted(timings.items(), key=lambda kv: -kv[1])])
    return dg.MaterializeResult(metadata={
        "backtest_account": account, "range": label, "days": len(days),
        "final_nlv": float(rows["nlv"].iloc[-1]), "orders_filled": int(rows["orders_filled"].sum()),
        "days_table": md_table(show, 30),
        "seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 2)),
        "seconds_by_step": md_table(steps, 20),
    })


@dg.asset(deps=[backtest_book], kinds={"pandas"}, **BACKTEST)
def backtest_performance(context: dg.AssetExecutionContext, market: MarketResource, warehouse: WarehouseResource,
                         backtest: BacktestSettingsResource, settings: TradingSettingsResource) -> dg.MaterializeResult:
    """How the backtest did over the backfilled range: equity curve, total return, CAGR, Sharpe,
    Sortino, max drawdown, Calmar, win rate, profit factor, average days in trade, 95% VaR and
    CVaR, a per-strategy breakdown, and the equity and drawdown plot; also written as a Markdown
    report with the PNG beside it in the report folder."""
    days, label = _range(context)
    cfg = backtest.config(market.label)
    account = account_for(cfg.backtest_id(days[0], days[-1]))
    equity, trades = equity_and_trades(warehouse.get(), account)
    equity = equity[(equity.index >= pd.Timestamp(days[0])) & (equity.index <= pd.Timestamp(days[-1]))]
    if len(equity) != len(days):
        raise dg.Failure(f"backtest {account} has {len(equity)} of the {len(days)} days of {label}: "
                         "materialize backtest_book for the same range first")
    m = performance(equity, trades)
    png = equity_plot_png(equity, f"backtest {label}")
    strategies = by_strategy(trades)
    report, out = write_backtest_report(Path(settings.report_dir), account, label, market.label, m, strategies, png)
    metrics = pd.DataFrame([{"metric": k, "value": v} for k, v in m.items()])
    image = f"![equity and drawdown](data:image/png;base64,{base64.b64encode(png).decode()})"
    return dg.MaterializeResult(metadata={
        "backtest_account": account, "range": label,
        **{k: dg.MetadataValue.float(float(v)) for k, v in m.items() if k not in ("trades", "days")},
        "trades": int(m["trades"]), "days": int(m["days"]),
        "metrics": md_table(metrics, 20), "by_strategy": md_table(strategies, 10),
        "report_path": dg.MetadataValue.path(str(report)),
        "equity_plot": dg.MetadataValue.md(image), "equity_plot_path": dg.MetadataValue.path(str(out)),
    })


BACKTEST_ASSETS = [backtest_book, backtest_performance]
