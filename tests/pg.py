"""The PostgreSQL server on this machine, for the tests that need one.

``OPTRADER_TEST_PG_ADMIN_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, trust
auth) is a role that may create databases. Each test gets a database of its own, dropped after.
In CI (``CI=true``) an unreachable server fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

ADMIN_URL = os.environ.get("OPTRADER_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin():
    import psycopg2

    con = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    con.autocommit = True
    return con


def require_postgres() -> None:
    """Skip (fail in CI) when the server cannot be reached."""
    try:
        _admin().close()
    except Exception as exc:  # noqa: BLE001 - any connection failure means no server
        reason = f"PostgreSQL not reachable at {urlsplit(ADMIN_URL).netloc}: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the Postgres tests must run)")
        pytest.skip(reason)


def url_for(dbname: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{dbname}"))


def create_database(prefix: str = "optrader_test") -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    con = _admin()
    try:
        con.cursor().execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()
    return name, url_for(name)


def drop_database(name: str) -> None:
    con = _admin()
    try:
        con.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        con.close()


@contextlib.contextmanager
def temporary_database(prefix: str = "optrader_test"):
    require_postgres()
    name, url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture
def pg_url():
    with temporary_database() as url:
        yield url
