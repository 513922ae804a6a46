"""Backtest performance metrics against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from optrader_pipelines.performance import by_strategy, equity_plot_png, performance


def _curve(values):
    return pd.Series(values, index=pd.bdate_range("2024-01-02", periods=len(values)), dtype=float)


def test_metrics_match_their_definitions():
    eq = _curve([100, 110, 99, 108.9, 120])
    r = np.array([0.10, -0.10, 0.10, 120 / 108.9 - 1])
    trades = pd.DataFrame({"strategy": ["a", "a", "b"], "realized_pnl": [30.0, -10.0, 5.0],
                           "opened_date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
                           "closed_date": pd.to_datetime(["2024-01-05", "2024-01-08", "2024-01-05"])})
    m = performance(eq, trades)
    assert m["total_return"] == pytest.approx(0.20)
    assert m["cagr"] == pytest.approx(1.2 ** (252 / 4) - 1)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    assert m["sortino"] == pytest.approx(r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(0.10)  # 110 -> 99
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.10)
    assert m["win_rate"] == pytest.approx(2 / 3) and m["profit_factor"] == pytest.approx(35 / 10)
    assert m["avg_days_in_trade"] == pytest.approx((3 + 5 + 1) / 3)
    q = np.quantile(r, 0.05)
    assert m["var95"] == pytest.approx(-q) and m["cvar95"] == pytest.approx(-r[r <= q].mean())
    s = by_strategy(trades).set_index("strategy")
    assert s.loc["a", "total_pnl"] == 20 and s.loc["b", "win_rate"] == 1.0 and math.isnan(s.loc["b", "profit_factor"])


def test_undefined_metrics_are_nan_and_bad_curves_are_refused():
    m = performance(_curve([100.0]))
    assert m["days"] == 1 and math.isnan(m["sharpe"]) and math.isnan(m["win_rate"]) and m["trades"] == 0
    flat = performance(_curve([100.0, 100.0, 100.0]))
    assert flat["total_return"] == 0 and math.isnan(flat["sharpe"]) and math.isnan(flat["calmar"])
    with pytest.raises(ValueError, match="non-positive NLV on 2024-01-03"):
        performance(_curve([100.0, 0.0]))
    with pytest.raises(ValueError, match="date order"):
        performance(_curve([100.0, 101.0])[::-1])


def test_equity_plot_is_a_png():
    png = equity_plot_png(_curve([100, 105, 101, 110]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
