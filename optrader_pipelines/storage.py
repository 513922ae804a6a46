"""The warehouse: one DuckDB file (embedded default) or a Postgres database.

``Warehouse(target)`` opens the engine the target names: a ``postgresql://`` (or ``postgres://``)
URL gives :class:`PostgresWarehouse`, anything else is a DuckDB file path (:class:`DuckDBWarehouse`).
Both offer the same methods and the same guarantees, and the rest of the code speaks only to them
with ``?`` placeholders (translated for Postgres).

Every asset writes a table named after it, keyed by ``trade_date`` and carrying the Dagster
``run_id`` of the run that wrote it. :meth:`Warehouse.replace_day` deletes the day's rows and
inserts the new ones in one transaction: re-materializing a day replaces it, never duplicates it,
and a failure leaves the previous rows in place. On Postgres the write holds a per-table advisory
lock, so two runs writing different days of the same table at once do not race on its DDL.

The broker ledger (orders, positions, cash), the kill switch, the audit log and the other fixed
tables come from the versioned migrations (:mod:`.migrations`). Connections are short-lived:
DuckDB allows one writer process, and a connection held open would lock out the webserver and
other runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from .migrations import LATEST, MIGRATIONS, MIGRATIONS_DDL

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCK = threading.RLock()
# A statement that would change or remove audit rows (refused before it reaches DuckDB; Postgres
# refuses it with a trigger as well).
_AUDIT_WRITE = re.compile(r"^\s*(UPDATE\s+audit_log\b|DELETE\s+FROM\s+audit_log\b|TRUNCATE\s+(TABLE\s+)?audit_log\b"
                          r"|DROP\s+TABLE\s+(IF\s+EXISTS\s+)?audit_log\b|ALTER\s+TABLE\s+audit_log\b)", re.I)


class WarehouseError(RuntimeError):
    pass


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise WarehouseError(f"invalid table or column name {name!r}")
    return f'"{name}"'


def is_postgres_url(target) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password (for logs, metadata and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


def _guard_audit(sql: str) -> None:
    if _AUDIT_WRITE.match(sql):
        raise WarehouseError("audit_log is append-only: updates, deletes, truncation and drops are refused")


def _py(value):
    """A parameter as a plain Python value both drivers adapt."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if value is pd.NaT:
        return None
    return value


class Warehouse:
    """The warehouse interface; ``Warehouse(target)`` returns the engine the target names."""

    dialect = "abstract"

    def __new__(cls, target=None, *args, **kwargs):
        if cls is Warehouse:
            cls = PostgresWarehouse if is_postgres_url(target) else DuckDBWarehouse
        return super().__new__(cls)

    # -- each engine provides -----------------------------------------------------------------
    @property
    def label(self) -> str:
        """Where the warehouse is, safe to show (no password)."""
        raise NotImplementedError

    def _open(self, read_only: bool = False):
        """A context manager giving a new connection, closed on exit."""
        raise NotImplementedError

    def tables(self) -> list[str]:
        raise NotImplementedError

    def replace_day(self, table: str, trade_date: dt.date, df: pd.DataFrame, run_id: str) -> int:
        raise NotImplementedError

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        raise NotImplementedError

    def execute_many(self, statements: list[tuple[str, list]]) -> None:
        """Run statements in one transaction (all or nothing)."""
        raise NotImplementedError

    def _apply_migration(self, migration) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    _session = None

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):
        if self._session is not None:  # inside session(): the one open connection
            yield self._session
            return
        with self._open(read_only) as con:
            yield con

    @contextlib.contextmanager
    def session(self):
        """Hold one connection for every call inside the block (a backtest day makes ~20 calls,
        and opening a DuckDB file costs ~30 ms each; the file stays locked for the block)."""
        if self._session is not None:
            yield self
            return
        with self._open() as con:
            self._session = con
            try:
                yield self
            finally:
                self._session = None

    def read_day(self, table: str, trade_date: dt.date) -> pd.DataFrame:
        try:
            df = self.query(f"SELECT * FROM {_ident(table)} WHERE trade_date = ?", [trade_date])
        except WarehouseError as exc:
            raise WarehouseError(f"table {table} does not exist in {self.label}") from exc
        return df.drop(columns=["trade_date", "run_id"])

    def count(self, table: str, trade_date: dt.date | None = None) -> int:
        if trade_date is None:
            return int(self.query(f"SELECT count(*) AS n FROM {_ident(table)}")["n"].iloc[0])
        return int(self.query(f"SELECT count(*) AS n FROM {_ident(table)} WHERE trade_date = ?", [trade_date])["n"].iloc[0])

    def schema_version(self) -> int:
        if "schema_migrations" not in self.tables():
            return 0
        v = self.query("SELECT max(version) AS v FROM schema_migrations")["v"].iloc[0]
        return 0 if pd.isna(v) else int(v)

    def migrate(self) -> list[int]:
        """Apply the pending migrations in order (each with its ``schema_migrations`` row in one
        transaction); check the applied ones against the code. Returns the versions applied."""
        self.execute_many([(MIGRATIONS_DDL, [])])
        applied = self.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        known = {m.version: m for m in MIGRATIONS}
        for r in applied.itertuples(index=False):
            m = known.get(int(r.version))
            if m is None:
                raise WarehouseError(f"{self.label} has schema version {int(r.version)} ({r.name}); this code knows "
                                     f"versions up to {LATEST}: upgrade optrader before using this warehouse")
            if r.checksum != m.checksum:
                raise WarehouseError(f"migration {m.version} ({m.name}) applied to {self.label} differs from the code "
                                     f"(checksum {r.checksum} != {m.checksum}): migrations must never be edited")
        done = set(int(v) for v in applied["version"])
        ran = []
        for m in MIGRATIONS:
            if m.version not in done:
                self._apply_migration(m)
                ran.append(m.version)
        return ran

    def ensure_ledger(self) -> None:
        """The fixed tables exist and are at the code's schema version (checked once per object)."""
        if getattr(self, "_migrated", False):
            return
        self.migrate()
        self._migrated = True


