"""Throw-away databases for tests: a SQLite file, or a fresh PostgreSQL database
on the real server at 127.0.0.1:5432 (trust auth, user postgres).

A test that only needs a database the plugins can use asks for one with their
tables already made (``database_url(kind, tmp_path, tables=True)``): the
tables of a fresh server, made once per test process by the server's own
schema code (:meth:`switchboard.core.migrations.Schema.prepare`), instead of
some 40 ``CREATE`` statements per test, which on PostgreSQL cost more than
most tests themselves. The server of such a test finds its schema up to
date, as after any restart. Tests of creating and migrating a schema keep
asking for an empty database (the default).
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
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
        with _process_admin.connect() as conn:
            for function in (_SHAPE_FUNCTION, _EMPTY_FUNCTION):
                conn.exec_driver_sql(function.replace("%", "%%"))  # no parameters
    return _process_database, _process_admin


# Everything that makes a schema what it is, as text with the schema's name
# left out: relations, columns, indexes, constraints, types, functions,
# triggers, and the revisions recorded in the migration version tables.
_SHAPE_FUNCTION = r"""
CREATE FUNCTION public.test_schema_shape(target text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
  lines text[];
  version record;
  revisions text;
BEGIN
  SELECT coalesce(array_agg(line ORDER BY line), '{}') INTO lines FROM (
    SELECT format('rel %s %s', c.relname, c.relkind) AS line
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = target
    UNION ALL
    SELECT format('col %s %s %s %s %s', c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  coalesce(pg_get_expr(d.adbin, d.adrelid), ''))
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
     WHERE n.nspname = target
    UNION ALL
    SELECT format('idx %s', pg_get_indexdef(i.indexrelid))
      FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = target
    UNION ALL
    SELECT format('con %s %s %s', c.relname, co.conname, pg_get_constraintdef(co.oid))
      FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = target
    UNION ALL
    SELECT format('type %s %s', t.typname,
                  (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                     FROM pg_enum e WHERE e.enumtypid = t.oid))
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = target AND t.typtype IN ('e', 'd')
    UNION ALL
    SELECT format('proc %s', p.proname)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = target
    UNION ALL
    SELECT format('trg %s %s', c.relname, tg.tgname)
      FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = target AND NOT tg.tgisinternal
  ) shape;
  FOR version IN
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = target AND c.relkind = 'r' AND c.relname LIKE '%\_alembic\_version'
     ORDER BY c.relname
  LOOP
    EXECUTE format('SELECT string_agg(version_num, '','' ORDER BY version_num) FROM %I.%I',
                   target, version.relname) INTO revisions;
    lines := lines || format('ver %s %s', version.relname, revisions);
  END LOOP;
  RETURN replace(array_to_string(lines, E'\n'), target || '.', '');
END
$f$
"""

# Ends the other sessions on this process's database (a test may have left
# one open), then, if the schema still has the shape ``expected``, deletes
# every row but the recorded revisions and restarts its sequences: the schema
# is then as a fresh server leaves it. Says whether it did.
_EMPTY_FUNCTION = r"""
CREATE FUNCTION public.test_schema_empty(target text, expected text) RETURNS boolean
LANGUAGE plpgsql AS $f$
DECLARE
  tab record;
BEGIN
  PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid();
  IF public.test_schema_shape(target) IS DISTINCT FROM expected THEN
    RETURN false;
  END IF;
  PERFORM set_config('session_replication_role', 'replica', true);  -- no FK order
  FOR tab IN
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = target AND c.relkind IN ('r', 'p')
       AND c.relname NOT LIKE '%\_alembic\_version'
  LOOP
    EXECUTE format('DELETE FROM %I.%I', target, tab.relname);
  END LOOP;
  PERFORM setval(s.seqrelid, s.seqstart, false)
     FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = target;
  RETURN true;
END
$f$
"""


def _process_admin_dispose() -> None:
    if _process_admin is not None:
        _process_admin.dispose()


def _schema_url(database: str, schema: str) -> str:
    return (f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
            f"?options=-csearch_path%3D{schema}")


def _make_tables(url: str) -> None:
    """Make in the empty database at ``url`` what a fresh server with every
    installed plugin makes there, with the server's own schema code."""
    from switchboard.core.pluginmanager import Plugins
    from switchboard.testing import make_config

    schema = Plugins(make_config()).declare_tables(sa.MetaData())
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            schema.prepare(conn, upgrade=False)
    finally:
        engine.dispose()


#: A SQLite file with the tables made, copied for each test that asks for one.
_sqlite_template: Path | None = None
#: Schemas of this process's PostgreSQL database with the tables made and no
#: rows, ready for the next test, and the shape they all have.
_schema_pool: list[str] = []
_schema_shape: str | None = None


def _sqlite_with_tables(path: Path) -> None:
    global _sqlite_template
    if _sqlite_template is None:
        directory = Path(tempfile.mkdtemp(prefix="switchboard-tables-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        template = directory / "switchboard.db"
        _make_tables(f"sqlite:///{template}")
        with sqlite3.connect(template) as conn:  # as the store leaves the file
            conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
        _sqlite_template = template
    shutil.copyfile(_sqlite_template, path)


def _schema_with_tables(database: str, admin: sa.Engine) -> str:
    global _schema_shape
    if _schema_pool:
        return _schema_pool.pop()
    schema = f"t_{uuid.uuid4().hex}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    _make_tables(_schema_url(database, schema))
    if _schema_shape is None:
        with admin.connect() as conn:
            _schema_shape = conn.execute(sa.text("SELECT public.test_schema_shape(:s)"),
                                         {"s": schema}).scalar_one()
    return schema


@contextmanager
def database_url(kind: str, tmp_path: Path, *, tables: bool = False) -> Iterator[str]:
    """Yield a URL of an empty database of ``kind`` ("sqlite" or "postgresql").

    PostgreSQL: an empty schema of this process's database, which the URL puts
    first on the search path, so tables are made and found in it.

    ``tables``: the database has the tables a fresh server with every
    installed plugin makes, and no rows. SQLite: a copy of a file made once
    per process. PostgreSQL: a schema taken from this process's pool; after
    the test its rows are deleted and its sequences restarted, and it goes
    back to the pool only if nothing else in it changed (its tables, columns,
    indexes, constraints and recorded revisions are still those of a fresh
    one); otherwise it is dropped.
    """
    if kind == "sqlite":
        path = tmp_path / "switchboard.db"
        if tables:
            _sqlite_with_tables(path)
        yield f"sqlite:///{path}"
        return
    database, admin = _database_of_this_process()
    if tables:
        schema = _schema_with_tables(database, admin)
    else:
        schema = f"t_{uuid.uuid4().hex}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _schema_url(database, schema)
    finally:
        with admin.connect() as conn:
            if tables and conn.execute(
                    sa.text("SELECT public.test_schema_empty(:s, :shape)"),
                    {"s": schema, "shape": _schema_shape}).scalar_one():
                _schema_pool.append(schema)
            else:
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
