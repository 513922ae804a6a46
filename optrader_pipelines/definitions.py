"""The one place that binds the Dagster layer (assets, sensors, resources) to the domain core.

``workspace.yaml`` loads this module. Configuration comes from ``OPTRADER_*`` environment
variables (see the README); :func:`build_definitions` takes explicit settings for tests.
"""

from __future__ import annotations

import dagster as dg

from assets import BACKTEST_ASSETS, DAILY_ASSETS, DAILY_CHECKS, trading_day_partitions
from optrader_pipelines.config import ConfigError, Settings
from resources import (
    BacktestSettingsResource,
    FilesMarketResource,
    NotifierResource,
    PaperBrokerResource,
    SyntheticMarketResource,
    TastytradeBrokerResource,
    TastytradeCredentials,
    TastytradeMarketResource,
    TradingSettingsResource,
    WarehouseIOManager,
    WarehouseResource,
)
from jobs import engage_kill_switch_job, position_adjustment_job, release_kill_switch_job
from sensors import daily_run_schedule, intraday_risk_sensor, position_adjustment_sensor, run_failure_alert_sensor

daily_run_job = dg.define_asset_job(
    "daily_run_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=trading_day_partitions,
    # DuckDB allows one writer process: run every step in the run's own process.
    executor_def=dg.in_process_executor,
    # one run that writes the trading book at a time (deploy/dagster.yaml's tag concurrency limit)
    tags={"optrader/book": "trading"},
    description="Chains -> Greeks -> scored opportunities -> ranked signals -> safety-checked orders -> report.",
)


def market_resource(settings: Settings):
    if settings.market == "synthetic":
        import os

        strikes = int(os.environ.get("OPTRADER_SYNTHETIC_STRIKES") or "20")
        return SyntheticMarketResource(seed=settings.seed, universe=list(settings.universe), strikes_per_side=strikes)
    if settings.market == "files":
        if settings.history_dir is None:
            raise ConfigError("OPTRADER_MARKET=files needs OPTRADER_HISTORY_DIR (a folder of vendor CSV files)")
        return FilesMarketResource(history_dir=str(settings.history_dir), universe=list(settings.universe))
    if settings.market == "tastytrade":
        if not settings.universe:
            raise ConfigError("OPTRADER_MARKET=tastytrade needs OPTRADER_UNIVERSE (the symbols to trade)")
        return TastytradeMarketResource(credentials=tastytrade_credentials(settings), universe=list(settings.universe))
    raise ConfigError(f"OPTRADER_MARKET={settings.market} is not one of synthetic, files, tastytrade")


TASTYTRADE_SECRETS = ("OPTRADER_TASTYTRADE_SECRET", "OPTRADER_TASTYTRADE_REFRESH_TOKEN", "OPTRADER_TASTYTRADE_ACCOUNT")


def tastytrade_credentials(settings: Settings) -> TastytradeCredentials:
    """Credentials bound through dg.EnvVar (resolved at run time, never shown in the UI)."""
    import os

    missing = [v for v in TASTYTRADE_SECRETS if not os.environ.get(v)]
    if missing:
        raise ConfigError(f"tastytrade needs {', '.join(missing)} (see README: tastytrade)")
    return TastytradeCredentials(
        provider_secret=dg.EnvVar("OPTRADER_TASTYTRADE_SECRET"), refresh_token=dg.EnvVar("OPTRADER_TASTYTRADE_REFRESH_TOKEN"),
        account_number=dg.EnvVar("OPTRADER_TASTYTRADE_ACCOUNT"), sandbox=settings.tastytrade_sandbox,
        dry_run=settings.tastytrade_dry_run, live=settings.tastytrade_live,
        confirm_live=os.environ.get("OPTRADER_TASTYTRADE_CONFIRM_LIVE", ""), api_url=settings.tastytrade_api_url,
        notifier=notifier_resource(settings))


def warehouse_config(settings: Settings) -> dict:
    """Where the warehouse is, for every resource that opens it: the DuckDB file, and the Postgres
    URL through dg.EnvVar when OPTRADER_WAREHOUSE_URL is set (its password never reaches the UI)."""
    cfg = {"duckdb_path": str(settings.duckdb_path)}
    if settings.warehouse_url:
        import os

        if os.environ.get("OPTRADER_WAREHOUSE_URL", "").strip() == settings.warehouse_url:
            cfg["warehouse_url"] = dg.EnvVar("OPTRADER_WAREHOUSE_URL")
        else:  # settings built in code (tests): the value itself
            cfg["warehouse_url"] = settings.warehouse_url
    return cfg


def broker_resource(settings: Settings):
    wh = warehouse_config(settings)
    if settings.broker == "tastytrade":
        return TastytradeBrokerResource(**wh, credentials=tastytrade_credentials(settings),
                                        fill_fraction=settings.fill_fraction)
    return PaperBrokerResource(**wh, account=settings.account, fill_fraction=settings.fill_fraction,
                               commission_per_contract=settings.commission_per_contract,
                               starting_cash=settings.starting_cash)


def notifier_resource(settings: Settings) -> NotifierResource:
    """Secrets go through dg.EnvVar (resolved at run time, never shown in the UI), and only when set."""
    import os

    secrets = {}
    if os.environ.get("OPTRADER_SMTP_PASSWORD"):
        secrets["smtp_password"] = dg.EnvVar("OPTRADER_SMTP_PASSWORD")
    if os.environ.get("OPTRADER_WEBHOOK_URL"):
        secrets["webhook_url"] = dg.EnvVar("OPTRADER_WEBHOOK_URL")
    if settings.notifier == "webhook" and "webhook_url" not in secrets:
        raise ConfigError("OPTRADER_NOTIFIER=webhook needs OPTRADER_WEBHOOK_URL")
    if settings.notifier == "email" and not settings.smtp_to:
        raise ConfigError("OPTRADER_NOTIFIER=email needs OPTRADER_SMTP_TO (comma-separated recipients)")
    return NotifierResource(kind=settings.notifier, smtp_host=settings.smtp_host, smtp_port=settings.smtp_port,
                            smtp_from=settings.smtp_from, smtp_to=settings.smtp_to,
                            smtp_username=settings.smtp_username, smtp_starttls=settings.smtp_starttls, **secrets)


def build_resources(settings: Settings) -> dict:
    wh = warehouse_config(settings)
    market = market_resource(settings)
    return {
        "market": market,
        "warehouse": WarehouseResource(**wh),
        "warehouse_io_manager": WarehouseIOManager(**wh),
        "broker": broker_resource(settings),
        "notifier": notifier_resource(settings),
        "backtest": BacktestSettingsResource(fill_fraction=settings.fill_fraction,
                                             commission_per_contract=settings.commission_per_contract,
                                             starting_cash=settings.starting_cash, risk_profile=settings.risk_profile,
                                             risk_level=settings.risk_level, top_n=settings.top_n,
                                             management_rules=settings.management_rules),
        "settings": TradingSettingsResource(risk_profile=settings.risk_profile, risk_level=settings.risk_level,
                                            top_n=settings.top_n, report_dir=str(settings.report_dir),
                                            market_label=market.label, management_rules=settings.management_rules),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=[*DAILY_ASSETS, *BACKTEST_ASSETS],
        asset_checks=DAILY_CHECKS,
        jobs=[daily_run_job, position_adjustment_job, engage_kill_switch_job, release_kill_switch_job],
        schedules=[daily_run_schedule],
        sensors=[intraday_risk_sensor, position_adjustment_sensor, run_failure_alert_sensor],
        resources=build_resources(settings),
    )


defs = build_definitions()
