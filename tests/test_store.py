"""The Store against a SQLite file and a real PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
import trio.testing
from databases import PG_ADMIN_URL, database_url
from switchboard.core import store as store_module
from switchboard.core.store import (
    Store,
    StoreError,
    StoreUnavailable,
    serialize_on,
    serialize_on_each,
)

THREAD_WAIT_S = 10  # upper bound for a worker thread waiting on the test; never reached


def _messages_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "messages",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("room", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )


def _counters_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "counters",
        metadata,
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store(db_url, pool_size=8)
    _messages_table(s.metadata)
    _counters_table(s.metadata)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def messages(store: Store) -> sa.Table:
    table: sa.Table = store.metadata.tables["messages"]
    return table


async def count_rows(store: Store) -> int:
    row = await store.fetch_one(sa.select(sa.func.count().label("n")).select_from(messages(store)))
    assert row is not None
    return int(row["n"])


async def test_tables_are_created_from_metadata_and_rows_round_trip(store: Store) -> None:
    t = messages(store)
    assert await store.execute(t.insert(), {"room": "lobby", "body": "hello"}) == 1
    await store.execute(t.insert(), {"room": "lobby", "body": "héllo, wörld"})

    rows = await store.fetch_all(sa.select(t.c.room, t.c.body).order_by(t.c.id))
    assert [dict(r) for r in rows] == [
        {"room": "lobby", "body": "hello"},
        {"room": "lobby", "body": "héllo, wörld"},
    ]
    one = await store.fetch_one(sa.select(t.c.body).where(t.c.body == "hello"))
    assert one is not None and one["body"] == "hello"
    assert await store.fetch_one(sa.select(t).where(t.c.room == "nowhere")) is None


async def test_dialect_names_the_backend(store: Store, db_url: str) -> None:
    assert store.dialect == db_url.split(":")[0].split("+")[0]


async def test_execute_returns_the_number_of_rows_changed(store: Store) -> None:
    t = messages(store)
    await store.execute_many(t.insert(), [{"room": "a", "body": str(i)} for i in range(3)])
    assert await store.execute(t.update().where(t.c.room == "a").values(body="x")) == 3
    assert await store.execute(t.delete().where(t.c.room == "none")) == 0


async def test_batch_insert_of_many_rows_lands_in_one_call(store: Store) -> None:
    t = messages(store)
    rows = [{"room": f"room-{i % 7}", "body": f"message {i}"} for i in range(1000)]

    assert await store.execute_many(t.insert(), rows) == 1000

    assert await count_rows(store) == 1000
    last = await store.fetch_one(sa.select(t.c.body).order_by(t.c.id.desc()).limit(1))
    assert last is not None and last["body"] == "message 999"


async def test_batch_insert_of_no_rows_inserts_nothing(store: Store) -> None:
    assert await store.execute_many(messages(store).insert(), []) == 0
    assert await count_rows(store) == 0


async def test_run_returns_the_result_of_fn_and_commits(store: Store) -> None:
    t = messages(store)

    def insert_and_read(conn: sa.Connection) -> list[str]:
        conn.execute(t.insert(), [{"room": "r", "body": "one"}, {"room": "r", "body": "two"}])
        return list(conn.execute(sa.select(t.c.body).order_by(t.c.id)).scalars())

    assert await store.run(insert_and_read) == ["one", "two"]
    assert await count_rows(store) == 2


async def test_run_rolls_back_entirely_when_fn_raises(store: Store) -> None:
    t = messages(store)
    await store.execute(t.insert(), {"room": "keep", "body": "before"})

    def insert_then_fail(conn: sa.Connection) -> None:
        conn.execute(t.insert(), [{"room": "r", "body": str(i)} for i in range(5)])
        conn.execute(t.delete().where(t.c.room == "keep"))
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await store.run(insert_then_fail)

    rows = await store.fetch_all(sa.select(t.c.room, t.c.body))
    assert [dict(r) for r in rows] == [{"room": "keep", "body": "before"}]


async def test_database_error_in_run_is_a_store_error_and_rolls_back(store: Store) -> None:
    t = messages(store)

    def insert_then_violate(conn: sa.Connection) -> None:
        conn.execute(t.insert(), {"id": 1, "room": "r", "body": "first"})
        conn.execute(t.insert(), {"id": 1, "room": "r", "body": "duplicate key"})

    with pytest.raises(StoreError, match="database operation failed"):
        await store.run(insert_then_violate)
    assert await count_rows(store) == 0


async def test_cancel_during_run_lets_the_transaction_commit_entirely(store: Store) -> None:
    t = messages(store)
    first_half_written = trio.Event()
    may_finish = threading.Event()
    outcome: dict[str, object] = {}

    def slow_transaction(conn: sa.Connection) -> str:
        conn.execute(t.insert(), [{"room": "r", "body": f"first {i}"} for i in range(3)])
        trio.from_thread.run_sync(first_half_written.set)
        assert may_finish.wait(THREAD_WAIT_S)
        conn.execute(t.insert(), [{"room": "r", "body": f"second {i}"} for i in range(3)])
        return "done"

    async def caller(scope: trio.CancelScope) -> None:
        with scope:
            outcome["result"] = await store.run(slow_transaction)
            await trio.lowlevel.checkpoint()  # the pending cancellation is delivered here
            outcome["after_checkpoint"] = True

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, scope)
        await first_half_written.wait()
        scope.cancel()
        may_finish.set()

    # The thread was waited for: the call returned, and Cancelled came only afterwards.
    assert outcome == {"result": "done"}
    assert scope.cancelled_caught
    assert await count_rows(store) == 6


async def test_cancel_while_waiting_for_a_connection_runs_nothing(db_url: str) -> None:
    s = Store(db_url, pool_size=1)
    t = _messages_table(s.metadata)
    await s.open()
    try:
        holding = trio.Event()
        release = threading.Event()

        def hold_the_only_connection(conn: sa.Connection) -> None:
            trio.from_thread.run_sync(holding.set)
            assert release.wait(THREAD_WAIT_S)

        async def waiter(scope: trio.CancelScope) -> None:
            with scope:
                await s.execute(t.insert(), {"room": "r", "body": "never"})

        scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run, hold_the_only_connection)
            await holding.wait()
            nursery.start_soon(waiter, scope)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            release.set()

        assert scope.cancelled_caught
        assert await count_rows(s) == 0
    finally:
        await s.close()


async def test_a_transaction_starts_before_the_tasks_that_were_ready_run(store: Store) -> None:
    """Under load the event loop always has tasks ready (requests, writes):
    a call's worker thread starts when the call is made, not after every one
    of them has had its turn."""
    started = threading.Event()
    seen: list[bool] = []

    def transaction(conn: sa.Connection) -> int:
        started.set()
        return int(conn.execute(sa.select(sa.literal(1))).scalar_one())

    async def ready_task() -> None:
        # (blocks the event loop: only a thread already started can set it)
        seen.append(started.wait(5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ready_task)
        assert await store.run(transaction) == 1
    assert seen == [True]


async def test_fifty_concurrent_tasks_all_land(store: Store) -> None:
    t = messages(store)

    async def writer(i: int) -> None:
        def read_then_write(conn: sa.Connection) -> None:
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            conn.execute(t.insert(), {"room": "busy", "body": f"task {i}"})

        await store.run(read_then_write)

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(writer, i)

    bodies = {r["body"] for r in await store.fetch_all(sa.select(t.c.body))}
    assert bodies == {f"task {i}" for i in range(50)}


async def test_unreachable_database_gives_store_error_without_the_password() -> None:
    s = Store("postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/postgres")

    with pytest.raises(StoreUnavailable) as info:
        await s.open()

    message = str(info.value)
    assert "connecting to the database failed" in message
    assert "127.0.0.1:1" in message and "***" in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in "".join(traceback.format_exception(info.value))


async def test_operations_before_open_give_a_clear_store_error() -> None:
    s = Store("sqlite://")
    with pytest.raises(StoreError, match="not open; call open"):
        await s.fetch_all(sa.select(sa.literal(1)))


async def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "does" / "not" / "exist" / "yet.db"
    s = Store(f"sqlite:///{path}")
    _messages_table(s.metadata)
    await s.open()
    try:
        await s.execute(messages(s).insert(), {"room": "r", "body": "b"})
    finally:
        await s.close()
    assert path.is_file()


async def test_sqlite_file_uses_wal_journal_mode(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    await s.open()
    try:
        row = await s.fetch_one(sa.text("PRAGMA journal_mode"))
    finally:
        await s.close()
    assert row is not None and row["journal_mode"] == "wal"


async def test_in_memory_sqlite_is_shared_by_all_worker_threads() -> None:
    s = Store("sqlite://")
    t = _messages_table(s.metadata)
    await s.open()
    try:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(s.execute, t.insert(), {"room": "mem", "body": str(i)})
        assert await count_rows(s) == 20
    finally:
        await s.close()


def _end_sessions(url: str) -> int:
    """End every session of ``url``'s database, as a restart would: the number
    ended, once their processes are gone (PostgreSQL's own wait, at most 10 s)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            ended = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": sa.engine.make_url(url).database}).scalars().all()
    finally:
        admin.dispose()
    assert all(ended), "the sessions did not end within 10 s"
    return len(ended)


@contextlib.asynccontextmanager
async def pg_store(tmp_path: Path, pool_size: int) -> AsyncIterator[tuple[str, Store]]:
    """An open store on a PostgreSQL database of its own, with the messages
    table: its URL (to end its sessions from outside) and the store."""
    with database_url("postgresql", tmp_path) as url:
        store = Store(url, pool_size=pool_size)
        _messages_table(store.metadata)
        await store.open()
        try:
            yield url, store
        finally:
            await store.close()


async def test_connections_dropped_by_the_server_are_replaced_without_an_error(
        tmp_path: Path) -> None:
    """After PostgreSQL restarts (or an administrator ends the sessions), every
    pooled connection is dead: the next operations, writes, reads and whole
    transactions, get fresh ones instead of failing once per pooled connection."""
    async with pg_store(tmp_path, 4) as (url, store):
        t = messages(store)

        async def insert(n: int) -> None:
            await store.execute(t.insert(), {"room": "r", "body": f"{n}"})

        async def fill_the_pool() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(count_rows, store)

        await fill_the_pool()
        for n in range(4):
            await insert(n)
        assert _end_sessions(url) >= 1
        for n in range(4, 8):
            await insert(n)
        await fill_the_pool()
        assert _end_sessions(url) >= 1
        assert await count_rows(store) == 8  # a read on its own
        assert len(await store.fetch_all(t.select())) == 8
        assert _end_sessions(url) >= 1

        def two_more(conn: sa.Connection) -> int:
            conn.execute(t.insert(), [{"room": "r", "body": "8"}, {"room": "r", "body": "9"}])
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())

        assert await store.run(two_more) == 10
        await fill_the_pool()
        assert _end_sessions(url) >= 1
        assert await store.run(two_more, autocommit=True) == 12


