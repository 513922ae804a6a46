"""Strategy momentum: how each strategy has done lately, from the account's own closed trades.

Momentum of a strategy = its realized P&L over the risk it took (sum of realized P&L / sum of max
loss) on the trades it closed in the last ``lookback_days`` calendar days (default 91: three
months). A strategy with no closed trade in the window has no momentum (NaN): it stays eligible at a
neutral weight, so a new account can start trading; a strategy whose measured momentum is zero or
negative is left out of the ranking. The ranking maps momentum to [0, 1] with a logistic of scale
10% of risk and blends it with the signal's confidence (:class:`..signals.RankingConfig`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

LOOKBACK_DAYS = 91
SCALE = 0.10


def strategy_momentum(closed: pd.DataFrame, as_of: dt.date, lookback_days: int = LOOKBACK_DAYS) -> pd.DataFrame:
    """Per strategy: trades closed in (as_of - lookback, as_of) (strictly before ``as_of``: no
    peeking at the day being decided), their P&L, risk and momentum."""
    cols = ["strategy", "trades", "realized_pnl", "risk", "momentum"]
    if closed is None or closed.empty:
        return pd.DataFrame(columns=cols)
    when = pd.to_datetime(closed["closed_date"]).dt.date
    window = closed[(when < as_of) & (when >= as_of - dt.timedelta(days=lookback_days))]
    if window.empty:
        return pd.DataFrame(columns=cols)
    g = window.groupby("strategy").agg(trades=("realized_pnl", "size"), realized_pnl=("realized_pnl", "sum"),
                                       risk=("max_loss", "sum")).reset_index()
    g["momentum"] = np.where(g["risk"] > 0, g["realized_pnl"] / g["risk"], np.nan)
    return g[cols]


def momentum_score(momentum) -> np.ndarray:
    """Momentum mapped to [0, 1]: 0.5 at zero (and where unmeasured), logistic with scale 10%."""
    m = np.asarray(momentum, dtype=float)
    return np.where(np.isfinite(m), 1.0 / (1.0 + np.exp(-m / SCALE)), 0.5)


def closed_trades(wh, account: str) -> pd.DataFrame:
    """The account's closed positions (strategy, closed_date, realized_pnl, max_loss)."""
    try:
        return wh.query("SELECT strategy, closed_date, realized_pnl, max_loss FROM positions "
                        "WHERE account = ? AND closed_date IS NOT NULL", [account])
    except Exception:  # no ledger yet
        return pd.DataFrame(columns=["strategy", "closed_date", "realized_pnl", "max_loss"])
