"""Performance of a book over days: the metrics a backtest reports, and its equity-curve plot.

Inputs: the daily equity curve (closing NLV per trading day, in date order) and the closed trades
(strategy, opened and closed dates, realized P&L). Conventions:

* daily returns r_t = NLV_t / NLV_{t-1} - 1; 252 trading days a year;
* total return = NLV_end / NLV_start - 1; CAGR = (1 + total)^(252 / days) - 1;
* Sharpe = mean(r) / std(r) x sqrt(252) (no risk-free deduction; sample std, ddof = 1);
* Sortino = mean(r) / downside deviation x sqrt(252), downside deviation = sqrt(mean(min(r, 0)^2));
* max drawdown = max over t of 1 - NLV_t / max_{s <= t} NLV_s; Calmar = CAGR / max drawdown;
* win rate = winning trades / closed trades; profit factor = gross profit / gross loss;
* average days in trade: calendar days from opening to closing;
* 95% VaR and CVaR of the daily return: the loss at the 5th percentile and the mean loss beyond it
  (historical), as positive fractions of NLV.

A metric that is undefined for the data (no trade, no loss, fewer than two days) is NaN, never 0.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

TRADING_DAYS = 252

METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "profit_factor",
           "avg_days_in_trade", "var95", "cvar95", "trades", "days")


def _nan_div(a: float, b: float) -> float:
    return float(a / b) if b not in (0, 0.0) and np.isfinite(b) else float("nan")


def drawdown_series(equity: pd.Series) -> pd.Series:
    peak = equity.cummax()
    return 1.0 - equity / peak


def trade_metrics(trades: pd.DataFrame) -> dict:
    if trades is None or trades.empty:
        return {"win_rate": float("nan"), "profit_factor": float("nan"), "avg_days_in_trade": float("nan"),
                "trades": 0}
    pnl = trades["realized_pnl"].astype(float)
    gross_profit = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    days = (pd.to_datetime(trades["closed_date"]) - pd.to_datetime(trades["opened_date"])).dt.days
    return {"win_rate": float((pnl > 0).mean()), "profit_factor": _nan_div(gross_profit, gross_loss),
            "avg_days_in_trade": float(days.mean()), "trades": int(len(trades))}


def performance(equity: pd.Series, trades: pd.DataFrame | None = None) -> dict:
    """The metrics of the module docstring for a daily equity curve (index: dates, ascending)."""
    if not equity.index.is_monotonic_increasing:
        raise ValueError("equity curve must be in date order")
    if (equity <= 0).any():
        bad = equity[equity <= 0].index[0]
        raise ValueError(f"equity curve has a non-positive NLV on {pd.Timestamp(bad).date()}")
    out = {k: float("nan") for k in METRICS}
    out["days"] = int(len(equity))
    out.update(trade_metrics(trades))
    if len(equity) < 2:
        return out
    r = equity.pct_change().dropna().to_numpy()
    total = float(equity.iloc[-1] / equity.iloc[0] - 1.0)
    n = len(r)
    cagr = (1.0 + total) ** (TRADING_DAYS / n) - 1.0 if total > -1 else -1.0
    std = float(np.std(r, ddof=1)) if n > 1 else float("nan")
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    mdd = float(drawdown_series(equity).max())
    q = float(np.quantile(r, 0.05))
    tail = r[r <= q]
    out.update(total_return=total, cagr=float(cagr),
               sharpe=_nan_div(float(np.mean(r)), std) * math.sqrt(TRADING_DAYS),
               sortino=_nan_div(float(np.mean(r)), downside) * math.sqrt(TRADING_DAYS),
               max_drawdown=mdd, calmar=_nan_div(float(cagr), mdd),
               var95=max(0.0, -q), cvar95=max(0.0, -float(np.mean(tail))) if len(tail) else float("nan"))
    return out


def by_strategy(trades: pd.DataFrame) -> pd.DataFrame:
    """Per-strategy trades, win rate, profit factor, total and average P&L, average days in trade."""
    cols = ["strategy", "trades", "win_rate", "profit_factor", "total_pnl", "avg_pnl", "avg_days_in_trade"]
    if trades is None or trades.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for strategy, t in trades.groupby("strategy", sort=True):
        m = trade_metrics(t)
        pnl = t["realized_pnl"].astype(float)
        rows.append({"strategy": strategy, "trades": m["trades"], "win_rate": m["win_rate"],
                     "profit_factor": m["profit_factor"], "total_pnl": float(pnl.sum()), "avg_pnl": float(pnl.mean()),
                     "avg_days_in_trade": m["avg_days_in_trade"]})
    return pd.DataFrame(rows, columns=cols)


def equity_plot_png(equity: pd.Series, title: str = "equity and drawdown") -> bytes:
    """PNG of the equity curve (top) and the drawdown from peak (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    try:
        x = pd.to_datetime(equity.index)
        ax1.plot(x, equity.to_numpy(), color="#1f4e79", lw=1.5)
        ax1.set_ylabel("net liquidation ($)")
        ax1.set_title(title)
        ax1.grid(alpha=0.3)
        dd = drawdown_series(equity)
        ax2.fill_between(x, -100 * dd.to_numpy(), 0, color="#b22222", alpha=0.5)
        ax2.set_ylabel("drawdown (%)")
        ax2.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()
    finally:
        plt.close(fig)
