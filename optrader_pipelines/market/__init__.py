"""Market sources: each turns a trading day into a chain in the :mod:`optrader_pipelines.chain` schema."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass

import pandas as pd

from ..chain import DropLog, days_to_expiry


@dataclass
class ChainLoad:
    """A day's chain plus the rows the source dropped (with counts and reasons)."""

    chain: pd.DataFrame
    drops: DropLog
    sources: list[str]


class MarketSource(ABC):
    name: str = "abstract"

    @abstractmethod
    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        """Return the end-of-day chain for ``day``; raise ChainError naming what is wrong.

        ``max_dte`` leaves out the expirations more than that many calendar days out (a backtest
        asks only for what it can trade or holds); every row kept is the row the full chain has."""


def within_dte(chain: pd.DataFrame, day: dt.date, max_dte: int | None) -> pd.DataFrame:
    """The rows of ``chain`` expiring at most ``max_dte`` calendar days after ``day`` (all when None)."""
    if max_dte is None:
        return chain
    return chain[(days_to_expiry(chain, day) <= max_dte).to_numpy()]
