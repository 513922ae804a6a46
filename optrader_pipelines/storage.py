"""The warehouse: one DuckDB file (embedded default).

Every asset writes a table named after it, keyed by ``trade_date`` and carrying the Dagster
``run_id`` of the run that wrote it. :meth:`Warehouse.replace_day` deletes the day's rows and
inserts the new ones in one transaction: re-materializing a day replaces it, never duplicates it,
and a failure leaves the previous rows in place.

The paper broker's ledger (orders, positions, cash) lives here too, with deterministic ids so a
repeated write is a no-op. Connections are short-lived: DuckDB allows one writer process, and a
connection held open would lock out the webserver and other runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from pathlib import Path

import duckdb
import pandas as pd

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCK = threading.RLock()

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
        limit_price DOUBLE,
        fill_price DOUBLE,
        commission DOUBLE,
        cash_flow DOUBLE,
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
        entry_price DOUBLE NOT NULL,
        max_profit DOUBLE NOT NULL,
        max_loss DOUBLE NOT NULL,
        collateral DOUBLE NOT NULL,
        closed_date DATE,
        exit_price DOUBLE,
        realized_pnl DOUBLE,
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
        nlv DOUBLE, cash DOUBLE, positions_value DOUBLE, open_positions INTEGER,
        pnl_since_close DOUBLE, daily_return DOUBLE, drawdown DOUBLE,
        delta_usd DOUBLE, gamma_usd DOUBLE, vega_usd DOUBLE, theta_usd DOUBLE,
        buying_power_used DOUBLE, var95_historical DOUBLE, var95_parametric DOUBLE, var_days INTEGER,
        breaches VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS cash_ledger (
        entry_id VARCHAR PRIMARY KEY,
        account VARCHAR NOT NULL,
        trade_date DATE NOT NULL,
        amount DOUBLE NOT NULL,
        kind VARCHAR NOT NULL,
        ref VARCHAR,
        run_id VARCHAR
    )""",
]


class WarehouseError(RuntimeError):
    pass


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise WarehouseError(f"invalid table or column name {name!r}")
    return f'"{name}"'


def _duck_type(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(dtype):
        return "BIGINT"
    if pd.api.types.is_float_dtype(dtype):
        return "DOUBLE"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "TIMESTAMP"
    return "VARCHAR"


class Warehouse:
    """A DuckDB warehouse file; every public method opens and closes its own connection."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._session = None

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):
        if self._session is not None:  # inside session(): the one open connection
            yield self._session
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK:
            con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
            try:
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def session(self):
        """Hold one connection for every call inside the block (a backtest day makes ~20 calls,
        and opening the file costs ~30 ms each); the file is locked for the block's duration."""
        if self._session is not None:
            yield self
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK:
            con = duckdb.connect(str(self.path))
            self._session = con
            try:
                yield self
            finally:
                self._session = None
                con.close()

    def ensure_ledger(self) -> None:
        with self.connect() as con:
            for ddl in LEDGER_DDL:
                con.execute(ddl)

    def tables(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.connect() as con:
            return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]

    def _sync_columns(self, con, table: str, df: pd.DataFrame) -> None:
        """Add the frame's new columns; give a column the table got from an empty day (DuckDB
        types an all-null column as NULL) the type the incoming rows have."""
        existing = {r[0]: r[1] for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
        incoming = {r[0]: r[1] for r in con.execute("DESCRIBE incoming").fetchall()}
        for col in df.columns:
            if col not in existing:
                con.execute(f"ALTER TABLE {_ident(table)} ADD COLUMN {_ident(col)} {_duck_type(df[col].dtype)}")
            elif existing[col] == '"NULL"' or existing[col] == "NULL":
                new_type = incoming.get(col, "NULL")
                if new_type not in ("NULL", '"NULL"'):
                    con.execute(f"ALTER TABLE {_ident(table)} ALTER {_ident(col)} TYPE {new_type}")

    def replace_day(self, table: str, trade_date: dt.date, df: pd.DataFrame, run_id: str) -> int:
        """Atomically replace ``table``'s rows for ``trade_date`` with ``df`` (plus trade_date, run_id)."""
        data = df.copy()
        data.insert(0, "trade_date", pd.Timestamp(trade_date))
        data["run_id"] = run_id
        cols = ", ".join(_ident(c) for c in data.columns)
        with self.connect() as con:
            con.register("incoming", data)
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"CREATE TABLE IF NOT EXISTS {_ident(table)} AS SELECT * FROM incoming LIMIT 0")
                con.execute(f"ALTER TABLE {_ident(table)} ALTER trade_date TYPE DATE")
                self._sync_columns(con, table, data)
                con.execute(f"DELETE FROM {_ident(table)} WHERE trade_date = ?", [trade_date])
                con.execute(f"INSERT INTO {_ident(table)} ({cols}) SELECT {cols} FROM incoming")
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("incoming")
        return len(data)

    def read_day(self, table: str, trade_date: dt.date) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            try:
                df = con.execute(f"SELECT * FROM {_ident(table)} WHERE trade_date = ?", [trade_date]).df()
            except duckdb.CatalogException as exc:
                raise WarehouseError(f"table {table} does not exist in {self.path}") from exc
        return df.drop(columns=["trade_date", "run_id"])

    def count(self, table: str, trade_date: dt.date | None = None) -> int:
        with self.connect(read_only=True) as con:
            if trade_date is None:
                return con.execute(f"SELECT count(*) FROM {_ident(table)}").fetchone()[0]
            return con.execute(f"SELECT count(*) FROM {_ident(table)} WHERE trade_date = ?", [trade_date]).fetchone()[0]

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def execute_many(self, statements: list[tuple[str, list]]) -> None:
        """Run statements in one transaction (all or nothing)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for sql, params in statements:
                    con.execute(sql, params)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
