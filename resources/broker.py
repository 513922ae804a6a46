"""Broker resources. The paper broker is the default; live brokers come with their own issue."""

from __future__ import annotations

import dagster as dg

from optrader_pipelines.broker import PaperBroker
from optrader_pipelines.storage import Warehouse


class PaperBrokerResource(dg.ConfigurableResource):
    """Internal paper broker: fills between mid and the touch, commission per contract, a ledger
    of orders, positions and cash in the warehouse, settlement at expiration."""

    duckdb_path: str = "data/optrader.duckdb"
    account: str = "paper"
    fill_fraction: float = 0.5
    commission_per_contract: float = 0.65
    starting_cash: float = 5_000.0

    def get(self) -> PaperBroker:
        return PaperBroker(Warehouse(self.duckdb_path), self.account, self.fill_fraction,
                           self.commission_per_contract, self.starting_cash)
