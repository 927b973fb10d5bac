"""SLA timers: ``sla:warning`` before and ``sla:breached`` at each due time.

A ticket's due times (first response, resolution) are stored with it, set
from the targets of its priority; a ticket ``pending`` keeps the time left
instead, and gets due times again when it leaves ``pending``. One task keeps
a heap of the coming moments on Trio's clock, filled from the database at
start-up and from each change of a ticket. When a moment comes, the ticket
is read again: a due time that moved, a target met (the first agent reply,
a resolution) or a ticket pending sends nothing; otherwise the warning or
breach is marked sent in the ticket's row (a conditional UPDATE, so two
nodes or a restart never send it twice) and published to the assignee's
``user:{id}`` and to ``queue:{id}`` (the agents room without a queue).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Any, Literal

import sqlalchemy as sa
import trio
from switchboard.core import App, StoreUnavailable, Ticket, TicketChange, agents_room, user_room

from .payloads import ACTIVE, QUEUE_ROOM, DeskSettings
from .storage import DeskStorage
from .tickets import Tickets

log = logging.getLogger("switchboard.desk")
Target = Literal["first_response", "resolution"]
Kind = Literal["warning", "breached"]
TARGETS: tuple[Target, ...] = ("first_response", "resolution")
#: Seconds before trying again when the database did not answer.
RETRY = 5.0

#: (when on Trio's clock, order, tenant, ticket id, target, kind, due time)
Entry = tuple[float, int, str, str, Target, Kind, float]


class SlaTimers:
    app: App
    settings: DeskSettings

    def __init__(self, storage: DeskStorage, tickets: Tickets) -> None:
        self.storage = storage
        self.tickets = tickets
        self._heap: list[Entry] = []
        self._order = itertools.count()
        self._added = trio.Event()
        tickets.listeners.append(self._changed)

    def start(self, app: App, settings: DeskSettings) -> None:
        self.app = app
        self.settings = settings

    def schedule(self, ticket: Ticket) -> None:
        clock = self.tickets.clock
        pushed = False
        for target in TARGETS:
            due = ticket.first_response_due if target == "first_response" \
                else ticket.resolution_due
            if due is None:
                continue
            moments: tuple[tuple[Kind, float], ...] = (
                ("warning", due - self.settings.sla_warning), ("breached", due))
            for kind, at in moments:
                entry: Entry = (clock.trio_time(at), next(self._order), ticket.tenant_id,
                                ticket.id, target, kind, due)
                heapq.heappush(self._heap, entry)
                pushed = True
        if pushed:
            self._added.set()

    async def _changed(self, change: TicketChange) -> None:
        self.schedule(change.ticket)

    async def run(self) -> None:
        """The background task: load the due times, then send what comes due."""
        rows = await self.app.store.fetch_all(self.storage.sla_pending())
        for row in rows:
            self.schedule(self.storage.ticket(row))
        while True:
            if not self._heap or self._heap[0][0] > trio.current_time():
                deadline = self._heap[0][0] if self._heap else float("inf")
                with trio.move_on_at(deadline):
                    await self._added.wait()
                self._added = trio.Event()
                continue
            entry = heapq.heappop(self._heap)
            try:
                await self._fire(entry)
            except StoreUnavailable as exc:
                log.warning("SLA %s of ticket %s not checked (%s); trying again in %g s",
                            entry[5], entry[3], exc, RETRY)
                heapq.heappush(self._heap, (trio.current_time() + RETRY, *entry[1:]))

    async def _fire(self, entry: Entry) -> None:
        _, _, tenant, ticket_id, target, kind, due = entry
        if kind == "warning" and self.tickets.clock.now() >= due:
            return  # came due at once (a target shorter than the warning): breach only
        storage = self.storage
        flag = f"{kind}:{target}"

        def mark(conn: sa.Connection) -> Ticket | None:
            row = storage.row(conn, tenant, ticket_id)
            if row is None or row["status"] not in ACTIVE or row["status"] == "pending":
                return None
            if row[f"{target}_due"] is None or abs(row[f"{target}_due"] - due) > 1e-6:
                return None  # moved or met since
            sent: str = row["sla_sent"] or ""
            if flag in sent.split(","):
                return None
            t = storage.tickets
            done = conn.execute(t.update().where(t.c.id == ticket_id, t.c.sla_sent == sent)
                                .values(sla_sent=f"{sent},{flag}" if sent else flag)).rowcount
            return storage.ticket(row) if done == 1 else None

        ticket = await self.app.store.run(mark, serialize_on=("desk-ticket", tenant, ticket_id))
        if ticket is None:
            return
        data: dict[str, Any] = {"ticket": ticket.to_json(), "target": target, "dueAt": due}
        event = f"sla:{kind}"
        if ticket.assignee_id is not None:
            await self.app.publish(tenant, user_room(ticket.assignee_id), event, data)
        room = agents_room(tenant) if ticket.queue_id is None else QUEUE_ROOM + ticket.queue_id
        await self.app.publish(tenant, room, event, data)
