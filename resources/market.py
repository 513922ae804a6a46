"""Market-data resources: one interface, a synthetic (offline) and a vendor-files implementation."""

from __future__ import annotations

import datetime as dt
from abc import abstractmethod

import dagster as dg

from optrader_pipelines.market import ChainLoad
from optrader_pipelines.market.files import FilesMarket
from optrader_pipelines.market.synthetic import SyntheticMarket

from .broker import TastytradeCredentials


class MarketResource(dg.ConfigurableResource):
    """Where the day's option chains come from."""

    @abstractmethod
    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        """The day's chain (see ``optrader_pipelines.market.MarketSource.load_chain``)."""

    @property
    @abstractmethod
    def label(self) -> str: ...

    def intraday(self):
        """The source of intraday marks (``intraday_quotes(legs, at)``, ``closes(symbol, end, n)``),
        or None when this market has none."""
        return None


class SyntheticMarketResource(MarketResource):
    """Deterministic synthetic market: same seed and date, same chain; no network."""

    seed: int = 7
    universe: list[str] = []
    strikes_per_side: int = 20

    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        return SyntheticMarket(tuple(self.universe), self.seed, self.strikes_per_side).load_chain(day, max_dte)

    def intraday(self) -> SyntheticMarket:
        return SyntheticMarket(tuple(self.universe), self.seed, self.strikes_per_side)

    @property
    def label(self) -> str:
        return f"synthetic (seed {self.seed})"


class FilesMarketResource(MarketResource):
    """End-of-day chains from vendor files under ``history_dir``."""

    history_dir: str
    universe: list[str] = []
    risk_free_rate: float = 0.02

    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        return FilesMarket(self.history_dir, tuple(self.universe), self.risk_free_rate).load_chain(day, max_dte)

    @property
    def label(self) -> str:
        return f"files ({self.history_dir})"


class TastytradeMarketResource(MarketResource):
    """Live chains and quotes from tastytrade (nested chains, market-data endpoint); the Greeks are
    still ours. Live data only: backtests use the files market."""

    credentials: TastytradeCredentials
    universe: list[str] = []
    risk_free_rate: float = 0.04
    max_dte: int = 70
    strikes_per_side: int = 10

    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        from optrader_pipelines.tastytrade import TastytradeMarket

        client = self.credentials.client()
        try:
            return TastytradeMarket(client, tuple(self.universe), self.risk_free_rate, self.max_dte,
                                    self.strikes_per_side).load_chain(day, max_dte)
        finally:
            client.close()

    @property
    def label(self) -> str:
        return f"tastytrade ({'sandbox' if self.credentials.sandbox else 'production'})"
