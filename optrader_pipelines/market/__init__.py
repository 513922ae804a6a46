"""Market sources: each turns a trading day into a chain in the :mod:`optrader_pipelines.chain` schema."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass

import pandas as pd

from ..chain import DropLog


@dataclass
class ChainLoad:
    """A day's chain plus the rows the source dropped (with counts and reasons)."""

    chain: pd.DataFrame
    drops: DropLog
    sources: list[str]


class MarketSource(ABC):
    name: str = "abstract"

    @abstractmethod
    def load_chain(self, day: dt.date) -> ChainLoad:
        """Return the end-of-day chain for ``day``; raise ChainError naming what is wrong."""
