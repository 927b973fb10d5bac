"""Statements of the plugins on a real PostgreSQL database, as a tenant's rows
pile up: what they read stays the same.

A statement PostgreSQL has prepared keeps its plan as its table grows (until
the table is next analyzed), and the driver prepares a statement from its
fifth run. Planned on a small table, max() became an aggregate over every row
it covers (the table or its index read through): at 1,000 tickets/s on a new
database, a batch of new tickets took 7 ms, then 24 ms 30 s later, reading
the tenant's tickets for the next number. Each test has the statements
planned on empty tables (the plan a new deployment keeps), fills the table,
then counts what the statements read."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from databases import database_url
from switchboard.core import Store
from switchboard.plugins.desk.storage import DeskStorage
from switchboard.plugins.pipeline import ranks
from switchboard.plugins.pipeline.storage import LAST_RANK, PipelineStorage
from switchboard.plugins.whatsapp.storage import WhatsAppStorage

ROWS = 2_000
T = TypeVar("T")


def flush_statistics(conn: sa.Connection) -> None:
    """Have this backend report what it has read when its transaction ends
    (not up to a second later)."""
    conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")


def reads_of(url: str, table: str) -> int:
    """Rows and index entries read so far from ``table`` of the schema of
    ``url`` (by sequential scans, and from its indexes), as the server's
    statistics count them."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(
                "SELECT t.seq_tup_read + coalesce(sum(i.idx_tup_read), 0)"
                " FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i USING (relid)"
                " WHERE t.schemaname = current_schema() AND t.relname = %(table)s"
                " GROUP BY t.seq_tup_read", {"table": table}).scalar_one())
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def one_connection_store(tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    """A store of one connection (one plan cache) on a PostgreSQL schema with
    the plugins' tables, and its URL."""
    with database_url("postgresql", tmp_path, tables=True) as url:
        store = Store(url, pool_size=1)
        await store.open(prepare=lambda conn: None)
        try:
            yield url, store
        finally:
            await store.close()


def planned_on_empty_tables(run: Callable[[sa.Connection], object]) -> Callable[
        [sa.Connection], None]:
    """``run`` six times on a connection that keeps generic plans."""
    def plan(conn: sa.Connection) -> None:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        for _ in range(6):
            run(conn)
    return plan


async def reading(store: Store, url: str, table: str, run: Callable[[sa.Connection], T]
                  ) -> tuple[T, int]:
    """What ``run`` returns, and the rows and index entries of ``table`` it read."""
    def counted(conn: sa.Connection) -> T:
        result = run(conn)
        flush_statistics(conn)
        return result

    before = reads_of(url, table)
    result = await store.run(counted)
    return result, reads_of(url, table) - before


async def test_the_next_ticket_number_is_read_without_reading_the_tenants_tickets(
        tmp_path: Path) -> None:
    async with one_connection_store(tmp_path) as (url, store):
        storage = DeskStorage()
        storage.declare(sa.MetaData())
        storage.start(store)

        def next_number(conn: sa.Connection) -> int:
            return storage.number_and_loads(conn, "acme", ["ana"])[0]

        def fill(conn: sa.Connection) -> None:
            conn.execute(storage.tickets.insert(), [{
                "id": f"t{n}", "tenant_id": "acme", "number": n, "subject": "s",
                "status": "open", "priority": "normal", "customer_id": "c",
                "channel": "web", "tags": [], "conversation_id": f"ticket:t{n}",
                "version": 1, "created_at": 0.0, "updated_at": 0.0}
                for n in range(1, ROWS + 1)])
            flush_statistics(conn)

        await store.run(planned_on_empty_tables(next_number))
        await store.run(fill)
        number, reads = await reading(store, url, "desk_tickets", next_number)
        assert number == ROWS + 1
        assert reads <= 1, f"{reads} rows or index entries read for the next number"


async def test_a_lead_goes_to_the_end_of_a_stage_without_reading_the_stage(
        tmp_path: Path) -> None:
    async with one_connection_store(tmp_path) as (url, store):
        storage = PipelineStorage()
        storage.declare(sa.MetaData())
        leads = storage.leads
        assert leads is not None
        made = iter(range(1, 10 * ROWS))

        def lead(stage: str, rank: str | None = None) -> dict[str, Any]:
            n = next(made)
            return {"tenant_id": "acme", "id": f"lead{n}", "pipeline_id": "sales",
                    "stage_id": stage, "title": f"Lead {n}", "contact": {},
                    "tags": [], "fields": {}, "version": 1, "created_at": 0.0,
                    "updated_at": 0.0, **({"rank": rank} if rank is not None else {})}

        def add_last(conn: sa.Connection) -> str:
            row = storage.create_lead(conn, lead("won"), after_id=None, before_id=None,
                                      actor="ana", record={})
            assert row is not None
            return str(row["rank"])

        def last_rank_of_won(conn: sa.Connection) -> str:
            # what a move to the end of "won" reads with the lead moved
            seen: list[Any] = []
            storage.change(conn, "acme", "lead1", version=None, action="noted",
                           actor="ana", at=0.0, last_rank_in="won",
                           plan=lambda _, current: seen.append(current[LAST_RANK]) or {})
            return str(seen[0])

        def fill(conn: sa.Connection) -> str | None:
            rank: str | None = None
            rows = []
            for _ in range(ROWS):
                rank = ranks.between(rank, None)
                rows.append(lead("won", rank))
            conn.execute(leads.insert(), rows)
            flush_statistics(conn)
            return rank

        await store.run(lambda conn: conn.execute(leads.insert(), [lead("new", "a")]))
        await store.run(planned_on_empty_tables(add_last))
        await store.run(planned_on_empty_tables(last_rank_of_won))
        await store.run(lambda conn: conn.execute(leads.delete().where(
            leads.c.stage_id == "won")))
        last = await store.run(fill)
        rank, reads = await reading(store, url, "pipeline_leads", add_last)
        assert rank == ranks.between(last, None)
        assert reads <= 5, f"{reads} rows or index entries read to add a lead"
        top, reads = await reading(store, url, "pipeline_leads", last_rank_of_won)
        assert top == rank
        assert reads <= 5, f"{reads} rows or index entries read to move a lead"


async def test_the_last_message_of_a_number_is_read_without_reading_its_messages(
        tmp_path: Path) -> None:
    """At start-up the WhatsApp plugin reads the last chat message it recorded
    for each number with a recent contact (it used to aggregate both tables
    whole)."""
    async with one_connection_store(tmp_path) as (url, store):
        storage = WhatsAppStorage()
        storage.declare(sa.MetaData())

        def last(conn: sa.Connection) -> int:
            return storage.last_message_id(conn, "acme", "main")

        def fill(conn: sa.Connection) -> None:
            conn.execute(storage.inbound.insert(), [
                {"tenant": "acme", "session": session, "provider_id": f"wamid.{session}.{n}",
                 "message_id": n} for session in ("main", "other") for n in range(1, ROWS + 1)])
            conn.execute(storage.outbox.insert(), [
                {"tenant": "acme", "session": session, "conversation": "whatsapp:main:5511",
                 "message_id": ROWS + n + (0 if session == "main" else ROWS), "to": "5511",
                 "type": "text", "content": "{}", "status": "sent", "attempts": 1,
                 "created_at": 0.0} for session in ("main", "other") for n in range(1, ROWS + 1)])
            flush_statistics(conn)

        await store.run(planned_on_empty_tables(last))
        await store.run(fill)
        for table in ("whatsapp_inbound", "whatsapp_outbox"):
            top, reads = await reading(store, url, table, last)
            assert top == 2 * ROWS
            assert reads <= 2, f"{reads} rows or index entries of {table} read"
