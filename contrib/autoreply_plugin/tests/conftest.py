"""Run the auto-reply plugin's tests without installing it (the package
directory goes on ``sys.path``; an installed copy works the same), on a SQLite
file and on a fresh database of a PostgreSQL server.

The PostgreSQL server is ``$SWITCHBOARD_TEST_POSTGRESQL`` (an admin URL), by
default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; the tests on
it fail when it cannot be reached.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)

POSTGRESQL = os.environ.get("SWITCHBOARD_TEST_POSTGRESQL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'switchboard.db'}"
        return
    name = f"switchboard_autoreply_{uuid.uuid4().hex}"
    admin = sa.create_engine(POSTGRESQL, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"these tests need PostgreSQL at {POSTGRESQL}: "
                    f"{' '.join(str(exc.orig).split())}", pytrace=False)
    try:
        yield sa.engine.make_url(POSTGRESQL).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
