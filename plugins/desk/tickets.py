"""The ticket engine: the ``tickets`` service, and the announcement of every change.

A change is one transaction serialized on the ticket: read it, check the
version the caller based the change on (``conflict`` with the current ticket
if another change came first), write it with a conditional UPDATE on its
version. Then it is announced as ``ticket:{kind}`` to the tenant's agents
room and to the customer's ``user:{id}`` room (between them, everyone who
may be in ``ticket:{id}``), reported to ``switchboard_ticket_changed`` and
passed to the desk's own listeners (assignment, SLA timers).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from switchboard.core import (
    CONFLICT,
    NOT_FOUND,
    App,
    Batcher,
    BrokerUnavailable,
    ChatConversation,
    ChatParticipant,
    ClientError,
    Publication,
    StoreUnavailable,
    Ticket,
    TicketChange,
    TicketPage,
    agents_room,
    is_room_name,
    serialize_on,
    trio_time_of,
    user_room,
    wall_time,
)
from switchboard.core.services import TicketChangeKind, TicketStatus

from .payloads import (
    CONVERSATION_PREFIX,
    MAX_PAGE,
    QUEUE_ROOM,
    DeskSettings,
    check_id,
    check_note,
    check_status,
    check_subject,
    check_tags,
    invalid,
)
from .queues import Queue, QueueDirectory
from .storage import DeskStorage, LoadDeltas, load_delta

Listener = Callable[[TicketChange], Awaitable[None]]
Mutation = Callable[[sa.Connection, Ticket], dict[str, Any]]
#: The members of a queue who may get a new ticket now, in the order to try
#: them, with their capacity (given by the agents' side of the desk).
Candidates = Callable[[Queue], list[tuple[str, int]]]
#: Members of a queue to offer a ticket to, in order, with their capacity.
Order = list[tuple[str, int]]
#: A new ticket as created, and as auto-assigned in the same transaction.
Written = tuple[Ticket, Ticket | None]
#: The same, and what went wrong announcing it (stored all the same).
Created = tuple[Ticket, Ticket | None, Exception | None]


class Clock:
    """Wall-clock seconds that advance with Trio's clock (so ``MockClock``
    drives SLA due times in tests); set from the wall clock when the first
    server of the process (of the Trio run) starts."""

    def now(self) -> float:
        return wall_time()

    def trio_time(self, wall: float) -> float:
        """The Trio clock time of a wall-clock time."""
        return trio_time_of(wall)


@attrs.frozen
class NewTicket:
    """A ticket to create: its row (without its number) and, to offer it to
    its members, its queue."""

    values: dict[str, Any]
    queue: Queue | None
    by: str | None = None


def conflict(current: Ticket, message: str) -> ClientError:
    return ClientError(CONFLICT, message, ticket=current.to_json())


def not_found(ticket_id: str) -> ClientError:
    return ClientError(NOT_FOUND, f"no ticket {ticket_id!r}", ticketId=ticket_id)


class Tickets:
    """The engine of the tickets, and the ``tickets`` service."""

    app: App
    settings: DeskSettings
    clock: Clock

    def __init__(self, storage: DeskStorage, queues: QueueDirectory) -> None:
        self.storage = storage
        self.queues = queues
        #: Awaited after each change is announced (assignment, SLA timers).
        self.listeners: list[Listener] = []
        #: Who may get a new ticket of a queue (None: no auto-assignment).
        self.candidates: Candidates | None = None
        #: Told who got a new ticket of a queue (for round robin).
        self.chosen: Callable[[str, str, str], None] = lambda tenant, queue, user: None
        #: Writes new tickets in batches: tickets created at the same time share
        #: one transaction (run by the plugin in the server's nursery).
        self.writer: Batcher[NewTicket, Created] = Batcher(
            self._write_new, max_batch=200,
            retry_alone=lambda exc: not isinstance(exc, StoreUnavailable))

    def start(self, app: App, settings: DeskSettings) -> None:
        self.app = app
        self.settings = settings
        self.clock = Clock()
        self.writer.min_interval = settings.batch_interval

    # -- checks ------------------------------------------------------------------

    def check_priority(self, value: object) -> str:
        if value not in self.settings.priorities:
            raise invalid("priority", f"must be one of {', '.join(self.settings.priorities)}")
        assert isinstance(value, str)
        return value

    @staticmethod
    def check_queue_id(value: object, field: str = "queueId") -> str:
        queue = check_id(value, field)
        if not is_room_name("queue:" + queue):
            raise invalid(field, "must be letters, digits and _.:@+-")
        return queue

    async def queue_exists(self, tenant: str, queue: str) -> bool:
        return await self.queues.get(tenant, queue) is not None

    async def _check_queue(self, tenant: str, queue: str | None) -> Queue | None:
        if queue is None:
            return None
        self.check_queue_id(queue)
        found = await self.queues.get(tenant, queue)
        if found is None:
            raise ClientError(NOT_FOUND, f"no queue {queue!r}", field="queueId")
        return found

    def _due(self, priority: str, now: float) -> tuple[float | None, float | None]:
        target = self.settings.sla.get(priority)
        if target is None:
            return None, None
        return (None if target.first_response is None else now + target.first_response,
                None if target.resolution is None else now + target.resolution)

    # -- reading -----------------------------------------------------------------

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        check_id(tenant_id, "tenant")
        check_id(ticket_id, "ticketId")
        t = self.storage.tickets
        row = await self.app.store.fetch_one(
            t.select().where(t.c.id == ticket_id, t.c.tenant_id == tenant_id))
        return None if row is None else self.storage.ticket(row)

    async def require(self, tenant_id: str, ticket_id: str) -> Ticket:
        ticket = await self.get(tenant_id, ticket_id)
        if ticket is None:
            raise not_found(ticket_id)
        return ticket

    async def list(self, tenant_id: str, *, status: str | None = None,
                   queue_id: str | None = None, assignee_id: str | None = None,
                   customer_id: str | None = None, before: int | None = None,
                   limit: int = 50) -> TicketPage:
        check_id(tenant_id, "tenant")
        if status is not None:
            check_status(status)
        for value, field in ((queue_id, "queueId"), (assignee_id, "assigneeId"),
                             (customer_id, "customerId")):
            if value is not None:
                check_id(value, field)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise invalid("limit", f"must be between 1 and {MAX_PAGE}")
        rows = await self.app.store.fetch_all(self.storage.select(
            tenant_id, status=status, queue_id=queue_id, assignee_id=assignee_id,
            customer_id=customer_id, before=before, limit=limit + 1))
        tickets = [self.storage.ticket(row) for row in rows[:limit]]
        more = len(rows) > limit
        return TicketPage(tickets, tickets[-1].number if more else None)

    # -- creating ----------------------------------------------------------------

    async def create(self, tenant_id: str, *, subject: str, customer_id: str,
                     channel: str = "web", priority: str = "normal",
                     queue_id: str | None = None, assignee_id: str | None = None,
                     tags: Iterable[str] = (), by: str | None = None) -> Ticket:
        return await self.open(await self.prepare(
            tenant_id, subject=subject, customer_id=customer_id, channel=channel,
            priority=priority, queue_id=queue_id, assignee_id=assignee_id, tags=tags), by)

    async def prepare(self, tenant_id: str, *, subject: str, customer_id: str,
                      channel: str = "web", priority: str = "normal",
                      queue_id: str | None = None, assignee_id: str | None = None,
                      tags: Iterable[str] = ()) -> NewTicket:
        """A ticket to :meth:`open`, checked (its queue exists): a bulk creation
        checks every ticket before it opens any."""
        check_id(tenant_id, "tenant")
        subject = check_subject(subject)
        check_id(customer_id, "customerId")
        check_id(channel, "channel")
        self.check_priority(priority)
        if assignee_id is not None:
            check_id(assignee_id, "assigneeId")
        tag_list = check_tags(tags)
        queue = await self._check_queue(tenant_id, queue_id)
        ticket_id = str(uuid.uuid4())
        conversation = CONVERSATION_PREFIX + ticket_id
        now = self.clock.now()
        first_due, resolution_due = self._due(priority, now)
        return NewTicket(
            {"id": ticket_id, "tenant_id": tenant_id, "subject": subject,
             "status": "in_progress" if assignee_id else "open", "priority": priority,
             "queue_id": queue_id, "assignee_id": assignee_id, "customer_id": customer_id,
             "channel": channel, "tags": list(tag_list), "conversation_id": conversation,
             "version": 1, "created_at": now, "updated_at": now,
             "first_response_due": first_due, "resolution_due": resolution_due,
             "sla_sent": ""},
            queue if assignee_id is None else None)

    async def open(self, new: NewTicket, by: str | None = None) -> Ticket:
        """Create a prepared ticket (written with the others created at the same
        time, auto-assigned in that transaction) and announce it (with them)."""
        return self._opened(await self.writer.submit(
            new if by is None else attrs.evolve(new, by=by)))

    async def open_many(self, news: Sequence[NewTicket]) -> builtins.list[Ticket]:
        """:meth:`open` each, numbered in this order (queued at once, they
        share the batch writer's transactions)."""
        pending = [self.writer.enqueue(new) for new in news]
        return [self._opened(await each.wait()) for each in pending]

    @staticmethod
    def _opened(created: Created) -> Ticket:
        ticket, assigned, failure = created
        if failure is not None:  # stored, but not announced
            raise failure
        return ticket if assigned is None else assigned

    async def _write_new(self, items: Sequence[NewTicket]) -> Sequence[Created]:
        """The batch writer of new tickets: one transaction (one commit) of
        the chat service that creates their conversations and then writes the
        tickets, so that neither is stored without the other; each ticket
        numbered (serialized on its tenant) and, when it has a queue, given to
        the first free candidate of its queue (the active tickets of the
        candidates counted once, serialized with the tenant's other automatic
        assignments), all rows in one INSERT."""
        storage = self.storage
        orders: builtins.list[Order] = []
        for item in items:
            queue = item.queue
            if queue is None or self.candidates is None:
                orders.append([])
                continue
            order = self.candidates(queue)
            orders.append(order)
            if order and queue.strategy == "round_robin":
                # the next ticket of the batch starts after this one's first choice
                self.chosen(queue.tenant, queue.id, order[0][0])

        tenants = sorted({item.values["tenant_id"] for item in items})

        def write(conn: sa.Connection) -> Sequence[Written]:
            # (serialized on each tenant's numbers and automatic assignments)
            # each tenant's next number, and the loads of its candidates, read once
            numbers: dict[str, int] = {}
            load: dict[tuple[str, str], int] = {}
            for tenant in tenants:
                users = sorted({user for item, order in zip(items, orders, strict=True)
                                if item.values["tenant_id"] == tenant for user, _ in order})
                numbers[tenant], active = storage.number_and_loads(conn, tenant, users)
                load.update(((tenant, user), n) for user, n in active.items())
            rows: builtins.list[dict[str, Any]] = []
            deltas: LoadDeltas = {}
            out: builtins.list[Written] = []
            for item, order in zip(items, orders, strict=True):
                values = dict(item.values)
                tenant = values["tenant_id"]
                values["number"] = numbers[tenant]
                numbers[tenant] += 1
                created = storage.ticket(values)
                if item.queue is not None and item.queue.strategy == "least_busy":
                    order = sorted(order, key=lambda member: load.get((tenant, member[0]), 0))
                assigned = None
                for user, capacity in order:
                    if load.get((tenant, user), 0) < capacity:
                        load[(tenant, user)] = load.get((tenant, user), 0) + 1
                        # created and assigned in this one transaction: version 2
                        values.update(assignee_id=user, status="in_progress", version=2)
                        assigned = attrs.evolve(created, assignee_id=user,
                                                status="in_progress", version=2)
                        break
                load_delta(deltas, tenant, None, (values.get("assignee_id"), values["status"]))
                rows.append(values)
                out.append((created, assigned))
            storage.insert_new(conn, rows, deltas)
            return out

        # their conversations and the tickets in one transaction of the chat service
        _, written = await self.app.service("chat").create_conversations_with([ChatConversation(
            item.values["tenant_id"], item.values["conversation_id"],
            item.values["subject"][:200],
            (ChatParticipant(item.values["customer_id"], "customer"),)) for item in items], write,
            serialize_on=[key for tenant in tenants for key in (
                ("desk-number", tenant), ("desk-assign", tenant))])
        # (after the commit, nothing may raise: the batch would be written again)
        try:
            await self._announce_new(items, written)
        except Exception as exc:
            if not isinstance(exc, (BrokerUnavailable, ClientError)):
                self.app.task_failed("announcing new tickets", exc)
            return [(ticket, assigned, exc) for ticket, assigned in written]
        return [(ticket, assigned, None) for ticket, assigned in written]

    async def _announce_new(self, items: Sequence[NewTicket], written: Sequence[Written]
                            ) -> None:
        """Announce a batch of new tickets at once: each ``ticket:created``,
        then ``ticket:assigned`` when it was auto-assigned (or ``ticket:queued``
        to its queue when every member was full), the agents room's in a row
        (delivered as one run: one write to each agent for the batch), then
        each customer's."""
        changes: builtins.list[TicketChange] = []
        queued: builtins.list[Publication] = []
        for item, (ticket, assigned) in zip(items, written, strict=True):
            changes.append(TicketChange("created", ticket, None, item.by))
            if assigned is not None:
                # (the round-robin turn moved on when the batch was planned)
                changes.append(TicketChange("assigned", assigned, ticket, None,
                                            reason="auto_assign"))
            elif (ticket.queue_id is not None and ticket.assignee_id is None
                  and self.candidates is not None):
                # every free member was tried: it waits in its queue
                queued.append(Publication(ticket.tenant_id, QUEUE_ROOM + ticket.queue_id,
                                          "ticket:queued", {"ticket": ticket.to_json()}))
        agents: builtins.list[Publication] = []
        customers: builtins.list[Publication] = []
        for change in changes:
            event, to_agents, to_customer = self._event(change)
            tenant = change.ticket.tenant_id
            agents.append(Publication(tenant, agents_room(tenant), event, to_agents))
            customers.append(Publication(tenant, user_room(change.ticket.customer_id), event,
                                         to_customer))
        await self.app.hub.publish_many(agents + customers + queued)
        for change in changes:
            await self._changed(change)

    # -- changing ----------------------------------------------------------------

    async def change(self, tenant_id: str, ticket_id: str, kind: TicketChangeKind,
                     mutate: Mutation, *, version: int | None = None, by: str | None = None,
                     note: str | None = None, reason: str | None = None) -> Ticket:
        """Apply ``mutate`` (the new column values, from the current ticket) in
        one transaction serialized on the ticket, and announce it; a mutation
        with no values changes nothing and announces nothing."""
        check_id(tenant_id, "tenant")
        check_id(ticket_id, "ticketId")
        storage = self.storage
        now = self.clock.now()

        def apply(conn: sa.Connection) -> tuple[Ticket, Ticket]:
            row = storage.row(conn, tenant_id, ticket_id)
            if row is None:
                raise not_found(ticket_id)
            current = storage.ticket(row)
            if version is not None and version != current.version:
                raise conflict(current, f"ticket changed since version {version}; "
                                        f"it is at version {current.version}")
            values = mutate(conn, current)
            if not values:
                return current, current
            values.update(version=current.version + 1, updated_at=now)
            written = storage.update(conn, current, values)
            if written is None:
                fresh = storage.ticket(storage.row(conn, tenant_id, ticket_id))
                raise conflict(fresh, "ticket changed meanwhile")
            return current, storage.ticket(written)

        previous, ticket = await self.app.store.run(
            apply, serialize_on=("desk-ticket", tenant_id, ticket_id))
        if kind == "status" and not previous.is_active and ticket.is_active:
            kind = "reopened"
        if ticket.version != previous.version:
            await self.announce(TicketChange(kind, ticket, previous, by, note, reason))
        return ticket

    async def update(self, tenant_id: str, ticket_id: str, *, version: int | None = None,
                     by: str | None = None, subject: str | None = None,
                     priority: str | None = None, tags: Iterable[str] | None = None
                     ) -> Ticket:
        values: dict[str, Any] = {}
        if subject is not None:
            values["subject"] = check_subject(subject)
        if priority is not None:
            values["priority"] = self.check_priority(priority)
        if tags is not None:
            values["tags"] = list(check_tags(tags))

        def mutate(_: sa.Connection, current: Ticket) -> dict[str, Any]:
            changed = {k: v for k, v in values.items()
                       if v != (list(current.tags) if k == "tags" else getattr(current, k))}
            if "priority" in changed and current.is_active:
                changed.update(self._due_for_priority(current, changed["priority"]))
            return changed

        return await self.change(tenant_id, ticket_id, "updated", mutate, version=version,
                                 by=by)

    def _due_for_priority(self, current: Ticket, priority: str) -> dict[str, Any]:
        """New SLA due times after a change of priority, from the ticket's creation."""
        first, resolution = self._due(priority, current.created_at)
        values: dict[str, Any] = {"sla_sent": ""}
        if current.status == "pending":
            return values
        values["resolution_due"] = resolution
        if current.first_response_at is None:
            values["first_response_due"] = first
        return values

    def _status_values(self, current: Ticket, status: TicketStatus, now: float
                       ) -> dict[str, Any]:
        """The columns a move to ``status`` at ``now`` writes (SLA clocks paused
        while pending, stopped when resolved or closed, restarted on reopening)."""
        values: dict[str, Any] = {"status": status}
        row_left = {"first_response": current.first_response_due,
                    "resolution": current.resolution_due}
        if status == "pending" and current.status != "pending":
            for name, due in row_left.items():
                values[f"{name}_left"] = None if due is None else max(0.0, due - now)
                values[f"{name}_due"] = None
        elif current.status == "pending" and status in ("open", "in_progress"):
            values["_resume"] = True
        if status == "resolved":
            values.update(resolved_at=now, first_response_due=None, resolution_due=None)
        elif status == "closed":
            values.update(closed_at=now, first_response_due=None, resolution_due=None)
        elif current.status in ("resolved", "closed"):
            first, resolution = self._due(current.priority, now)
            if current.first_response_at is not None:
                first = None
            values.update(resolved_at=None, closed_at=None, sla_sent="")
            if status == "pending":  # reopened straight into pending: paused at once
                values.update(first_response_due=None, resolution_due=None,
                              first_response_left=None if first is None else first - now,
                              resolution_left=None if resolution is None else resolution - now)
            else:
                values.update(first_response_due=first, resolution_due=resolution)
        return values

    async def set_status(self, tenant_id: str, ticket_id: str, status: TicketStatus, *,
                         version: int | None = None, by: str | None = None) -> Ticket:
        status = check_status(status)
        if status == "closed":
            return await self.close(tenant_id, ticket_id, version=version, by=by)
        storage = self.storage
        now = self.clock.now()

        def mutate(conn: sa.Connection, current: Ticket) -> dict[str, Any]:
            if current.status == status:
                return {}
            values = self._status_values(current, status, now)
            if values.pop("_resume", False):
                row = storage.row(conn, tenant_id, ticket_id)
                for name in ("first_response", "resolution"):
                    left = row[f"{name}_left"]
                    values[f"{name}_due"] = None if left is None else now + left
                    values[f"{name}_left"] = None
            return values

        # (announced as ticket:reopened when it leaves resolved for an active status)
        return await self.change(tenant_id, ticket_id, "status", mutate, version=version,
                                 by=by)

    async def assign(self, tenant_id: str, ticket_id: str, assignee_id: str | None, *,
                     version: int | None = None, by: str | None = None,
                     if_unassigned: bool = False, capacity: int | None = None,
                     reason: str | None = None) -> Ticket:
        if assignee_id is not None:
            check_id(assignee_id, "assigneeId")
        storage = self.storage

        def mutate(conn: sa.Connection, current: Ticket) -> dict[str, Any]:
            if current.assignee_id == assignee_id:
                return {}
            if if_unassigned and current.assignee_id is not None:
                raise conflict(current, f"ticket is assigned to {current.assignee_id!r}")
            if not current.is_active and assignee_id is not None:
                raise conflict(current, f"ticket is {current.status}; reopen it first")
            if assignee_id is not None and capacity is not None:
                serialize_on(conn, "desk-assign", tenant_id)
                if storage.active_count(conn, tenant_id, assignee_id) >= capacity:
                    raise ClientError(CONFLICT, f"{assignee_id!r} is at capacity",
                                      reason="capacity", ticket=current.to_json())
            values: dict[str, Any] = {"assignee_id": assignee_id}
            if assignee_id is not None and current.status == "open":
                values["status"] = "in_progress"
            elif assignee_id is None and current.status == "in_progress":
                values["status"] = "open"
            return values

        return await self.change(tenant_id, ticket_id, "assigned", mutate, version=version,
                                 by=by, reason=reason)

    async def transfer(self, tenant_id: str, ticket_id: str, *, queue_id: str | None = None,
                       assignee_id: str | None = None, note: str | None = None,
                       version: int | None = None, by: str | None = None) -> Ticket:
        note = check_note(note)
        if queue_id is None and assignee_id is None:
            raise invalid("queueId", "give a queueId, an assigneeId or both")
        if assignee_id is not None:
            check_id(assignee_id, "assigneeId")
        await self._check_queue(tenant_id, queue_id)

        def mutate(_: sa.Connection, current: Ticket) -> dict[str, Any]:
            if not current.is_active:
                raise conflict(current, f"ticket is {current.status}; reopen it first")
            values: dict[str, Any] = {}
            if queue_id is not None:
                values["queue_id"] = queue_id
                # to another queue without a named agent: that queue assigns it
                if assignee_id is None and queue_id != current.queue_id:
                    values["assignee_id"] = None
            if assignee_id is not None:
                values["assignee_id"] = assignee_id
            values = {k: v for k, v in values.items() if getattr(current, k) != v}
            if "assignee_id" in values:
                if values["assignee_id"] is None and current.status == "in_progress":
                    values["status"] = "open"
                elif values["assignee_id"] is not None and current.status == "open":
                    values["status"] = "in_progress"
            return values

        return await self.change(tenant_id, ticket_id, "transferred", mutate, version=version,
                                 by=by, note=note)

    async def close(self, tenant_id: str, ticket_id: str, *, note: str | None = None,
                    version: int | None = None, by: str | None = None) -> Ticket:
        note = check_note(note)
        now = self.clock.now()

        def mutate(_: sa.Connection, current: Ticket) -> dict[str, Any]:
            if current.status == "closed":
                return {}
            return self._status_values(current, "closed", now)

        return await self.change(tenant_id, ticket_id, "closed", mutate, version=version,
                                 by=by, note=note)

    async def reopen(self, tenant_id: str, ticket_id: str, *, version: int | None = None,
                     by: str | None = None) -> Ticket:
        now = self.clock.now()

        def mutate(_: sa.Connection, current: Ticket) -> dict[str, Any]:
            if current.is_active:
                raise conflict(current, f"ticket is {current.status}, not resolved or closed")
            values = self._status_values(current, "open", now)
            if current.assignee_id is not None:
                values["status"] = "in_progress"
            return values

        return await self.change(tenant_id, ticket_id, "reopened", mutate, version=version,
                                 by=by)

    async def mark_first_response(self, tenant_id: str, ticket_id: str, at: float) -> None:
        """An agent's first message in the ticket's conversation: stop its
        first-response clock (no announcement: ``firstResponseAt`` shows in
        the next change)."""
        t = self.storage.tickets
        await self.app.store.execute(
            t.update().where(t.c.id == ticket_id, t.c.tenant_id == tenant_id,
                             t.c.first_response_at.is_(None))
            .values(first_response_at=at, first_response_due=None,
                    first_response_left=None))

    # -- announcing --------------------------------------------------------------

    async def announce(self, change: TicketChange) -> None:
        event, to_agents, to_customer = self._event(change)
        tenant = change.ticket.tenant_id
        await self.app.publish(tenant, agents_room(tenant), event, to_agents)
        # the customer gets no internal note (and is not in the agents room)
        await self.app.publish(tenant, user_room(change.ticket.customer_id), event,
                               to_customer)
        await self._changed(change)

    @staticmethod
    def _event(change: TicketChange) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The event of a change, its data for the agents, and for the customer
        (who gets no internal note)."""
        ticket = change.ticket
        previous = change.previous
        data: dict[str, Any] = {"ticket": ticket.to_json(), "by": change.by}
        if change.reason is not None:
            data["reason"] = change.reason
        if previous is not None:
            if change.kind in ("assigned", "transferred"):
                data["previousAssigneeId"] = previous.assignee_id
            if change.kind == "transferred":
                data["previousQueueId"] = previous.queue_id
            if change.kind in ("status", "closed", "reopened"):
                data["previousStatus"] = previous.status
        return (f"ticket:{change.kind}", {**data, "note": change.note} if change.note else data,
                data)

    async def _changed(self, change: TicketChange) -> None:
        """After a change is announced: the hook, and the desk's own listeners."""
        self.app.notify_soon("switchboard_ticket_changed", change=change)
        for listener in self.listeners:
            await listener(change)

    @staticmethod
    def ticket_of_conversation(conversation: str) -> str | None:
        """The ticket id of a ticket's conversation id, or None for another."""
        if conversation.startswith(CONVERSATION_PREFIX):
            return conversation.removeprefix(CONVERSATION_PREFIX)
        return None
