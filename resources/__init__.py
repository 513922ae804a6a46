"""Dagster resources: thin configurable wrappers over the domain core."""

from .backtest import BacktestSettingsResource
from .broker import BrokerResource, PaperBrokerResource, TastytradeBrokerResource, TastytradeCredentials
from .market import FilesMarketResource, MarketResource, SyntheticMarketResource, TastytradeMarketResource
from .notifier import NotifierResource
from .settings import TradingSettingsResource
from .warehouse import WarehouseIOManager, WarehouseResource

__all__ = [
    "BacktestSettingsResource", "BrokerResource", "TastytradeBrokerResource", "TastytradeCredentials", "TastytradeMarketResource", "FilesMarketResource", "MarketResource", "NotifierResource", "PaperBrokerResource", "SyntheticMarketResource",
    "TradingSettingsResource", "WarehouseIOManager", "WarehouseResource",
]
