"""Dagster resources: thin configurable wrappers over the domain core."""

from .backtest import BacktestSettingsResource
from .broker import PaperBrokerResource
from .market import FilesMarketResource, MarketResource, SyntheticMarketResource
from .notifier import NotifierResource
from .settings import TradingSettingsResource
from .warehouse import WarehouseIOManager, WarehouseResource

__all__ = [
    "BacktestSettingsResource", "FilesMarketResource", "MarketResource", "NotifierResource", "PaperBrokerResource", "SyntheticMarketResource",
    "TradingSettingsResource", "WarehouseIOManager", "WarehouseResource",
]
