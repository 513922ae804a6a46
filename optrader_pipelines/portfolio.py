"""Marking the book to market from a day's chain with Greeks, and the book's history."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .chain import contract_index
from .risk import expiry_pnl_per_share

MARK_COLUMNS = ["mark_value", "unrealized_pnl", "mark_source", "delta", "gamma", "theta", "vega"]


def mark_positions(positions: pd.DataFrame, greeks: pd.DataFrame) -> pd.DataFrame:
    """Each open position valued at the day's mids (what closing it at mid would bring, signed:
    a short spread is a liability), with position Greeks in dollars per share move x100.

    Fallbacks, named in ``mark_source``: a leg with no mid is valued at intrinsic from the day's
    underlying price; a position whose underlying is not in the chain keeps its entry value.
    """
    if positions.empty:
        return positions.assign(**{c: pd.Series(dtype="float64") for c in MARK_COLUMNS}).astype({"mark_source": "object"})
    g = greeks[greeks["underlying"].isin(positions["underlying"].unique())]
    quotes = contract_index(g, ["mid", "delta", "gamma", "theta", "vega"])
    spots = g.groupby("underlying")["underlying_price"].first()
    out = []
    for p in positions.itertuples(index=False):
        legs = json.loads(p.legs)
        qty = float(p.quantity)
        value, source = 0.0, "mid"
        greeks_sum = dict(delta=0.0, gamma=0.0, theta=0.0, vega=0.0)
        if p.underlying not in spots.index:
            value, source = -float(p.entry_price) * 100 * qty, "entry (underlying not in chain)"
        else:
            spot = float(spots[p.underlying])
            for leg in legs:
                key = (p.underlying, leg["expiration"], float(leg["strike"]), leg["option_type"])
                row = quotes.loc[key] if key in quotes.index else None
                mid = row["mid"] if row is not None else np.nan
                if row is None or not np.isfinite(mid):
                    intrinsic = expiry_pnl_per_share([dict(leg, side=1)], 0.0, np.array([spot]))[0]
                    mid, source = intrinsic, "mid/intrinsic"
                value += int(leg["side"]) * float(mid) * 100 * qty
                if row is not None:
                    for k in greeks_sum:
                        v = row[k]
                        if np.isfinite(v):
                            greeks_sum[k] += int(leg["side"]) * float(v) * 100 * qty
        entry_value = -float(p.entry_price) * 100 * qty  # credit received: liability of that size
        out.append({"mark_value": round(value, 2), "unrealized_pnl": round(value - entry_value, 2),
                    "mark_source": source, **greeks_sum})
    return pd.concat([positions.reset_index(drop=True), pd.DataFrame(out)], axis=1)
