"""Broker resources: the internal paper broker (default) and tastytrade through its SDK."""

import dataclasses
import logging
from abc import abstractmethod

import dagster as dg
from pydantic import PrivateAttr

from optrader_pipelines.broker import PaperBroker
from optrader_pipelines.storage import Warehouse

from .notifier import NotifierResource

log = logging.getLogger(__name__)


class BrokerResource(dg.ConfigurableResource):
    """Where orders go; ``get()`` returns the domain broker (the book lives in the warehouse)."""

    duckdb_path: str = "data/optrader.duckdb"
    warehouse_url: str = ""  # a postgresql:// URL (bound through dg.EnvVar): the Postgres warehouse
    fill_fraction: float = 0.5
    commission_per_contract: float = 0.65

    # ``account``: the book's account name (a field of the paper broker, derived for tastytrade)

    @abstractmethod
    def get(self) -> PaperBroker: ...

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_url or self.duckdb_path)


class PaperBrokerResource(BrokerResource):
    """Internal paper broker: fills between mid and the touch, commission per contract, a ledger
    of orders, positions and cash in the warehouse, settlement at expiration."""

    account: str = "paper"
    starting_cash: float = 5_000.0

    def get(self) -> PaperBroker:
        return PaperBroker(self.warehouse(), self.account, self.fill_fraction,
                           self.commission_per_contract, self.starting_cash)


class TastytradeCredentials(dg.ConfigurableResource):
    """tastytrade OAuth credentials and connection settings. Bind the secrets with ``dg.EnvVar``:
    Dagster shows the variable's name, never its value."""

    provider_secret: str
    refresh_token: str
    account_number: str
    sandbox: bool = True
    dry_run: bool = True
    live: bool = False
    confirm_live: str = ""
    api_url: str = ""
    timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    orders_per_minute: int = 60
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 60.0
    # where the circuit breaker's alert goes (besides the log): the desk's notifier
    notifier: NotifierResource | None = None  # None: the log only

    def config(self):
        from optrader_pipelines.tastytrade import TastytradeConfig

        return TastytradeConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TastytradeConfig)})

    def alert(self, text: str) -> None:
        """The breaker opened: log it and send a critical alert through the notifier. A failed
        delivery is logged, never raised (the breaker must still stop the calls)."""
        from optrader_pipelines.notify import Message, NotifyError

        log.error("ALERT: %s", text)
        if self.notifier is None:
            return
        try:
            self.notifier.get().send(Message("optrader: tastytrade circuit breaker open", text, severity="critical"))
        except (NotifyError, ValueError) as exc:
            log.error("the tastytrade alert could not be delivered: %s", exc)

    def client(self):
        from optrader_pipelines.tastytrade import TastytradeClient

        return TastytradeClient(self.config(), alert=self.alert)


class TastytradeBrokerResource(BrokerResource):
    """Orders through tastytrade (dry run by default; sandbox or, behind the live guard, production);
    the book is kept in the warehouse under ``tastytrade:<account number>``."""

    credentials: TastytradeCredentials
    commission_per_contract: float = 1.0
    _broker = PrivateAttr(default=None)

    @property
    def account(self) -> str:
        return f"tastytrade:{self.credentials.account_number}"

    def get(self):
        from optrader_pipelines.tastytrade import TastytradeBroker

        if self._broker is None:
            self._broker = TastytradeBroker(self.warehouse(), self.credentials.client(),
                                            self.commission_per_contract)
        return self._broker

    def teardown_after_execution(self, context) -> None:
        if self._broker is not None:
            self._broker.client.close()
            self._broker = None