async def test_a_connection_the_server_closed_is_replaced_when_taken_from_the_pool(
        tmp_path: Path) -> None:
    """Found on its socket before anything is sent: even an autocommit run,
    which is never tried twice (its statement may have been carried out),
    gets a new connection instead of the closed one."""
    async with pg_store(tmp_path, 2) as (url, store):
        t = messages(store)
        assert await count_rows(store) == 0  # (a connection in the pool)
        assert _end_sessions(url) >= 1

        def insert(conn: sa.Connection) -> int:
            return int(conn.execute(t.insert(), {"room": "r", "body": "b"}).rowcount)

        assert await store.run(insert, autocommit=True) == 1
        assert await count_rows(store) == 1


async def test_a_connection_closed_unseen_is_found_at_its_begin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection closed by the server just as it is taken from the pool
    (its socket still looked open) fails at its BEGIN, before anything was
    done: the call is tried once more on a new connection. So is a read,
    which is the SELECT alone."""
    monkeypatch.setattr(store_module, "_closed_by_server", lambda dbapi_connection: False)
    async with pg_store(tmp_path, 2) as (url, store):
        t = messages(store)
        await store.execute(t.insert(), {"room": "r", "body": "0"})
        assert _end_sessions(url) >= 1
        await store.execute(t.insert(), {"room": "r", "body": "1"})
        assert _end_sessions(url) >= 1
        assert await count_rows(store) == 2


async def test_a_connection_lost_inside_a_transaction_fails_it_once(tmp_path: Path) -> None:
    """Only a connection found dropped before anything was sent is replaced
    silently: one lost after the transaction began fails the call (it is not
    run a second time), and nothing of it is stored."""
    async with pg_store(tmp_path, 2) as (_, store):
        t = messages(store)
        calls = 0

        def insert_then_lose_the_connection(conn: sa.Connection) -> None:
            nonlocal calls
            calls += 1
            conn.execute(t.insert(), {"room": "r", "body": "lost"})
            conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))

        with pytest.raises(StoreUnavailable):
            await store.run(insert_then_lose_the_connection)
        assert calls == 1
        assert await count_rows(store) == 0


async def test_a_read_on_its_own_is_one_statement_on_postgresql(tmp_path: Path) -> None:
    """fetch_one and fetch_all of a SELECT send the SELECT alone (no BEGIN
    before it, no COMMIT after): PostgreSQL starts its transaction with that
    statement; so does each statement of an autocommit run. A transaction of
    :meth:`Store.run` begins before its first statement."""
    async with pg_store(tmp_path, 2) as (_, store):
        alone = sa.select((sa.func.transaction_timestamp()
                           == sa.func.statement_timestamp()).label("alone"))
        row = await store.fetch_one(alone)
        assert row is not None and row["alone"] is True
        assert [r["alone"] for r in await store.fetch_all(alone)] == [True]

        def in_run(conn: sa.Connection) -> bool:
            return bool(conn.execute(alone).scalar_one())

        assert await store.run(in_run) is False

        def each_alone(conn: sa.Connection) -> list[bool]:
            return [bool(conn.execute(alone).scalar_one()) for _ in range(2)]

        assert await store.run(each_alone, autocommit=True) == [True, True]


async def test_a_wrong_statement_is_a_store_error_not_unavailable(store: Store) -> None:
    with pytest.raises(StoreError) as info:
        await store.fetch_all(sa.text("SELECT * FROM no_such_table"))
    assert not isinstance(info.value, StoreUnavailable)
    assert "no_such_table" in str(info.value)


async def test_sqlite_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = Store(f"sqlite:///{path}", pool_size=2, busy_timeout=0.05)
    _messages_table(store.metadata)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.execute(messages(store).insert(), {"room": "r", "body": "b"})
        other.execute("ROLLBACK")
        await store.execute(messages(store).insert(), {"room": "r", "body": "b"})
        assert await count_rows(store) == 1
    finally:
        other.close()
        await store.close()


# -- portable statements: upsert, ON CONFLICT, transactions serialized on a key ------


def counters(store: Store) -> sa.Table:
    table: sa.Table = store.metadata.tables["counters"]
    return table


async def counter_rows(store: Store) -> dict[tuple[str, str], tuple[int, str | None]]:
    t = counters(store)
    rows = await store.fetch_all(sa.select(t))
    return {(r["tenant"], r["name"]): (r["value"], r["note"]) for r in rows}


async def test_upsert_inserts_then_overwrites_the_row_with_the_same_key(store: Store) -> None:
    t = counters(store)
    await store.execute(store.upsert(t, {"tenant": "a", "name": "x", "value": 1, "note": "one"},
                                     key=["tenant", "name"]))
    await store.execute(store.upsert(t, {"tenant": "a", "name": "x", "value": 2, "note": "two"},
                                     key=["tenant", "name"]))
    await store.execute(store.upsert(t, {"tenant": "b", "name": "x", "value": 7},
                                     key=["tenant", "name"]))
    assert await counter_rows(store) == {("a", "x"): (2, "two"), ("b", "x"): (7, None)}


async def test_upsert_overwrites_only_the_columns_named_in_update(store: Store) -> None:
    t = counters(store)
    await store.execute(store.upsert(t, {"tenant": "a", "name": "x", "value": 1, "note": "kept"},
                                     key=["tenant", "name"]))
    await store.execute(store.upsert(t, {"tenant": "a", "name": "x", "value": 5, "note": "new"},
                                     key=["tenant", "name"], update=["value"]))
    assert await counter_rows(store) == {("a", "x"): (5, "kept")}


async def test_upsert_with_nothing_to_update_keeps_the_first_row(store: Store) -> None:
    t = counters(store)
    for value in (1, 2):
        await store.execute(store.upsert(t, {"tenant": "a", "name": "x", "value": value},
                                         key=["tenant", "name"], update=[]))
    assert await counter_rows(store) == {("a", "x"): (1, None)}


async def test_upsert_of_many_rows_and_returning_in_one_statement(store: Store) -> None:
    t = counters(store)
    await store.execute(t.insert(), {"tenant": "a", "name": "x", "value": 1})
    rows = [{"tenant": "a", "name": n, "value": v} for n, v in (("x", 10), ("y", 20))]
    assert await store.execute_many(store.upsert(t, key=["tenant", "name"]), rows) == 2
    assert await counter_rows(store) == {("a", "x"): (10, None), ("a", "y"): (20, None)}

    def bump(conn: sa.Connection) -> list[int]:
        stmt = store.upsert(t, {"tenant": "a", "name": "z", "value": 3}, key=["tenant", "name"])
        return list(conn.execute(stmt.returning(t.c.value)).scalars())

    assert await store.run(bump) == [3]


async def test_insert_takes_on_conflict_clauses_on_both_databases(store: Store) -> None:
    t = counters(store)
    stmt = store.insert(t).values(tenant="a", name="x", value=1)
    assert await store.execute(stmt.on_conflict_do_nothing(
        index_elements=[t.c.tenant, t.c.name])) == 1
    assert await store.execute(stmt.on_conflict_do_nothing(
        index_elements=[t.c.tenant, t.c.name])) == 0
    again = store.insert(t).values(tenant="a", name="x", value=4)
    await store.execute(again.on_conflict_do_update(
        index_elements=[t.c.tenant, t.c.name], set_={"value": t.c.value + again.excluded.value}))
    assert await counter_rows(store) == {("a", "x"): (5, None)}


def _read_then_write(t: sa.Table, read: threading.Event | None = None,
                     release: threading.Event | None = None) -> Callable[[sa.Connection], int]:
    """A transaction that increments a counter by reading it first: two of them
    interleaved lose an update unless they are serialized."""

    def increment(conn: sa.Connection) -> int:
        value = conn.execute(sa.select(t.c.value).where(t.c.name == "hits")).scalar_one()
        if read is not None and release is not None:
            read.set()
            assert release.wait(THREAD_WAIT_S)
        conn.execute(t.update().where(t.c.name == "hits").values(value=value + 1))
        return int(value) + 1

    return increment


def _lock_waiters_or(url: str, done: threading.Event) -> None:
    """Return once a session of the database waits on a lock, or ``done`` is set."""
    if sa.engine.make_url(url).get_backend_name() != "postgresql":
        return  # SQLite: a second writer waits in BEGIN IMMEDIATE, unseen
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            while not done.is_set():
                waiting = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar_one()
                conn.rollback()  # pg_stat_activity is a snapshot per transaction
                if waiting:
                    return
                done.wait(0.01)
    finally:
        engine.dispose()


@pytest.mark.parametrize("how", ["argument", "argument among others", "inside",
                                 "among others"])
async def test_transactions_serialized_on_a_key_lose_no_update(store: Store, db_url: str,
                                                               how: str) -> None:
    """The first increment has read the counter and waits; the second, on the
    same key, must wait for it instead of reading the same value (on
    PostgreSQL's READ COMMITTED it would, and one of the two updates would be
    lost)."""
    t = counters(store)
    await store.execute(t.insert(), {"tenant": "a", "name": "hits", "value": 0})
    read, release, second_done = threading.Event(), threading.Event(), threading.Event()

    def serialized(fn: Callable[[sa.Connection], int]) -> Callable[[sa.Connection], int]:
        def run(conn: sa.Connection) -> int:
            if how == "among others":
                serialize_on_each(conn, [("other", "x"), ("counter", "a", 1)])
            else:
                serialize_on(conn, "counter", "a", 1)
            return fn(conn)
        return run

    async def increment(fn: Callable[[sa.Connection], int]) -> None:
        if how == "argument":
            await store.run(fn, serialize_on=("counter", "a", 1))
        elif how == "argument among others":
            await store.run(fn, serialize_on=[("other", "x"), ("counter", "a", 1)])
        else:
            await store.run(serialized(fn))

    async def second() -> None:
        await increment(_read_then_write(t))
        second_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(increment, _read_then_write(t, read, release))
        await trio.to_thread.run_sync(read.wait, THREAD_WAIT_S)
        nursery.start_soon(second)
        await trio.to_thread.run_sync(_lock_waiters_or, db_url, second_done)
        release.set()
    assert (await counter_rows(store))[("a", "hits")] == (2, None)


async def test_transactions_serialized_on_other_keys_do_not_wait_for_each_other(
        tmp_path: Path) -> None:
    """PostgreSQL only: SQLite runs one writing transaction at a time, whatever the key."""
    with database_url("postgresql", tmp_path) as url:
        s = Store(url)
        t = _counters_table(s.metadata)
        await s.open()
        await _other_keys_go_through(s, t)


async def _other_keys_go_through(s: Store, t: sa.Table) -> None:
    try:
        await s.execute(t.insert(), {"tenant": "a", "name": "hits", "value": 0})
        read, release = threading.Event(), threading.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: s.run(_read_then_write(t, read, release),
                                             serialize_on=("counter", "a")))
            await trio.to_thread.run_sync(read.wait, THREAD_WAIT_S)
            # the first one still holds its key: another key goes through at once
            assert await s.run(lambda conn: 42, serialize_on=("counter", "b")) == 42
            release.set()
    finally:
        await s.close()


async def test_a_read_goes_through_while_a_writer_holds_its_transaction(
        store: Store) -> None:
    """``Store.read`` takes no write lock (SQLite's deferred BEGIN): it does not
    wait for a writing transaction, and its statements see one snapshot,
    without what that transaction has not committed."""
    t = messages(store)
    await store.execute(t.insert(), {"room": "r", "body": "before"})
    wrote, release = threading.Event(), threading.Event()

    def write(conn: sa.Connection) -> None:
        conn.execute(t.insert(), {"room": "r", "body": "uncommitted"})
        wrote.set()
        release.wait(THREAD_WAIT_S)

    def read_twice(conn: sa.Connection) -> tuple[list[str], int]:
        bodies = [row.body for row in conn.execute(sa.select(t.c.body))]
        return bodies, conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run, write)
        await trio.to_thread.run_sync(wrote.wait, THREAD_WAIT_S)
        assert await store.read(read_twice) == (["before"], 1)
        release.set()
    assert await count_rows(store) == 2


async def test_store_helpers_refuse_what_they_cannot_do(store: Store) -> None:
    with pytest.raises(ValueError, match="key"):
        store.upsert(counters(store), {"tenant": "a"}, key=[])
    with pytest.raises(ValueError, match="key"):
        await store.run(lambda conn: serialize_on(conn))
    with pytest.raises(ValueError, match="key"):
        await store.run(lambda conn: serialize_on_each(conn, [("a",), ()]))
    with pytest.raises(ValueError, match="key"):
        await store.run(lambda conn: None, serialize_on=[])
    with pytest.raises(ValueError, match="autocommit"):
        await store.run(lambda conn: None, serialize_on=("a",), autocommit=True)
