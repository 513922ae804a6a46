"""Settings read from ``OPTRADER_*`` environment variables (documented in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MARKETS = ("synthetic", "files", "tastytrade")
BROKERS = ("paper", "tastytrade")
RISK_PROFILES = ("small_account", "moderate")
RISK_LEVELS = ("low", "moderate", "high")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _env(name, default)
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _number(name: str, default: float, cast=float, minimum: float | None = None):
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = cast(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a valid {cast.__name__}") from exc
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false)")


def _universe(name: str) -> tuple[str, ...]:
    raw = _env(name)
    if raw is None:
        return ()
    symbols = tuple(s.strip().upper() for s in raw.split(",") if s.strip())
    if not symbols:
        raise ConfigError(f"{name}={raw!r} names no symbol")
    return symbols


def _management_rules(name: str) -> str:
    from .management import rulebook_from_json

    raw = _env(name, "") or ""
    try:
        rulebook_from_json(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return raw


def _warehouse_url(name: str) -> str:
    from .storage import is_postgres_url, redact_url

    raw = _env(name, "") or ""
    if raw and not is_postgres_url(raw):
        raise ConfigError(f"{name}={redact_url(raw)!r} is not a postgresql:// URL "
                          "(leave it unset for the embedded DuckDB warehouse, OPTRADER_DUCKDB_PATH)")
    return raw


@dataclass(frozen=True)
class Settings:
    market: str = "synthetic"
    history_dir: Path | None = None
    duckdb_path: Path = Path("data/optrader.duckdb")
    warehouse_url: str = field(default="", repr=False)  # may hold a password: never shown
    report_dir: Path = Path("data/reports")
    risk_profile: str = "small_account"
    risk_level: str = "moderate"
    universe: tuple[str, ...] = ()
    seed: int = 7
    account: str = "paper"
    starting_cash: float = 5_000.0
    top_n: int = 4
    fill_fraction: float = 0.5
    commission_per_contract: float = 0.65
    management_rules: str = ""
    notifier: str = "log"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "optrader@localhost"
    smtp_to: str = ""
    smtp_username: str = ""
    smtp_starttls: bool = False
    broker: str = "paper"
    tastytrade_sandbox: bool = True
    tastytrade_dry_run: bool = True
    tastytrade_live: bool = False
    tastytrade_api_url: str = ""

    @property
    def warehouse_target(self) -> str:
        """What :class:`~optrader_pipelines.storage.Warehouse` opens: the Postgres URL when set,
        else the DuckDB file."""
        return self.warehouse_url or str(self.duckdb_path)

    @classmethod
    def from_env(cls) -> "Settings":
        history = _env("OPTRADER_HISTORY_DIR")
        fill = _number("OPTRADER_FILL_FRACTION", 0.5, float, 0.0)
        if fill > 1.0:
            raise ConfigError(f"OPTRADER_FILL_FRACTION={fill} must be within [0, 1]")
        return cls(
            market=_choice("OPTRADER_MARKET", "synthetic", MARKETS),
            history_dir=Path(history) if history else None,
            duckdb_path=Path(_env("OPTRADER_DUCKDB_PATH", "data/optrader.duckdb")),
            warehouse_url=_warehouse_url("OPTRADER_WAREHOUSE_URL"),
            report_dir=Path(_env("OPTRADER_REPORT_DIR", "data/reports")),
            risk_profile=_choice("OPTRADER_RISK_PROFILE", "small_account", RISK_PROFILES),
            risk_level=_choice("OPTRADER_RISK_LEVEL", "moderate", RISK_LEVELS),
            universe=_universe("OPTRADER_UNIVERSE"),
            seed=_number("OPTRADER_SEED", 7, int, 0),
            account=_env("OPTRADER_ACCOUNT", "paper"),
            starting_cash=_number("OPTRADER_STARTING_CASH", 5_000.0, float, 0.0),
            top_n=_number("OPTRADER_TOP_N", 4, int, 1),
            fill_fraction=fill,
            commission_per_contract=_number("OPTRADER_COMMISSION", 0.65, float, 0.0),
            management_rules=_management_rules("OPTRADER_MANAGEMENT_RULES"),
            notifier=_choice("OPTRADER_NOTIFIER", "log", ("log", "email", "webhook")),
            smtp_host=_env("OPTRADER_SMTP_HOST", "127.0.0.1"),
            smtp_port=_number("OPTRADER_SMTP_PORT", 25, int, 1),
            smtp_from=_env("OPTRADER_SMTP_FROM", "optrader@localhost"),
            smtp_to=_env("OPTRADER_SMTP_TO", "") or "",
            smtp_username=_env("OPTRADER_SMTP_USERNAME", "") or "",
            smtp_starttls=_choice("OPTRADER_SMTP_STARTTLS", "0", ("0", "1")) == "1",
            broker=_choice("OPTRADER_BROKER", "paper", BROKERS),
            tastytrade_sandbox=_flag("OPTRADER_TASTYTRADE_SANDBOX", True),
            tastytrade_dry_run=_flag("OPTRADER_TASTYTRADE_DRY_RUN", True),
            tastytrade_live=_flag("OPTRADER_TASTYTRADE_LIVE", False),
            tastytrade_api_url=_env("OPTRADER_TASTYTRADE_API_URL", "") or "",
        )
