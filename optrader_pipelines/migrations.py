"""Versioned schema migrations of the warehouse (DuckDB and Postgres alike).

Each migration has a version, a name and its statements, written in the SQL both engines accept
(``DOUBLE PRECISION``, ``VARCHAR``, ``TIMESTAMP``); a migration may add statements for one engine
only (the audit log's append-only trigger is Postgres's). :meth:`Warehouse.migrate` applies the
pending ones in order, each in its own transaction together with its row in ``schema_migrations``
(version, name, checksum, time). The checksum of an applied migration is checked on every start:
editing a migration that a warehouse already has is an error, as is a warehouse newer than the
code. Add a migration, never change one.

The per-day asset tables (``option_chains`` ...) are not migrated: they follow their asset's frame
(see :meth:`Warehouse.replace_day`). Versions 1 and 2 use ``IF NOT EXISTS`` so that warehouses
made before migrations existed adopt them unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

LEDGER_DDL = [
    """CREATE TABLE IF NOT EXISTS broker_orders (
        order_id VARCHAR PRIMARY KEY,
        idempotency_key VARCHAR UNIQUE NOT NULL,
        account VARCHAR NOT NULL,
        trade_date DATE NOT NULL,
        position_id VARCHAR,
        action VARCHAR NOT NULL,
        strategy VARCHAR,
        underlying VARCHAR,
        expiration DATE,
        legs VARCHAR NOT NULL,
        quantity INTEGER NOT NULL,
        limit_price DOUBLE PRECISION,
        fill_price DOUBLE PRECISION,
        commission DOUBLE PRECISION,
        cash_flow DOUBLE PRECISION,
        status VARCHAR NOT NULL,
        reason VARCHAR,
        created_at TIMESTAMP NOT NULL,
        run_id VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS positions (
        position_id VARCHAR PRIMARY KEY,
        account VARCHAR NOT NULL,
        opened_date DATE NOT NULL,
        underlying VARCHAR NOT NULL,
        strategy VARCHAR NOT NULL,
        expiration DATE NOT NULL,
        settlement VARCHAR NOT NULL,
        legs VARCHAR NOT NULL,
        quantity INTEGER NOT NULL,
        entry_price DOUBLE PRECISION NOT NULL,
        max_profit DOUBLE PRECISION NOT NULL,
        max_loss DOUBLE PRECISION NOT NULL,
        collateral DOUBLE PRECISION NOT NULL,
        closed_date DATE,
        exit_price DOUBLE PRECISION,
        realized_pnl DOUBLE PRECISION,
        close_reason VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS kill_switch_events (
        event_id VARCHAR PRIMARY KEY,
        account VARCHAR NOT NULL,
        engaged BOOLEAN NOT NULL,
        reason VARCHAR NOT NULL,
        actor VARCHAR NOT NULL,
        event_at TIMESTAMP NOT NULL,
        run_id VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS risk_snapshots (
        snapshot_id VARCHAR PRIMARY KEY,
        account VARCHAR NOT NULL,
        taken_at TIMESTAMP NOT NULL,
        trade_date DATE NOT NULL,
        nlv DOUBLE PRECISION, cash DOUBLE PRECISION, positions_value DOUBLE PRECISION, open_positions INTEGER,
        pnl_since_close DOUBLE PRECISION, daily_return DOUBLE PRECISION, drawdown DOUBLE PRECISION,
        delta_usd DOUBLE PRECISION, gamma_usd DOUBLE PRECISION, vega_usd DOUBLE PRECISION, theta_usd DOUBLE PRECISION,
        buying_power_used DOUBLE PRECISION, var95_historical DOUBLE PRECISION, var95_parametric DOUBLE PRECISION, var_days INTEGER,
        breaches VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS cash_ledger (
        entry_id VARCHAR PRIMARY KEY,
        account VARCHAR NOT NULL,
        trade_date DATE NOT NULL,
        amount DOUBLE PRECISION NOT NULL,
        kind VARCHAR NOT NULL,
        ref VARCHAR,
        run_id VARCHAR
    )""",
]

DAYS_DDL = """CREATE TABLE IF NOT EXISTS backtest_days (
    account VARCHAR NOT NULL,
    trade_date DATE NOT NULL,
    nlv DOUBLE PRECISION NOT NULL, cash DOUBLE PRECISION NOT NULL, positions_value DOUBLE PRECISION NOT NULL, open_positions INTEGER NOT NULL,
    realized_pnl DOUBLE PRECISION NOT NULL, orders_filled INTEGER NOT NULL, positions_closed INTEGER NOT NULL,
    settled INTEGER NOT NULL, run_id VARCHAR,
    PRIMARY KEY (account, trade_date)
)"""

TT_ORDERS_DDL = """CREATE TABLE IF NOT EXISTS tastytrade_orders (
    order_id VARCHAR PRIMARY KEY,
    idempotency_key VARCHAR UNIQUE NOT NULL,
    account VARCHAR NOT NULL,
    mode VARCHAR NOT NULL,
    broker_order_id BIGINT,
    status VARCHAR NOT NULL,
    buying_power_change DOUBLE PRECISION,
    buying_power_effect VARCHAR,
    margin_change DOUBLE PRECISION,
    fees DOUBLE PRECISION,
    warnings VARCHAR,
    updated_at TIMESTAMP NOT NULL
)"""
TT_BALANCES_DDL = """CREATE TABLE IF NOT EXISTS tastytrade_balances (
    account VARCHAR NOT NULL, as_of DATE NOT NULL, cash_balance DOUBLE PRECISION, net_liquidating_value DOUBLE PRECISION,
    derivative_buying_power DOUBLE PRECISION, maintenance_requirement DOUBLE PRECISION, synced_at TIMESTAMP NOT NULL,
    PRIMARY KEY (account, as_of)
)"""
TT_POSITIONS_DDL = """CREATE TABLE IF NOT EXISTS tastytrade_positions (
    account VARCHAR NOT NULL, as_of DATE NOT NULL, symbol VARCHAR NOT NULL, underlying VARCHAR,
    instrument_type VARCHAR, quantity DOUBLE PRECISION, average_open_price DOUBLE PRECISION, close_price DOUBLE PRECISION,
    multiplier DOUBLE PRECISION, synced_at TIMESTAMP NOT NULL, PRIMARY KEY (account, as_of, symbol)
)"""

AUDIT_DDL = """CREATE TABLE IF NOT EXISTS audit_log (
    audit_id VARCHAR PRIMARY KEY,
    event_at TIMESTAMP NOT NULL,
    action VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    account VARCHAR NOT NULL,
    subject VARCHAR,
    run_id VARCHAR,
    details VARCHAR NOT NULL
)"""

# Postgres refuses any change to an audit row (DuckDB has no triggers: there the Warehouse refuses
# UPDATE, DELETE, TRUNCATE and DROP statements on audit_log before they reach the engine).
AUDIT_APPEND_ONLY_PG = [
    """CREATE OR REPLACE FUNCTION optrader_audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION optrader_audit_log_append_only()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION optrader_audit_log_append_only()""",
]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    postgres_only: tuple[str, ...] = field(default=())

    def statements_for(self, dialect: str) -> list[str]:
        return list(self.statements) + (list(self.postgres_only) if dialect == "postgres" else [])

    @property
    def checksum(self) -> str:
        text = "\n;\n".join(self.statements) + "\n--postgres--\n" + "\n;\n".join(self.postgres_only)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger: orders, positions, cash, kill switch, risk snapshots", tuple(LEDGER_DDL)),
    Migration(2, "tastytrade orders, balances, positions; backtest days",
              (TT_ORDERS_DDL, TT_BALANCES_DDL, TT_POSITIONS_DDL, DAYS_DDL)),
    Migration(3, "append-only audit log of trading actions",
              (AUDIT_DDL, "CREATE INDEX IF NOT EXISTS audit_log_account_time ON audit_log (account, event_at)"),
              tuple(AUDIT_APPEND_ONLY_PG)),
)

MIGRATIONS_DDL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL
)"""

LATEST = MIGRATIONS[-1].version
