"""The Store: SQLAlchemy Core (SQLite or PostgreSQL) usable from Trio.

Design: synchronous SQLAlchemy Core (``sqlite3`` for SQLite, psycopg 3 for
PostgreSQL, URL ``postgresql+psycopg://...``), each operation called through
``trio.to_thread.run_sync(..., limiter=...)``; the limiter (:class:`_PromptLimiter`)
has the size of the connection pool, so a worker thread never waits for a
connection, and starts the thread at once when a slot is free.

Why not an async driver: the asyncpg-based Trio driver ``sqlalchemy-triopg``
fails on SQLAlchemy 2.0.x (``RuntimeError: Timeout should be used inside a
task``) and monkeypatches asyncio for the whole process. The thread path is
maintained, and it is cancellation-safe under Trio: ``trio.to_thread.run_sync``
with the default ``abandon_on_cancel=False`` waits for the thread, so a
transaction always either commits or rolls back entirely. A cancellation that
arrives before the thread starts runs nothing; one that arrives while the thread
runs lets the transaction finish, the call returns its result, and ``Cancelled``
is raised at the caller's next checkpoint. A Trio cancellation never leaves half
a transaction.

Measured: 2,800 (PostgreSQL) / 1,000 (SQLite) single-row commits/s from 50
tasks; 46,000 / 106,000 rows/s in batches of 100.

SQLite: the parent directory of the file is created, WAL journal mode and a busy
timeout are set on each connection, and SQLAlchemy emits ``BEGIN`` itself
(``BEGIN IMMEDIATE`` for :meth:`Store.run`, whose function may read then write)
instead of the legacy transaction control of ``sqlite3``. ``sqlite://`` is an
in-memory database shared by all threads through one connection, so operations
on it run one at a time.
"""

from __future__ import annotations

import hashlib
import select
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import sqlalchemy
import trio
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

__all__ = ["ConflictInsert", "LockKey", "Store", "StoreError", "StoreUnavailable",
           "serialize_on"]

#: An INSERT that takes ``ON CONFLICT`` clauses: ``on_conflict_do_nothing``,
#: ``on_conflict_do_update`` and ``excluded`` (SQLAlchemy's SQLite and
#: PostgreSQL inserts, which spell them the same).
ConflictInsert: TypeAlias = sa_sqlite.Insert | sa_postgresql.Insert
#: What :func:`serialize_on` serializes on: one or more strings and integers
#: (``("notifications", tenant, user)``).
LockKey: TypeAlias = "str | int | tuple[str | int, ...]"

T = TypeVar("T")

_PG_CONNECT_TIMEOUT_S = 10
# What sqlite3 says when the database file is busy or cannot be used right now.
_SQLITE_UNAVAILABLE = ("database is locked", "database table is locked", "unable to open",
                       "disk i/o error", "database or disk is full")
# Execution option read by the "begin" listener (SQLite and PostgreSQL): the
# statement that starts the transaction ("": none, the statement runs on its own).
_BEGIN = "switchboard_begin"


class _PromptLimiter:
    """A ``trio.CapacityLimiter`` for ``trio.to_thread.run_sync`` whose free
    token is taken without a turn of the scheduler.

    ``CapacityLimiter.acquire_on_behalf_of`` checkpoints even when a token is
    free: under load that put every transaction behind all the tasks the event
    loop had ready before its thread could start (3 ms at the median and 11 at
    the 99th percentile, with 1,000 HTTP requests a second). Here a call checks
    for cancellation (a call cancelled before its thread starts runs nothing),
    takes a free token at once, and waits only when every token is taken;
    ``run_sync`` still yields while its thread runs, and waits for it.
    """

    def __init__(self, total_tokens: int) -> None:
        self._limiter = trio.CapacityLimiter(total_tokens)

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._limiter.acquire_on_behalf_of_nowait(borrower)
        except trio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(borrower)

    def release_on_behalf_of(self, borrower: object) -> None:
        self._limiter.release_on_behalf_of(borrower)


class StoreError(Exception):
    """A database operation failed; the message names the database without its password."""


class StoreUnavailable(StoreError):
    """The database could not be reached or was busy (down, restarting, refusing
    connections, a connection lost, SQLite locked past the busy timeout): the
    operation did not happen, and trying again later may succeed."""


class _Dropped(Exception):
    """A pooled connection was found dropped by the server at the BEGIN."""


def _is_select(stmt: sqlalchemy.Executable) -> bool:
    return bool(getattr(stmt, "is_select", False))


