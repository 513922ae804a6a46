"""Backup and restore of the warehouse.

A backup is a folder: the engine's own export (DuckDB ``EXPORT DATABASE`` as Parquet files, or a
``pg_dump`` custom-format archive) plus ``manifest.json`` with the engine, the schema version,
the time and every table's row count. :func:`restore` loads a backup into an *empty* warehouse of
the same engine (it refuses one that holds tables, so a restore never merges into live data) and
then compares every table's row count with the manifest.

The Postgres password, when the URL carries one, goes to pg_dump and pg_restore through
``PGPASSWORD``, never on their command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from .storage import Warehouse, WarehouseError

MANIFEST = "manifest.json"
PG_ARCHIVE = "warehouse.dump"


class BackupError(RuntimeError):
    pass


def _pg_env(url: str) -> tuple[str, dict]:
    """The URL without its password, and an environment carrying the password."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
        user, host = parts.netloc.rsplit("@", 1)
        url = urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}@{host}"))
    return url, env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found on PATH: install the PostgreSQL client (Debian: postgresql-client)")
    return path


def _run(args: list[str], env: dict, what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def pg_dump(url: str, archive: Path) -> None:
    bare, env = _pg_env(url)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={archive}",
          f"--dbname={bare}"], env, "pg_dump")


def pg_restore(url: str, archive: Path) -> None:
    bare, env = _pg_env(url)
    _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
          f"--dbname={bare}", str(archive)], env, "pg_restore")


def row_counts(wh: Warehouse) -> dict[str, int]:
    return {t: wh.count(t) for t in sorted(wh.tables())}


def backup(wh: Warehouse, dest: str | Path) -> dict:
    """Export ``wh`` into the new folder ``dest``; returns the manifest."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"backup folder {dest} is not empty: choose a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    wh.ensure_ledger()
    counts = row_counts(wh)
    if wh.dialect == "duckdb":
        wh.export(dest / "export")
    else:
        wh.export(dest / PG_ARCHIVE)
    manifest = {"engine": wh.dialect, "schema_version": wh.schema_version(), "source": wh.label,
                "created_at": pd.Timestamp.now(tz="UTC").isoformat(), "tables": counts}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def restore(wh: Warehouse, src: str | Path) -> dict:
    """Load the backup in ``src`` into the empty warehouse ``wh``; returns the restored row counts
    (equal to the manifest's, or a :class:`BackupError` says which table differs)."""
    src = Path(src)
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} is not an optrader backup: {MANIFEST} is missing") from None
    except json.JSONDecodeError as exc:
        raise BackupError(f"{src / MANIFEST} is not valid JSON: {exc}") from None
    if manifest.get("engine") != wh.dialect:
        raise BackupError(f"backup {src} is a {manifest.get('engine')} backup; the target warehouse is "
                          f"{wh.dialect} ({wh.label})")
    present = wh.tables()
    if present:
        raise BackupError(f"restore needs an empty warehouse; {wh.label} holds {len(present)} tables "
                          f"({', '.join(sorted(present)[:5])}...)")
    if wh.dialect == "duckdb":
        wh.import_(src / "export")
    else:
        wh.import_(src / PG_ARCHIVE)
    counts = row_counts(wh)
    expected = {k: int(v) for k, v in manifest["tables"].items()}
    if counts != expected:
        diff = {t: (expected.get(t), counts.get(t)) for t in set(expected) | set(counts)
                if expected.get(t) != counts.get(t)}
        raise BackupError(f"restored row counts differ from the manifest (table: expected, restored): {diff}")
    try:
        wh.ensure_ledger()  # an older backup is brought to the code's schema version
    except WarehouseError as exc:
        raise BackupError(str(exc)) from None
    return counts


__all__ = ["BackupError", "backup", "restore", "row_counts", "pg_dump", "pg_restore"]
