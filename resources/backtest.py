"""Backtest settings: the fill model, costs and rules a backfill replays the book with."""

import dagster as dg

from optrader_pipelines.backtest import BacktestConfig


class BacktestSettingsResource(dg.ConfigurableResource):
    starting_cash: float = 5_000.0
    fill_fraction: float = 0.5
    slippage: float = 0.0
    commission_per_contract: float = 0.65
    risk_profile: str = "small_account"
    risk_level: str = "moderate"
    top_n: int = 4
    management_rules: str = ""

    def config(self, market_label: str) -> BacktestConfig:
        return BacktestConfig(self.starting_cash, self.fill_fraction, self.slippage, self.commission_per_contract,
                              self.risk_profile, self.risk_level, self.top_n, self.management_rules, market_label)