# -- DuckDB --------------------------------------------------------------------------------------
class DuckDBWarehouse(Warehouse):
    """A DuckDB warehouse file; every public method opens and closes its own connection."""

    dialect = "duckdb"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def label(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def _open(self, read_only: bool = False):
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK:
            con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
            try:
                yield con
            finally:
                con.close()

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
                con.execute(f"ALTER TABLE {_ident(table)} ADD COLUMN {_ident(col)} {_column_type(df[col], 'duckdb')}")
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

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        import duckdb

        _guard_audit(sql)
        with self.connect() as con:
            try:
                return con.execute(sql, [_py(p) for p in params or []]).df()
            except duckdb.CatalogException as exc:
                raise WarehouseError(f"{exc} (in {self.label})") from exc

    def execute_many(self, statements: list[tuple[str, list]]) -> None:
        for sql, _ in statements:
            _guard_audit(sql)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for sql, params in statements:
                    con.execute(sql, [_py(p) for p in params])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def _apply_migration(self, m) -> None:
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        self.execute_many([(s, []) for s in m.statements_for(self.dialect)] + [
            ("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)", [m.version, m.name, m.checksum, now])])

    def export(self, directory: str | Path) -> None:
        """EXPORT DATABASE (Parquet) into ``directory``; see :mod:`.backup`."""
        with self.connect() as con:
            con.execute(f"EXPORT DATABASE '{_sql_path(directory)}' (FORMAT parquet)")

    def import_(self, directory: str | Path) -> None:
        with self.connect() as con:
            con.execute(f"IMPORT DATABASE '{_sql_path(directory)}'")


def _sql_path(path) -> str:
    text = str(Path(path).resolve())
    if "'" in text:
        raise WarehouseError(f"path {text!r} contains a quote")
    return text


# -- Postgres ------------------------------------------------------------------------------------
_PG_DATE, _PG_TS, _PG_TSTZ = 1082, 1114, 1184
_PG_FLOAT = {700, 701, 1700}
_PG_INT = {20, 21, 23}
_PG_BOOL = 16


def _pg_sql(sql: str) -> str:
    """``?`` placeholders to psycopg2's ``%s`` (a literal ``%`` doubled), outside quoted text."""
    out, quote = [], None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def _column_type(series: pd.Series, dialect: str = "postgres") -> str:
    """The SQL type of a frame's column (object columns by what they hold) in the dialect."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        kind = "BOOLEAN"
    elif pd.api.types.is_integer_dtype(dtype):
        kind = "BIGINT"
    elif pd.api.types.is_float_dtype(dtype):
        kind = "DOUBLE PRECISION"
    elif isinstance(dtype, pd.DatetimeTZDtype):
        kind = "TIMESTAMPTZ"
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        kind = "TIMESTAMP"
    else:
        kind = {"date": "DATE", "datetime": "TIMESTAMP", "datetime64": "TIMESTAMP", "boolean": "BOOLEAN",
                "integer": "BIGINT", "floating": "DOUBLE PRECISION", "mixed-integer-float": "DOUBLE PRECISION",
                "decimal": "DOUBLE PRECISION"}.get(pd.api.types.infer_dtype(series, skipna=True), "TEXT")
    if dialect == "duckdb":
        return {"DOUBLE PRECISION": "DOUBLE", "TEXT": "VARCHAR"}.get(kind, kind)
    return kind


def _frame(cur) -> pd.DataFrame:
    """A cursor's rows as a frame typed as DuckDB's ``.df()`` types them (dates and timestamps as
    datetime64, numbers as numbers even with NULLs)."""
    if cur.description is None:
        return pd.DataFrame()
    cols = [d.name for d in cur.description]
    df = pd.DataFrame.from_records(cur.fetchall(), columns=cols)
    for d in cur.description:
        col = d.name
        if d.type_code in (_PG_DATE, _PG_TS):
            df[col] = pd.to_datetime(df[col])
        elif d.type_code == _PG_TSTZ:
            df[col] = pd.to_datetime(df[col], utc=True)
        elif d.type_code in _PG_FLOAT:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        elif d.type_code in _PG_INT:
            df[col] = df[col].astype("Int64" if df[col].isna().any() else "int64")
        elif d.type_code == _PG_BOOL:
            df[col] = df[col].astype("boolean" if df[col].isna().any() else bool)
    return df


class PostgresWarehouse(Warehouse):
    """A Postgres warehouse (``postgresql://user[:password]@host:port/db``); connections in
    autocommit mode, transactions explicit, so a failed read never poisons a session."""

    dialect = "postgres"

    def __init__(self, url: str):
        if not is_postgres_url(url):
            raise WarehouseError(f"{redact_url(str(url))} is not a postgresql:// URL")
        self.url = url

    @property
    def label(self) -> str:
        return redact_url(self.url)

    @contextlib.contextmanager
    def _open(self, read_only: bool = False):
        import psycopg2

        try:
            con = psycopg2.connect(self.url, connect_timeout=10, application_name="optrader")
        except psycopg2.OperationalError as exc:
            raise WarehouseError(f"cannot connect to the Postgres warehouse {self.label}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None
        con.autocommit = True
        try:
            yield con
        finally:
            con.close()

    def tables(self) -> list[str]:
        with self.connect() as con, con.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
            return [r[0] for r in cur.fetchall()]

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        import psycopg2

        _guard_audit(sql)
        with self.connect() as con, con.cursor() as cur:
            try:
                cur.execute(_pg_sql(sql), [_py(p) for p in params or []])
            except psycopg2.errors.UndefinedTable as exc:
                raise WarehouseError(f"{str(exc).strip().splitlines()[0]} (in {self.label})") from exc
            return _frame(cur)

    @contextlib.contextmanager
    def _transaction(self):
        with self.connect() as con, con.cursor() as cur:
            cur.execute("BEGIN")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def execute_many(self, statements: list[tuple[str, list]]) -> None:
        for sql, _ in statements:
            _guard_audit(sql)
        with self._transaction() as cur:
            for sql, params in statements:
                cur.execute(_pg_sql(sql), [_py(p) for p in params])

    def _apply_migration(self, m) -> None:
        with self._transaction() as cur:
            # one migrator at a time; a second one waits, then finds the migration applied
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('optrader.schema_migrations'))")
            cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", [m.version])
            if cur.fetchone():
                return
            for s in m.statements_for(self.dialect):
                cur.execute(s)
            cur.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s, now() AT TIME ZONE 'UTC')",
                        [m.version, m.name, m.checksum])

    def replace_day(self, table: str, trade_date: dt.date, df: pd.DataFrame, run_id: str) -> int:
        """Atomically replace ``table``'s rows for ``trade_date`` (COPY into the table, in one
        transaction with the delete, under the table's advisory lock)."""
        data = df.copy()
        data.insert(0, "trade_date", pd.Timestamp(trade_date))
        data["run_id"] = run_id
        for col in data.columns:
            _ident(col)
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"optrader.table.{table}"])
            cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = %s", [table])
            existing = dict(cur.fetchall())
            if not existing:
                cols = ", ".join(f"{_ident(c)} {'DATE' if c == 'trade_date' else _column_type(data[c])}" for c in data.columns)
                cur.execute(f"CREATE TABLE {_ident(table)} ({cols})")
                cur.execute(f"CREATE INDEX ON {_ident(table)} (trade_date)")
            else:
                for col in data.columns:
                    new_type = _column_type(data[col])
                    if col not in existing:
                        cur.execute(f"ALTER TABLE {_ident(table)} ADD COLUMN {_ident(col)} {new_type}")
                    elif existing[col] == "text" and new_type != "TEXT" and data[col].notna().any():
                        # typed TEXT from an all-null first day: take the incoming type while no value holds
                        cur.execute(f"SELECT count({_ident(col)}) FROM {_ident(table)}")
                        if cur.fetchone()[0] == 0:
                            cur.execute(f"ALTER TABLE {_ident(table)} ALTER {_ident(col)} TYPE {new_type} "
                                        f"USING {_ident(col)}::{new_type}")
            cur.execute(f"DELETE FROM {_ident(table)} WHERE trade_date = %s", [trade_date])
            buf = io.StringIO()
            data.to_csv(buf, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f")
            buf.seek(0)
            cols = ", ".join(_ident(c) for c in data.columns)
            cur.copy_expert(f"COPY {_ident(table)} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf)
        return len(data)

    def export(self, path: str | Path) -> None:
        """pg_dump (custom format) into ``path``; see :mod:`.backup`."""
        from .backup import pg_dump

        pg_dump(self.url, Path(path))

    def import_(self, path: str | Path) -> None:
        from .backup import pg_restore

        pg_restore(self.url, Path(path))
