"""Throw-away databases for tests: a SQLite file, or a fresh PostgreSQL database
on the real server at 127.0.0.1:5432 (trust auth, user postgres)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield a URL of an empty database of ``kind`` ("sqlite" or "postgresql")."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'switchboard.db'}"
        return
    name = f"switchboard_test_{uuid.uuid4().hex}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is required for these tests but {PG_ADMIN_URL} is not "
                    f"reachable: {' '.join(str(exc.orig).split())}", pytrace=False)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
