"""Throw-away databases for tests: a SQLite file, or a fresh PostgreSQL database
on the real server at 127.0.0.1:5432 (trust auth, user postgres)."""

from __future__ import annotations

import atexit
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


_process_database: str | None = None
_process_admin: sa.Engine | None = None


def _unreachable(exc: sa.exc.OperationalError) -> NoReturn:
    pytest.fail(f"PostgreSQL is required for these tests but {PG_ADMIN_URL} is not "
                f"reachable: {' '.join(str(exc.orig).split())}", pytrace=False)


def _database_of_this_process() -> tuple[str, sa.Engine]:
    """One PostgreSQL database per test process, made at first use and dropped
    at exit, and an administrator's engine on it.

    Each test gets a schema of its own in it (see :func:`database_url`):
    ``CREATE DATABASE`` copies a template and forces a checkpoint, a third of a
    second each time, where ``CREATE SCHEMA`` takes a millisecond.
    """
    global _process_database, _process_admin
    if _process_database is None or _process_admin is None:
        name = f"switchboard_test_{uuid.uuid4().hex}"
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                                 connect_args={"connect_timeout": 5}, poolclass=sa.NullPool)
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            _unreachable(exc)

        def drop() -> None:
            _process_admin_dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()

        atexit.register(drop)
        _process_database = name
        _process_admin = sa.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    return _process_database, _process_admin


def _process_admin_dispose() -> None:
    if _process_admin is not None:
        _process_admin.dispose()


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield a URL of an empty database of ``kind`` ("sqlite" or "postgresql").

    PostgreSQL: an empty schema of this process's database, which the URL puts
    first on the search path, so tables are made and found in it.
    """
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'switchboard.db'}"
        return
    database, admin = _database_of_this_process()
    schema = f"t_{uuid.uuid4().hex}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield (f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
               f"?options=-csearch_path%3D{schema}")
    finally:
        with admin.connect() as conn:
            # a connection the test left open would hold locks on the schema
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


def _admin(sql: str, **params: object) -> None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


@contextmanager
def database_down(url: str) -> Iterator[None]:
    """The database at ``url`` cannot be used until the block ends.

    PostgreSQL refuses new connections and its open sessions are ended (as in
    a restart or a failover); a SQLite file is locked by another connection
    holding a write transaction (writers wait out their busy timeout, then
    fail; readers still read, as WAL allows).
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        holder = sqlite3.connect(parsed.database, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    name = parsed.database
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE datname = :db AND pid <> pg_backend_pid()", db=name)
        yield
    finally:
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
