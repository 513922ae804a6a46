"""Dagster assets of the daily run: thin layers over optrader_pipelines."""

from .backtest import BACKTEST_ASSETS
from .market_data import option_chains, option_chains_expectations, option_greeks, option_greeks_expectations
from .partitions import trading_day_partitions
from .reporting import daily_report
from .trading import position_actions, ranked_signals, safety_checked_orders, scored_opportunities

DAILY_ASSETS = [option_chains, option_greeks, scored_opportunities, position_actions, ranked_signals,
                safety_checked_orders, daily_report]
DAILY_CHECKS = [option_chains_expectations, option_greeks_expectations]

__all__ = ["BACKTEST_ASSETS", "DAILY_ASSETS", "DAILY_CHECKS", "trading_day_partitions"]