class Store:
    """Transactions on one database, each run in a worker thread."""

    def __init__(self, url: str, *, pool_size: int = 8, busy_timeout: float = 10.0) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        try:
            parsed = make_url(url)
        except (sqlalchemy.exc.ArgumentError, ValueError):
            raise StoreError("invalid database URL") from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._url: URL = parsed
        self._pool_size = pool_size
        #: SQLite: seconds a statement waits for a lock before the database
        #: counts as unavailable.
        self._busy_timeout_ms = max(0, round(busy_timeout * 1000))
        #: An in-memory SQLite database: private (``sqlite://``) or named
        #: (``sqlite:///file:NAME?mode=memory&cache=shared&uri=true``, shared by
        #: the connections of one process). One connection serves it.
        self._memory = self.dialect == "sqlite" and (
            parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory")
        # (``run_sync`` takes any "CapacityLimiter-like object", as trio documents)
        self._limiter: trio.CapacityLimiter = _PromptLimiter(  # type: ignore[assignment]
            1 if self._memory else pool_size)
        self._engine: sqlalchemy.Engine | None = None
        self.metadata = sqlalchemy.MetaData()
        #: Entered around every call that runs in a worker thread (by default it
        #: does nothing). The test harness uses it to keep its mock clock still
        #: while the database works, since a task waiting for a thread counts as
        #: blocked and an autojump clock would otherwise leap ahead.
        self.around_call: Callable[[], AbstractContextManager[object]] = nullcontext

    def __repr__(self) -> str:
        return f"Store({self._safe_url!r})"

    @property
    def dialect(self) -> str:
        """The database backend: ``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    @property
    def _safe_url(self) -> str:
        return self._url.render_as_string(hide_password=True)

    async def open(self, prepare: Callable[[sqlalchemy.Connection], object] | None = None
                   ) -> None:
        """Create the engine; check the database answers; prepare the schema.

        ``prepare(conn)`` runs in the first transaction (the server passes
        :meth:`switchboard.core.migrations.Schema.prepare`, which creates and
        upgrades the plugins' tables); by default the tables of
        :attr:`metadata` that are missing are created. If it raises, the store
        stays closed and the exception (a :class:`StoreError`) is raised.
        """
        if self._engine is not None:
            raise StoreError(f"store for {self._safe_url} is already open")
        with self.around_call():
            self._engine = await trio.to_thread.run_sync(
                self._open_sync, prepare, limiter=self._limiter)

    async def close(self) -> None:
        """Close the pooled connections. Safe to call twice."""
        engine, self._engine = self._engine, None
        if engine is not None:
            with trio.CancelScope(shield=True), self.around_call():
                await trio.to_thread.run_sync(engine.dispose)

    async def run(self, fn: Callable[[sqlalchemy.Connection], T], *,
                  serialize_on: LockKey | list[LockKey] | None = None,
                  autocommit: bool = False) -> T:
        """Run ``fn(conn)`` in a worker thread inside one transaction; return its result.

        ``fn`` is synchronous. The transaction commits if ``fn`` returns and rolls back
        if it raises. SQLAlchemy errors are raised as :class:`StoreError`, other
        exceptions from ``fn`` unchanged.

        ``serialize_on``: a key (``("notifications", tenant, user)``), or a list
        of keys taken in its order; transactions given the same key run one
        after the other, each seeing what the one before committed, whatever
        node of the cluster runs them (see :func:`serialize_on`, which does
        the same from inside ``fn``). On PostgreSQL the keys are taken in the
        round trip of the ``BEGIN``, so serializing costs no round trip.

        ``autocommit``: on PostgreSQL each statement of ``fn`` commits on its
        own, without ``BEGIN`` and ``COMMIT`` (two round trips fewer), for an
        ``fn`` whose write is one statement (an ``INSERT ... ON CONFLICT DO
        NOTHING`` of a batch, then reads of what it skipped); SQLite runs it
        in one transaction all the same. It cannot be serialized.
        """
        locks: list[int] = []
        if serialize_on is not None:
            if autocommit:
                raise ValueError("an autocommit run cannot be serialized")
            keys = serialize_on if isinstance(serialize_on, list) else [serialize_on]
            locks = _lock_ids([key if isinstance(key, tuple) else (key,) for key in keys])
        return await self._call(fn, begin="BEGIN IMMEDIATE", locks=locks, autocommit=autocommit)

    async def read(self, fn: Callable[[sqlalchemy.Connection], T]) -> T:
        """Run ``fn(conn)``, which only reads, in a worker thread inside one
        transaction that takes no write lock (SQLite's deferred ``BEGIN``,
        unlike :meth:`run`): several SELECTs on one snapshot for the price of
        one call. Errors as in :meth:`run`."""
        return await self._call(fn, begin="BEGIN")

    # -- portable statements -------------------------------------------------

    def insert(self, table: sqlalchemy.Table) -> ConflictInsert:
        """An INSERT into ``table`` that takes ``ON CONFLICT`` clauses on this
        database: ``.on_conflict_do_nothing(index_elements=[...])``,
        ``.on_conflict_do_update(index_elements=[...], set_={...})`` with
        ``.excluded`` for the values that were to be inserted. SQLite and
        PostgreSQL only.
        """
        if self.dialect == "postgresql":
            return sa_postgresql.insert(table)
        if self.dialect == "sqlite":
            return sa_sqlite.insert(table)
        raise StoreError(f"ON CONFLICT needs SQLite or PostgreSQL, not {self.dialect}")

    def upsert(self, table: sqlalchemy.Table, values: Mapping[str, Any] | None = None, *,
               key: Iterable[str], update: Iterable[str] | None = None) -> ConflictInsert:
        """``INSERT ... ON CONFLICT (key) DO UPDATE``: insert a row, or update the
        row that has the same ``key`` (a primary key or the columns of a unique
        index), in one statement that concurrent transactions cannot race.

        ``update`` names the columns overwritten with the new values; by default
        every column of ``values`` (without ``values``: of the table) that is
        not part of ``key``. An empty ``update`` keeps the existing row as it is
        (``DO NOTHING``). Without ``values``, pass the rows to
        :meth:`execute_many` (every row with the same columns). Chain
        ``.returning(...)`` to read what was written. Run it with
        :meth:`execute`, :meth:`execute_many` or inside :meth:`run`.
        """
        key_names = list(key)
        if not key_names:
            raise ValueError("upsert needs the key columns of a unique index")
        stmt = self.insert(table)
        if values is not None:
            stmt = stmt.values(dict(values))
        if update is None:
            names = values.keys() if values is not None else table.columns.keys()
            update = [name for name in names if name not in key_names]
        columns = list(update)
        index = [table.c[name] for name in key_names]
        if not columns:
            return stmt.on_conflict_do_nothing(index_elements=index)
        return stmt.on_conflict_do_update(
            index_elements=index, set_={name: stmt.excluded[name] for name in columns})

    async def execute(
        self, stmt: sqlalchemy.Executable, params: Mapping[str, Any] | None = None
    ) -> int:
        """Execute one statement in its own transaction; return its rowcount."""

        def fn(conn: sqlalchemy.Connection) -> int:
            return conn.execute(stmt, params).rowcount

        return await self._call(fn, begin="BEGIN")

    async def execute_many(
        self, stmt: sqlalchemy.Executable, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Execute ``stmt`` once per row as one batch in one transaction; return the row count."""
        if not rows:
            return 0
        batch = list(rows)

        def fn(conn: sqlalchemy.Connection) -> int:
            return conn.execute(stmt, batch).rowcount

        return await self._call(fn, begin="BEGIN")

    async def fetch_all(self, stmt: sqlalchemy.Executable) -> list[sqlalchemy.RowMapping]:
        """Execute a statement returning rows; return all of them."""

        def fn(conn: sqlalchemy.Connection) -> list[sqlalchemy.RowMapping]:
            return list(conn.execute(stmt).mappings().all())

        return await self._call(fn, begin="BEGIN", read=_is_select(stmt))

    async def fetch_one(self, stmt: sqlalchemy.Executable) -> sqlalchemy.RowMapping | None:
        """Execute a statement returning rows; return the first one, or None."""

        def fn(conn: sqlalchemy.Connection) -> sqlalchemy.RowMapping | None:
            return conn.execute(stmt).mappings().first()

        return await self._call(fn, begin="BEGIN", read=_is_select(stmt))

    # -- worker-thread side -------------------------------------------------

    async def _call(self, fn: Callable[[sqlalchemy.Connection], T], *, begin: str,
                    read: bool = False, locks: Sequence[int] = (),
                    autocommit: bool = False) -> T:
        """Run ``fn`` in a transaction started with ``begin`` (SQLite's BEGIN
        statement); ``read``: ``fn`` runs one SELECT, which PostgreSQL runs on
        its own (no BEGIN and COMMIT: two round trips fewer); ``autocommit``:
        PostgreSQL runs each statement of ``fn`` on its own; ``locks``: the
        advisory locks PostgreSQL takes with its BEGIN, in one round trip (on
        SQLite the BEGIN IMMEDIATE serializes every writing transaction).

        A pooled connection that the server has closed (a restart, a
        failover, an administrator, an idle timeout) is replaced when it is
        taken from the pool, with every connection older than it: the server
        said so on its socket, which is looked at without a round trip. One
        closed meanwhile fails at the first thing sent on it, the BEGIN, or
        the SELECT of a read: nothing was done, so the call is tried once
        more on a new connection. A connection lost later (or at the first
        statement of an autocommit run, which may have been carried out)
        fails the call."""
        engine = self._engine
        if engine is None:
            raise StoreError(f"store for {self._safe_url} is not open; call open() first")
        if self.dialect == "postgresql":
            # (several statements, no parameters: sent together, as one simple query)
            begin = "" if read or autocommit else "; ".join(
                ["BEGIN"] + (["SELECT " + ", ".join(
                    f"pg_advisory_xact_lock({lock})" for lock in locks)] if locks else []))

        def in_transaction() -> T:
            try:
                try:
                    return attempt()
                except _Dropped:
                    pass  # found dropped before anything was done
                except sqlalchemy.exc.DBAPIError as exc:
                    if not (read and exc.connection_invalidated):
                        raise
                return attempt(last=True)  # (on a new connection)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                raise self._error("database operation", exc) from exc

        def attempt(last: bool = False) -> T:
            with engine.connect() as conn:
                # preserve_rowcount: report rowcount for INSERT batches too.
                conn.execution_options(preserve_rowcount=True, **{_BEGIN: begin})
                try:
                    transaction = conn.begin()
                except sqlalchemy.exc.DBAPIError as exc:
                    if exc.connection_invalidated and not last:
                        raise _Dropped from exc
                    raise
                with transaction:
                    return fn(conn)

        # abandon_on_cancel=False (the default): a cancelled caller still waits for
        # the thread, so the transaction is never left half done.
        with self.around_call():
            return await trio.to_thread.run_sync(in_transaction, limiter=self._limiter)

    def _open_sync(self, prepare: Callable[[sqlalchemy.Connection], object] | None
                   ) -> sqlalchemy.Engine:
        try:
            engine = self._create_engine()
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError) as exc:
            raise self._error("opening the database", exc) from exc
        try:
            with engine.begin() as conn:
                if prepare is None:
                    self.metadata.create_all(conn)
                else:
                    prepare(conn)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise self._error("connecting to the database", exc) from exc
        except BaseException:
            engine.dispose()
            raise
        return engine

    def _create_engine(self) -> sqlalchemy.Engine:
        url = self._url
        if self.dialect == "sqlite":
            if self._memory:
                return self._sqlite_engine(url, poolclass=StaticPool)
            if url.database and not url.query.get("uri"):
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            return self._sqlite_engine(url, pool_size=self._pool_size, max_overflow=0)
        connect_args: dict[str, Any] = {}
        if self.dialect == "postgresql" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
        if self.dialect != "postgresql":
            # a pooled connection the server has dropped is replaced before a
            # transaction starts on it (one round trip per transaction)
            return sqlalchemy.create_engine(
                url, pool_size=self._pool_size, max_overflow=0, connect_args=connect_args,
                pool_pre_ping=True)
        # PostgreSQL: psycopg's own BEGIN is replaced by the "begin" listener's
        # (none for a read), and a dropped connection is found at that first
        # statement (see _call)
        connect_args["autocommit"] = True
        engine = sqlalchemy.create_engine(
            url, pool_size=self._pool_size, max_overflow=0, connect_args=connect_args)
        sqlalchemy.event.listen(engine, "begin", _on_begin)
        sqlalchemy.event.listen(engine, "checkout", _on_checkout)
        return engine

    def _sqlite_engine(self, url: URL, **kwargs: Any) -> sqlalchemy.Engine:
        engine = sqlalchemy.create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        wal = not self._memory

        def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
            # Let SQLAlchemy emit BEGIN (below) instead of sqlite3's legacy control.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                if wal:
                    cursor.execute("PRAGMA journal_mode = WAL")
            finally:
                cursor.close()

        sqlalchemy.event.listen(engine, "connect", on_connect)
        # A single statement can start with a deferred BEGIN; a transaction that may
        # read then write takes the write lock up front (BEGIN IMMEDIATE) so that it
        # waits on the busy timeout instead of failing on a lock upgrade.
        sqlalchemy.event.listen(engine, "begin", _on_begin)
        return engine

    def _error(self, action: str, exc: BaseException) -> StoreError:
        cause: BaseException = exc
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
            cause = exc.orig
        detail = " ".join(str(cause).split()) or type(cause).__name__
        message = f"{action} failed for {self._safe_url}: {type(cause).__name__}: {detail}"
        password = self._url.password
        if password:
            message = message.replace(str(password), "***")
        kind = StoreUnavailable if self._unavailable(exc, detail) else StoreError
        return kind(message)

    def _unavailable(self, exc: BaseException, detail: str) -> bool:
        """Whether ``exc`` says the database could not be used (rather than that
        the statement was wrong)."""
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if self.dialect == "sqlite":
            # sqlite3 raises OperationalError for bad SQL too: only these are "busy"
            return isinstance(exc, sqlalchemy.exc.OperationalError) and any(
                word in detail.lower() for word in _SQLITE_UNAVAILABLE)
        return isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)


