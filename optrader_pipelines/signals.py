"""Ranking scored candidates into the day's trade signals, each with a confidence and reasons.

Eligibility (each exclusion counted by reason): positive expected value, liquidity at least
``min_liquidity``, one spread's max loss within ``max_risk_per_contract`` (what the account's
risk profile could ever take), probability of profit at least ``min_pop``. The best candidate
per underlying is kept (no two signals on one name), ranked by score.

Confidence in (0, 1) = logistic((score - 50) / 10): 0.5 at a score of 50, 0.88 at 70.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .momentum import momentum_score

SIGNAL_EXTRA = ["rank", "signal_id", "confidence", "reasons"]


@dataclass(frozen=True)
class RankingConfig:
    top_n: int = 4
    min_liquidity: float = 0.2
    min_pop: float = 0.30
    max_risk_per_contract: float = float("inf")
    # days to expiration at or below which the position-management time exit would close the
    # trade again at the next close, per strategy (opening it would only pay the spread twice)
    time_exit_dte: tuple[tuple[str, int], ...] = ()
    # strategy momentum (optrader_pipelines/momentum.py): (strategy, momentum) per measured strategy;
    # the order is by confidence_weight * confidence + momentum_weight * momentum score, and a
    # strategy with measured momentum <= 0 is left out
    momentum: tuple[tuple[str, float], ...] = ()
    confidence_weight: float = 0.5
    momentum_weight: float = 0.5


def confidence(score) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(score, dtype=float) - 50.0) / 10.0))


def _reasons(r) -> str:
    parts = [
        f"probability of profit {r.pop:.0%}",
        f"expected value ${r.expected_value:+,.2f} per spread ({r.expected_value / r.max_loss:+.1%} of risk)",
        f"return on risk {r.return_on_risk:.0%} (max profit ${r.max_profit:,.0f}, max loss ${r.max_loss:,.0f})",
        f"short strike delta {r.short_delta:+.2f}, {r.dte} days to expiration",
        f"liquidity {r.liquidity:.2f}: widest leg {r.widest_spread_pct:.1%} of mid, open interest >= {int(r.min_open_interest)}",
        (f"{r.strategy} momentum {r.momentum:+.1%} of risk over 3 months" if np.isfinite(r.momentum)
         else f"no recent closed {r.strategy} trade (neutral momentum)"),
    ]
    return "; ".join(parts)


def rank_signals(candidates: pd.DataFrame, trade_date, cfg: RankingConfig | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(signals, exclusions): the top ``cfg.top_n`` signals and the count of candidates excluded per reason."""
    cfg = cfg or RankingConfig()
    c = candidates
    rules = [
        ("expected value not positive", c["expected_value"] <= 0),
        (f"liquidity below {cfg.min_liquidity}", c["liquidity"] < cfg.min_liquidity),
        (f"probability of profit below {cfg.min_pop:.0%}", c["pop"] < cfg.min_pop),
        (f"one spread risks more than ${cfg.max_risk_per_contract:,.0f}", c["max_loss"] > cfg.max_risk_per_contract),
    ]
    if cfg.time_exit_dte:
        limit = c["strategy"].map(dict(cfg.time_exit_dte)).fillna(-1)
        rules.append(("inside the time exit of the management rules", c["dte"] <= limit))
    mom = c["strategy"].map(dict(cfg.momentum)).astype(float) if len(c) else pd.Series(dtype=float)
    rules.append(("strategy momentum not positive", mom.notna() & (mom <= 0)))
    keep = pd.Series(True, index=c.index)
    excluded = []
    for reason, bad in rules:
        n = int((bad & keep).sum())
        excluded.append({"reason": reason, "count": n})
        keep &= ~bad
    eligible = c[keep].assign(momentum=mom[keep], momentum_score=momentum_score(mom[keep]))
    eligible = eligible.assign(priority=cfg.confidence_weight * confidence(eligible["score"])
                               + cfg.momentum_weight * eligible["momentum_score"])
    eligible = eligible.sort_values(["priority", "candidate_id"], ascending=[False, True])
    best = eligible.drop_duplicates("underlying", keep="first")
    excluded.append({"reason": "not the best candidate on its underlying", "count": len(eligible) - len(best)})
    top = best.head(cfg.top_n).copy()
    excluded.append({"reason": f"ranked below the top {cfg.top_n}", "count": len(best) - len(top)})
    top["rank"] = np.arange(1, len(top) + 1)
    day = pd.Timestamp(trade_date).date().isoformat()
    top["signal_id"] = (day + ":" + top["candidate_id"]).astype(object)
    top["confidence"] = confidence(top["score"])
    top["reasons"] = pd.Series([_reasons(r) for r in top.itertuples(index=False)], index=top.index, dtype=object)
    cols = ["rank", "signal_id"] + [x for x in c.columns] + ["momentum", "priority", "confidence", "reasons"]
    return top[cols].reset_index(drop=True), pd.DataFrame(excluded)
