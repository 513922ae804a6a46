"""Backtest core: days replay in order on the backtest's own account, deterministically, and an
interrupted backtest resumed ends with the same book."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from optrader_pipelines import calendar as cal
from optrader_pipelines.backtest import BacktestConfig, equity_and_trades, run_backtest
from optrader_pipelines.market.synthetic import SyntheticMarket
from optrader_pipelines.performance import performance
from optrader_pipelines.storage import Warehouse

DAYS = cal.trading_days(dt.date(2026, 10, 28), dt.date(2026, 11, 5))  # seven sessions
UNIVERSE = ("IWM", "XLF")
CFG = BacktestConfig(management_rules='{"default": {"dte_exit": 30}}', market="synthetic seed 7")


def _source():
    return SyntheticMarket(UNIVERSE, seed=7, strikes_per_side=6)


def _ledger(wh, account):
    orders = wh.query("SELECT order_id, action, trade_date, fill_price, quantity FROM broker_orders WHERE account = ? "
                      "ORDER BY order_id", [account])
    cash = wh.query("SELECT entry_id, amount FROM cash_ledger WHERE account = ? ORDER BY entry_id", [account])
    return orders, cash


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    wh = Warehouse(tmp_path_factory.mktemp("bt") / "bt.duckdb")
    account, days = run_backtest(wh, _source(), DAYS, CFG)
    return wh, account, days


def test_the_book_carries_day_to_day_on_its_own_account(first):
    wh, account, days = first
    assert account.startswith("backtest:") and len(days) == len(DAYS)
    assert wh.count("broker_orders") == len(wh.query("SELECT 1 FROM broker_orders WHERE account = ?", [account]))
    assert days["orders_filled"].sum() >= 2
    # each day starts from the previous day's book: cash moves only by that day's ledger entries
    for prev, cur in zip(days.itertuples(), days.iloc[1:].itertuples()):
        moved = wh.query("SELECT coalesce(sum(amount), 0) AS s FROM cash_ledger WHERE account = ? AND trade_date = ?",
                         [account, cur.trade_date])["s"].iloc[0]
        assert cur.cash == pytest.approx(prev.cash + moved, abs=1e-6)
    assert days["positions_closed"].sum() >= 1  # the 30-day exit closes positions along the way
    equity, trades = equity_and_trades(wh, account)
    m = performance(equity, trades)
    assert m["days"] == len(DAYS) and m["trades"] == len(trades) >= 1


def test_the_same_backtest_twice_gives_identical_trades(first, tmp_path):
    wh, account, days = first
    again = Warehouse(tmp_path / "again.duckdb")
    account2, days2 = run_backtest(again, _source(), DAYS, CFG)
    assert account2 == account
    a, b = _ledger(wh, account), _ledger(again, account2)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    pd.testing.assert_series_equal(days["nlv"], days2["nlv"])
    # re-running over the same warehouse replays from an empty account: the same rows, no duplicates
    before = {t: wh.count(t) for t in ("broker_orders", "positions", "cash_ledger", "backtest_days")}
    run_backtest(wh, _source(), DAYS, CFG)
    assert {t: wh.count(t) for t in before} == before
    pd.testing.assert_frame_equal(_ledger(wh, account)[0], a[0])


def test_an_interrupted_backtest_resumed_ends_with_the_same_book(first, tmp_path, monkeypatch):
    wh, account, days = first
    resumed = Warehouse(tmp_path / "resumed.duckdb")
    source = _source()
    real = source.load_chain
    fail_on = DAYS[4]

    def flaky(day, max_dte=None):
        if day == fail_on:
            raise RuntimeError("injected failure")
        return real(day, max_dte)

    monkeypatch.setattr(source, "load_chain", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        run_backtest(resumed, source, DAYS, CFG)
    monkeypatch.setattr(source, "load_chain", real)
    run_backtest(resumed, source, DAYS, CFG)  # the retry replays the whole range
    a, b = _ledger(wh, account), _ledger(resumed, account)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


def test_a_backfill_of_the_backtest_group_is_one_ordered_run(tmp_path):
    import dagster as dg

    from assets import BACKTEST_ASSETS
    from optrader_pipelines.config import Settings
    from optrader_pipelines.definitions import build_resources
    from resources.market import SyntheticMarketResource

    res = build_resources(Settings(duckdb_path=tmp_path / "w.duckdb", report_dir=tmp_path / "reports",
                                   universe=UNIVERSE))
    res["market"] = SyntheticMarketResource(seed=7, universe=list(UNIVERSE), strikes_per_side=6)
    start, end = DAYS[0].isoformat(), DAYS[3].isoformat()
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(BACKTEST_ASSETS, resources=res, instance=instance,
                            tags={"dagster/asset_partition_range_start": start,
                                  "dagster/asset_partition_range_end": end})
    assert result.success
    book = result.asset_materializations_for_node("backtest_book")
    perf = result.asset_materializations_for_node("backtest_performance")[0].metadata
    assert book[0].metadata["days"].value == 4 and book[0].metadata["range"].value == f"{start}...{end}"
    steps = book[0].metadata["seconds_by_step"].value
    assert {"greeks", "candidates", "chain", "orders"} <= {line.split("|")[1].strip() for line in steps.splitlines()[2:]}
    assert book[0].metadata["seconds"].value > 0
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(f"4/4 sessions replayed, through {end}" in m for m in logs)  # progress in the run's log
    account = book[0].metadata["backtest_account"].value
    assert account.startswith("backtest:") and perf["backtest_account"].value == account
    wh = Warehouse(tmp_path / "w.duckdb")
    assert wh.count("backtest_days") == 4
    assert wh.query("SELECT count(*) AS n FROM broker_orders WHERE account = 'paper'")["n"].iloc[0] == 0
    assert "sharpe" in perf and "max_drawdown" in perf and perf["days"].value == 4
    assert perf["equity_plot"].value.startswith("![equity and drawdown](data:image/png;base64,")
    report = Path(perf["report_path"].value).read_text()
    assert "## Metrics" in report and "| sharpe |" in report and "## By strategy" in report
    assert (Path(perf["report_path"].value).parent / Path(perf["equity_plot_path"].value).name).read_bytes()[:4] == \
        b"\x89PNG"


def test_spxw_january_2018_backfills_all_21_sessions(shared_data, tmp_path):
    import shutil

    from optrader_pipelines.market.files import FilesMarket

    hist = tmp_path / "history"
    hist.mkdir()
    shutil.copy(shared_data / "historicaloptiondata" / "SPXW_2018-01.csv", hist)
    shutil.copy(shared_data / "rates" / "DGS3MO.csv", hist)
    days = cal.trading_days(dt.date(2018, 1, 2), dt.date(2018, 1, 31))
    assert len(days) == 21
    wh = Warehouse(tmp_path / "w.duckdb")
    account, rows = run_backtest(wh, FilesMarket(hist), days, BacktestConfig(market="SPXW 2018-01"))
    assert list(pd.to_datetime(rows["trade_date"]).dt.date) == days
    equity, trades = equity_and_trades(wh, account)
    m = performance(equity, trades)
    assert m["days"] == 21 and m["trades"] >= 1 and not pd.isna(m["max_drawdown"])
    # a day the history does not hold is a clear error for that day
    from optrader_pipelines.chain import ChainError

    with pytest.raises(ChainError, match="2018-02-01"):
        run_backtest(wh, FilesMarket(hist), [dt.date(2018, 2, 1)], BacktestConfig())


def test_the_replay_prices_only_the_contracts_it_can_use():
    from optrader_pipelines.backtest import usable_contracts

    day = dt.date(2024, 3, 1)
    exps = pd.to_datetime(["2024-03-08", "2024-03-15", "2024-04-30", "2024-06-21", "2024-12-20"])
    chain = pd.DataFrame({"expiration": exps.repeat(2), "strike": [100.0, 105.0] * 5})
    none = pd.DataFrame({"expiration": pd.Series([], dtype="datetime64[ns]")})
    kept = usable_contracts(chain, day, (14, 60), none)
    assert sorted(kept["expiration"].unique()) == list(exps[1:3])  # 14 and 60 days out, not 7
    # open positions keep their expirations, inside the window's near end or beyond its far end
    held = pd.DataFrame({"expiration": [dt.date(2024, 6, 21), dt.date(2024, 3, 8)]})
    kept = usable_contracts(chain, day, (14, 60), held)
    assert sorted(kept["expiration"].unique()) == list(exps[:4]) and len(kept) == 8