def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A PostgreSQL connection taken from the pool that the server has closed
    is replaced, and so is every connection pooled before it (a restart ends
    them all)."""
    if _closed_by_server(dbapi_connection):
        raise sqlalchemy.exc.InvalidatePoolError("the server closed the connection")


def _closed_by_server(dbapi_connection: Any) -> bool:
    """Whether PostgreSQL has closed this idle psycopg connection: a server
    ending a session sends its reason, then closes the socket, and sends
    nothing else to an idle session (it has no LISTEN), so anything to read
    means it is gone. No round trip: the socket is polled without waiting."""
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    try:
        fd = dbapi_connection.pgconn.socket
    except Exception:  # (psycopg: no socket, the connection is bad)
        return True
    if not hasattr(select, "poll"):  # (not on Windows: found at the BEGIN instead)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _on_begin(conn: sqlalchemy.Connection) -> None:
    """Start the transaction with the statement the call chose (SQLite:
    ``BEGIN IMMEDIATE`` unless told otherwise; PostgreSQL: ``BEGIN``, or none
    for a read on its own); the driver itself starts none."""
    begin = conn.get_execution_options().get(_BEGIN, "BEGIN IMMEDIATE"
                                             if conn.dialect.name == "sqlite" else "BEGIN")
    if begin:
        conn.exec_driver_sql(begin)


def array_rows(prefix: str, columns: Sequence[tuple[str, Any]]) -> Any:
    """PostgreSQL: the rows of one array parameter per column, for an
    ``INSERT ... SELECT`` (or a join) whose statement is the same for every
    number of rows: ``unnest(:{prefix}{name}::TYPE[], ...) AS r(name, ...)``.
    ``columns`` are ``(name, SQLAlchemy type)``; pass each column's values as
    a list under ``prefix + name``, every list of the same length. Build the
    statement once and keep it."""
    return sqlalchemy.func.unnest(*(
        sqlalchemy.bindparam(prefix + name, type_=sa_postgresql.ARRAY(kind))
        for name, kind in columns)).table_valued(*(
            sqlalchemy.column(name, kind) for name, kind in columns)).render_derived()


def serialize_on(conn: sqlalchemy.Connection, *key: str | int) -> None:
    """From inside a :meth:`Store.run` function: wait until no other transaction
    serialized on the same ``key`` is running, and keep them waiting until this
    one ends (commits or rolls back).

    Use it where two transactions could each read what the other is about to
    change (a count, a "does it exist yet"), so that the second reads what the
    first committed. On PostgreSQL it is ``pg_advisory_xact_lock`` on a 64-bit
    hash of the key (a hash collision only makes two unrelated transactions
    wait for each other); on SQLite nothing is needed, as :meth:`Store.run`
    begins with ``BEGIN IMMEDIATE`` and SQLite runs one writing transaction at
    a time.
    """
    _lock(conn, key)


def serialize_on_each(conn: sqlalchemy.Connection,
                      keys: Iterable[tuple[str | int, ...]]) -> None:
    """:func:`serialize_on` each of ``keys``, in their order, in one statement
    (one round trip on PostgreSQL instead of one per key). Take keys in the same
    order wherever they are taken together: two transactions taking two keys
    in opposite orders could each wait for the other (PostgreSQL then fails
    one of them)."""
    _lock(conn, *keys)


def _lock_ids(keys: Sequence[tuple[str | int, ...]]) -> list[int]:
    """The advisory lock of each key: a signed 64-bit hash of it."""
    if not keys or not all(keys):
        raise ValueError("serialize_on needs a key")
    ids = []
    for key in keys:
        text = "\x00".join(str(part) for part in key)
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        ids.append(int.from_bytes(digest, "big", signed=True))
    return ids


def _lock(conn: sqlalchemy.Connection, *keys: tuple[str | int, ...]) -> None:
    ids = _lock_ids(keys)
    if conn.dialect.name != "postgresql":
        return
    conn.execute(sqlalchemy.select(*(sqlalchemy.func.pg_advisory_xact_lock(n) for n in ids)))
