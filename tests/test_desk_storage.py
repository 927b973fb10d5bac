"""The desk's statements on a real PostgreSQL database: what they read as a
tenant's tickets pile up."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from databases import database_url
from switchboard.core import Store
from switchboard.plugins.desk.storage import DeskStorage

TICKETS = 2_000


def flush_statistics(conn: sa.Connection) -> None:
    """Have this backend report what it has read when its transaction ends
    (not up to a second later)."""
    conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")


def ticket_reads(url: str) -> int:
    """Rows and index entries read so far from the tickets' table of the
    schema of ``url`` (by sequential scans, and from its indexes), as the
    server's statistics count them."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(
                "SELECT t.seq_tup_read + coalesce(sum(i.idx_tup_read), 0)"
                " FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i USING (relid)"
                " WHERE t.schemaname = current_schema() AND t.relname = 'desk_tickets'"
                " GROUP BY t.seq_tup_read").scalar_one())
    finally:
        engine.dispose()


async def test_the_next_ticket_number_is_read_without_reading_the_tenants_tickets(
        tmp_path: Path) -> None:
    # A statement PostgreSQL has prepared keeps its plan as the table grows
    # (until the table is next analyzed): planned on a small table, max()
    # became an aggregate over all of the tenant's tickets (the table or its
    # index read through), for each batch of new tickets: at 1,000 tickets/s
    # on a new database, a batch's transaction grew from 7 to 24 ms in 30 s.
    with database_url("postgresql", tmp_path, tables=True) as url:
        store = Store(url, pool_size=1)  # (one connection: one plan cache)
        await store.open(prepare=lambda conn: None)
        try:
            storage = DeskStorage()
            storage.declare(sa.MetaData())
            storage.start(store)

            def plan_on_the_empty_table(conn: sa.Connection) -> None:
                conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
                for _ in range(6):  # (prepared by the driver from its fifth run)
                    assert storage.number_and_loads(conn, "acme", ["ana"]) == (1, {})

            def fill(conn: sa.Connection) -> None:
                conn.execute(storage.tickets.insert(), [{
                    "id": f"t{n}", "tenant_id": "acme", "number": n, "subject": "s",
                    "status": "open", "priority": "normal", "customer_id": "c",
                    "channel": "web", "tags": [], "conversation_id": f"ticket:t{n}",
                    "version": 1, "created_at": 0.0, "updated_at": 0.0}
                    for n in range(1, TICKETS + 1)])
                flush_statistics(conn)

            def next_number(conn: sa.Connection) -> int:
                number, _ = storage.number_and_loads(conn, "acme", ["ana"])
                flush_statistics(conn)
                return number

            await store.run(plan_on_the_empty_table)
            await store.run(fill)
            before = ticket_reads(url)
            assert await store.run(next_number) == TICKETS + 1
            reads = ticket_reads(url) - before
            assert reads <= 1, f"{reads} rows or index entries read for the next number"
        finally:
            await store.close()
