"""Position management: the rules that close or roll an open position, evaluated on its marks.

Per open position, in this order (the first rule that fires decides; each decision carries the
rule, the measured value, the threshold and a sentence saying why):

1. ``stop_loss``: a credit spread whose loss reaches ``stop_loss_credit_multiple`` x the credit
   received (default 2x), or a debit spread whose loss reaches ``stop_loss_debit_fraction`` of
   its max loss (default 50%): close.
2. ``profit_target``: unrealized profit reaches ``profit_target`` of the max profit (default 50%):
   close.
3. ``tested`` (credit spreads and iron condors): a short leg is in the money, or its |delta|
   reaches ``tested_delta`` (default 0.40): roll, that is close it and open the same strategy on a
   later expiry (at least ``roll_min_days_out`` days later), no wider than ``roll_max_width_ratio``
   x the old width (strike grids widen with the expiry; the same width is preferred), whose short
   strike is not itself tested, for a net credit of at least ``roll_min_net_credit`` per share
   (the new credit covers the cost of closing); if no such spread exists, close.
4. ``time_exit``: ``dte_exit`` calendar days or fewer to expiration (default 21): close.

A position at or past its expiration is left to expiration settlement (:class:`..broker.PaperBroker`).
Thresholds are inclusive: a rule fires at its threshold exactly, never before it.

Money conventions are those of :func:`..portfolio.mark_positions`: ``unrealized_pnl`` in dollars,
``entry_price`` per share (+ credit received, - debit paid), ``max_profit``/``max_loss`` in dollars
for the whole position.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .chain import contract_index

ACTIONS = ("hold", "close", "roll")
RULES = ("stop_loss", "profit_target", "tested", "time_exit")
_EPS = 1e-9  # marks are in cents: this only absorbs float rounding at an exact threshold


@dataclass(frozen=True)
class ManagementRules:
    profit_target: float = 0.50
    stop_loss_credit_multiple: float = 2.0
    stop_loss_debit_fraction: float = 0.50
    dte_exit: int = 21
    tested_delta: float = 0.40
    roll: bool = True
    roll_min_net_credit: float = 0.0  # per share
    roll_min_days_out: int = 7  # the new expiry is at least this many days after the old one
    roll_max_width_ratio: float = 1.5  # the new spread is at most this much wider than the old one

    def __post_init__(self):
        checks = {
            "profit_target": 0 < self.profit_target <= 1,
            "stop_loss_credit_multiple": self.stop_loss_credit_multiple > 0,
            "stop_loss_debit_fraction": 0 < self.stop_loss_debit_fraction <= 1,
            "dte_exit": self.dte_exit >= 0,
            "tested_delta": 0 < self.tested_delta < 1,
            "roll_min_days_out": self.roll_min_days_out >= 1,
            "roll_max_width_ratio": self.roll_max_width_ratio >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid management rule setting(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")


@dataclass(frozen=True)
class RuleBook:
    """Rules per strategy, falling back to ``default``."""

    default: ManagementRules = field(default_factory=ManagementRules)
    per_strategy: dict[str, ManagementRules] = field(default_factory=dict)

    def for_strategy(self, strategy: str) -> ManagementRules:
        return self.per_strategy.get(strategy, self.default)

    def time_exits(self) -> tuple[tuple[str, int], ...]:
        """(strategy, time-exit DTE) for every strategy: the entries the ranking leaves out."""
        from .strategies import STRATEGIES

        return tuple((s, self.for_strategy(s).dte_exit) for s in STRATEGIES)

    @classmethod
    def from_overrides(cls, default: dict | None = None, per_strategy: dict[str, dict] | None = None) -> "RuleBook":
        base = ManagementRules(**(default or {}))
        return cls(base, {s: replace(base, **o) for s, o in (per_strategy or {}).items()})


def rulebook_from_json(text: str) -> RuleBook:
    """A :class:`RuleBook` from JSON ``{"default": {field: value}, "<strategy>": {field: value}}``
    (``OPTRADER_MANAGEMENT_RULES``); empty text gives the defaults. Unknown strategies or fields
    and invalid values are errors naming them."""
    import json as _json
    from dataclasses import fields

    if not text or not text.strip():
        return RuleBook()
    try:
        raw = _json.loads(text)
    except ValueError as exc:
        raise ValueError(f"management rules are not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("management rules must be a JSON object of {strategy or 'default': {field: value}}")
    from .strategies import STRATEGIES

    allowed = {f.name for f in fields(ManagementRules)}
    for name, over in raw.items():
        if name != "default" and name not in STRATEGIES:
            raise ValueError(f"management rules: unknown strategy {name!r} (known: default, {', '.join(STRATEGIES)})")
        if not isinstance(over, dict):
            raise ValueError(f"management rules for {name!r} must be an object of field: value")
        unknown = set(over) - allowed
        if unknown:
            raise ValueError(f"management rules for {name!r}: unknown field(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(allowed))})")
    try:
        return RuleBook.from_overrides(raw.get("default", {}), {k: v for k, v in raw.items() if k != "default"})
    except TypeError as exc:  # a value of the wrong type (a string where a number belongs)
        raise ValueError(f"management rules: {exc}") from None


DECISION_COLUMNS = ["position_id", "underlying", "strategy", "expiration", "dte", "action", "rule", "value",
                    "threshold", "reason", "roll_candidate_id", "roll_net_credit"]


@dataclass(frozen=True)
class Decision:
    action: str
    rule: str | None
    value: float | None
    threshold: float | None
    reason: str


def leg_quotes(greeks: pd.DataFrame) -> pd.DataFrame:
    """The day's quotes indexed by (underlying, expiration 'YYYY-MM-DD', strike, option type):
    delta, bid, ask, mid; the first row of a duplicated contract."""
    return contract_index(greeks, ["delta", "bid", "ask", "mid"])


def tested_legs(position, legs: list[dict], quotes: pd.DataFrame, spot: float | None, rules: ManagementRules
                ) -> list[str]:
    """Descriptions of the short legs that are in the money or at/over the delta threshold."""
    out = []
    for leg in legs:
        if int(leg["side"]) >= 0:
            continue
        k, typ = float(leg["strike"]), leg["option_type"]
        if spot is not None and np.isfinite(spot) and ((typ == "P" and spot < k) or (typ == "C" and spot > k)):
            out.append(f"short {k:g}{typ} in the money (spot {spot:.2f})")
            continue
        key = (position.underlying, leg["expiration"], k, typ)
        if key in quotes.index:
            delta = float(quotes.loc[key, "delta"])
            if np.isfinite(delta) and abs(delta) >= rules.tested_delta - _EPS:
                out.append(f"short {k:g}{typ} delta {delta:+.2f} (threshold {rules.tested_delta:.2f})")
    return out


def evaluate_position(position, day: dt.date, rules: ManagementRules, quotes: pd.DataFrame,
                      spot: float | None) -> Decision:
    """The decision for one marked position (a row of :func:`..portfolio.mark_positions`)."""
    expiration = pd.Timestamp(position.expiration).date()
    dte = (expiration - day).days
    if dte <= 0:
        return Decision("hold", None, float(dte), 0.0, "at expiration: settled by the broker")
    pnl = float(position.unrealized_pnl)
    qty = int(position.quantity)
    credit = float(position.entry_price) > 0
    if credit:
        received = float(position.entry_price) * 100 * qty
        limit = rules.stop_loss_credit_multiple * received
        if -pnl >= limit - _EPS:
            return Decision("close", "stop_loss", -pnl, limit,
                            f"loss ${-pnl:,.2f} reached {rules.stop_loss_credit_multiple:g}x the credit received "
                            f"(${limit:,.2f})")
    else:
        limit = rules.stop_loss_debit_fraction * float(position.max_loss)
        if -pnl >= limit - _EPS:
            return Decision("close", "stop_loss", -pnl, limit,
                            f"loss ${-pnl:,.2f} reached {rules.stop_loss_debit_fraction:.0%} of the max loss "
                            f"(${limit:,.2f})")
    target = rules.profit_target * float(position.max_profit)
    if pnl >= target - _EPS:
        return Decision("close", "profit_target", pnl, target,
                        f"profit ${pnl:,.2f} reached {rules.profit_target:.0%} of the max profit (${target:,.2f})")
    if credit:
        tested = tested_legs(position, json.loads(position.legs), quotes, spot, rules)
        if tested:
            return Decision("roll" if rules.roll else "close", "tested", None, rules.tested_delta,
                            "tested: " + "; ".join(tested))
    if dte <= rules.dte_exit:
        return Decision("close", "time_exit", float(dte), float(rules.dte_exit),
                        f"{dte} days to expiration, at or inside the {rules.dte_exit}-day exit")
    return Decision("hold", None, None, None, "no rule fired")


def closing_cost(legs: list[dict], underlying: str, quotes: pd.DataFrame) -> float | None:
    """Per-share mid cost of closing the spread (positive: a debit to pay), None if a leg has no mid."""
    cost = 0.0
    for leg in legs:
        key = (underlying, leg["expiration"], float(leg["strike"]), leg["option_type"])
        if key not in quotes.index or not np.isfinite(quotes.loc[key, "mid"]):
            return None
        cost += -int(leg["side"]) * float(quotes.loc[key, "mid"])
    return cost


def find_roll(position, candidates: pd.DataFrame, quotes: pd.DataFrame, rules: ManagementRules
              ) -> tuple[pd.Series | None, float | None, str]:
    """The candidate to roll into: same underlying and strategy, an expiry at least
    ``roll_min_days_out`` later, width at most ``roll_max_width_ratio`` x the old one, short delta
    below the tested threshold, and a net credit (its credit less the mid cost of closing the old
    spread) of at least ``roll_min_net_credit``; the nearest width first, then the best score."""
    legs = json.loads(position.legs)
    cost = closing_cost(legs, position.underlying, quotes)
    if cost is None:
        return None, None, "no quote to close the old spread"
    strikes = sorted(float(leg["strike"]) for leg in legs)
    width = max(abs(strikes[i + 1] - strikes[i]) for i in range(len(strikes) - 1)) if len(strikes) > 1 else 0.0
    old_exp = pd.Timestamp(position.expiration)
    if candidates is None or candidates.empty:
        return None, None, "no candidates today"
    c = candidates[(candidates["underlying"] == position.underlying) & (candidates["strategy"] == position.strategy)
                   & (candidates["direction"] == "credit")
                   & (pd.to_datetime(candidates["expiration"]) >= old_exp + pd.Timedelta(days=rules.roll_min_days_out))
                   & (candidates["width"] <= width * rules.roll_max_width_ratio + 1e-9)
                   & (np.abs(candidates["short_delta"]) < rules.tested_delta)]
    if c.empty:
        return None, None, (f"no later {position.strategy} of width up to {width * rules.roll_max_width_ratio:g} "
                            "with an untested short strike")
    net = c["entry_price"] - cost
    c = c.assign(net_credit=net)[net >= rules.roll_min_net_credit - _EPS]
    if c.empty:
        return None, None, f"no roll for a net credit (closing costs {cost:.2f} per share)"
    c = c.assign(width_gap=np.abs(c["width"] - width))
    best = c.sort_values(["width_gap", "score", "candidate_id"], ascending=[True, False, True]).iloc[0]
    return best, float(best["net_credit"]), f"roll into {best['candidate_id']} for a net credit of {best['net_credit']:.2f}"


def evaluate_book(marked: pd.DataFrame, greeks: pd.DataFrame, day: dt.date, rulebook: RuleBook | None = None,
                  candidates: pd.DataFrame | None = None) -> pd.DataFrame:
    """One decision row per open position (:data:`DECISION_COLUMNS`); a roll with no suitable
    spread becomes a close, with the reason."""
    rulebook = rulebook or RuleBook()
    if marked is None or marked.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    quotes = leg_quotes(greeks)
    spots = greeks.groupby("underlying")["underlying_price"].first()
    rows = []
    for p in marked.itertuples(index=False):
        rules = rulebook.for_strategy(p.strategy)
        spot = float(spots[p.underlying]) if p.underlying in spots.index else None
        d = evaluate_position(p, day, rules, quotes, spot)
        action, reason, cand_id, net = d.action, d.reason, None, np.nan
        if action == "roll":
            best, net_credit, why = find_roll(p, candidates, quotes, rules)
            if best is None:
                action, reason = "close", f"{d.reason}; {why}: closing instead"
            else:
                cand_id, net, reason = best["candidate_id"], net_credit, f"{d.reason}; {why}"
        rows.append({"position_id": p.position_id, "underlying": p.underlying, "strategy": p.strategy,
                     "expiration": pd.Timestamp(p.expiration), "dte": (pd.Timestamp(p.expiration).date() - day).days,
                     "action": action, "rule": d.rule, "value": np.nan if d.value is None else d.value,
                     "threshold": np.nan if d.threshold is None else d.threshold, "reason": reason,
                     "roll_candidate_id": cand_id, "roll_net_credit": net})
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)
