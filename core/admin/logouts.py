"""The console's logouts, kept in the store: a logged-out session's cookie is
refused until it expires anyway, also after a restart and by a node started
after the logout (the nodes that run meanwhile learn it on the control
channel). The table has its own migration history, ``core_admin``, declared
with the plugins' when the console is on."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from ..migrations import History, PluginSchema
from ..store import Store

#: The migration history of the console's table.
HISTORY = "core_admin"
TABLE = "admin_logouts"
#: Longest session id kept (the console's ids are 24 characters).
ID_MAX = 64


def declare(metadata: sa.MetaData) -> PluginSchema:
    """Add the console's table to ``metadata``; its schema and history."""
    table = sa.Table(
        TABLE, metadata,
        sa.Column("session_id", sa.String(ID_MAX), primary_key=True),
        sa.Column("until", sa.Float, nullable=False),
    )
    return PluginSchema(HISTORY, (table,), History(HISTORY, Path(__file__).parent / "migrations"))


class Logouts:
    """Reads and writes the console's logouts."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def table(self) -> sa.Table:
        """(Declared with the plugins' tables when the server starts.)"""
        return self.store.metadata.tables[TABLE]

    async def add(self, session_id: str, until: float) -> None:
        """Keep a logout (until ``until``, UNIX time); expired ones are dropped,
        and so is an earlier row of the same session (a copy of its cookie
        logged out on another node before the first logout reached it)."""
        table = self.table
        session_id = session_id[:ID_MAX]

        def write(conn: sa.Connection) -> None:
            conn.execute(sa.delete(table).where(sa.or_(table.c.until <= time.time(),
                                                       table.c.session_id == session_id)))
            conn.execute(sa.insert(table).values(session_id=session_id, until=until))

        await self.store.run(write)

    async def current(self) -> list[tuple[str, float]]:
        """The logouts whose cookies have not expired yet."""
        table = self.table
        rows = await self.store.fetch_all(
            sa.select(table.c.session_id, table.c.until).where(table.c.until > time.time()))
        return [(row["session_id"], row["until"]) for row in rows]
