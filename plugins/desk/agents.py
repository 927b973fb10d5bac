"""Agent status and queues: who may take tickets, and auto-assignment.

- An agent (a role of ``rooms.agent_roles``) is ``online`` when their first
  connection opens (``agent:online`` and ``agent:status`` to the tenant's
  agents room) and ``offline`` ``offline_grace`` seconds after their last one
  closed (``agent:offline``); between, they set ``online``, ``busy`` or
  ``away`` themselves (``agent:status``). Only ``online`` agents are given
  tickets.
- Queue members' connections are put in ``queue:{id}``; only members and
  the supervisor roles may join it.
- A new, returned or reopened ticket of a queue without an assignee goes to
  an online member below capacity, round-robin or least-busy; when none is
  free it is announced to ``queue:{id}`` as ``ticket:queued`` and waits, to
  be given to the next member who comes online or frees capacity.
- An assignee offline for ``reassign_after`` seconds more loses their active
  tickets back to their queues.

Several nodes (a Redis broker), as the presence plugin does it: an agent's
connections are counted per node with ``app.cluster_count`` (group
``desk:{tenant}``), so ``agent:online`` goes out once, from the node whose
connection took the cluster's total from 0 to 1, and ``agent:offline`` once,
from the node whose grace ended with the total at 0; a connection that
closed keeps counting during its grace, so a reconnection on another node
does not flap, and one node only gives the tickets back. Every node keeps
the status of every agent online anywhere (for auto-assignment and
``agent:list``): a status set, an agent come online or gone offline is
announced on the control channel (topic ``desk:status``); a node that starts
asks the others (``desk:hello``) and each answers for its own agents. The
agents of a node that dies stop counting after ``broker.node_ttl``; the node
that notices takes those with no connection left anywhere offline after the
grace. While Redis is unreachable a node decides from its own connections
and sends what it could not announce once Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import attrs
import trio
from switchboard.core import (
    CONFLICT,
    NODE_BACK,
    NODE_GONE,
    Announcement,
    App,
    BrokerUnavailable,
    ClientError,
    Session,
    Ticket,
    TicketChange,
    agents_room,
    emptied_members,
)

from .payloads import QUEUE_ROOM, AgentStatus, DeskSettings, QueueSettings
from .queues import Queue, QueueDirectory
from .storage import DeskStorage
from .tickets import Tickets

AGENT_STATUSES = ("online", "busy", "away", "offline")
log = logging.getLogger("switchboard.desk")
#: Waiting tickets looked at per queue each time capacity frees up.
DRAIN_BATCH = 50
#: Control-channel topics (besides the core's NODE_GONE and NODE_BACK): agents' statuses
#: (``{"statuses": [[tenant, user, status or None], ...]}``, None: offline);
#: a node that starts asks for the statuses of the agents already online.
STATUS_TOPIC = "desk:status"
HELLO_TOPIC = "desk:hello"

Key = tuple[str, str]


def _group(tenant: str) -> str:
    return f"desk:{tenant}"


@attrs.define(eq=False)
class _Agent:
    """An agent's connections to this node."""

    sessions: int = 0
    going: trio.CancelScope | None = None


class Agents:
    """Agent statuses (of the whole cluster), queues and auto-assignment."""

    app: App
    settings: DeskSettings

    def __init__(self, storage: DeskStorage, tickets: Tickets, queues: QueueDirectory
                 ) -> None:
        self.storage = storage
        self.tickets = tickets
        self.queues = queues
        #: This node's connections of each agent.
        self._agents: dict[Key, _Agent] = {}
        #: The status of every agent online on any node (this one's included).
        self._statuses: dict[Key, AgentStatus] = {}
        #: Agents gone offline from this node, waiting for ``reassign_after``:
        #: each with a token of its wait (see :meth:`_give_back_later`).
        self._gone: dict[Key, object] = {}
        #: Statuses not announced while Redis was unreachable, sent when it is back.
        self._unsent: dict[Key, AgentStatus | None] = {}
        self._unsent_added = trio.Event()
        self._hello_due = False
        #: Round robin: the member who got a ticket of the queue last.
        self._last: dict[tuple[str, str], str] = {}
        self._draining: dict[tuple[str, str], trio.Lock] = {}
        tickets.listeners.append(self._ticket_changed)
        tickets.candidates = self.candidates
        tickets.chosen = self._chosen

    def start(self, app: App, settings: DeskSettings) -> None:
        self.app = app
        self.settings = settings
        if not settings.auto_assign:
            self.tickets.candidates = None
        # A status set through the presence plugin (presence:update) is the
        # agent's status too.
        app.watch_publications(["presence:user_updated"], self._presence_updated)
        app.on_announcement(STATUS_TOPIC, self._statuses_announced)
        app.on_announcement(HELLO_TOPIC, self._hello)
        app.on_announcement(NODE_GONE, self._node_gone)
        app.on_announcement(NODE_BACK, self._node_back)
        self._hello_due = True
        app.nursery.start_soon(self._catch_up)

    def _presence_updated(self, publication: Any) -> None:
        """(``publication``: what ``App.watch_publications`` passes: tenant, event, data.)"""
        data = publication.data
        if not isinstance(data, dict) or data.get("status") not in AGENT_STATUSES:
            return
        key = (publication.tenant, str(data.get("userId")))
        agent = self._agents.get(key)
        status: AgentStatus = data["status"]
        if agent is not None and agent.going is None and self._statuses.get(key) != status:
            self.app.nursery.start_soon(self._changed_to, key, status)

    async def _changed_to(self, key: Key, status: AgentStatus) -> None:
        if key not in self._statuses or self._statuses[key] == status:
            return
        self._statuses[key] = status
        tenant, user = key
        await self._tell(key, status)
        await self._broadcast(tenant, "agent:status", user, status)
        if status == "online":
            await self._offer(tenant, user)

    async def declare_queues(self, queues: Iterable[QueueSettings]) -> None:
        for queue in queues:
            self.tickets.check_queue_id(queue.id, "queues.id")
            await self.put_queue(queue.tenant, queue.id, queue.name, queue.strategy,
                                 [(m, None) for m in queue.members])

    # -- status --------------------------------------------------------------------

    def status(self, tenant: str, user: str) -> AgentStatus:
        return self._statuses.get((tenant, user), "offline")

    def statuses(self, tenant: str) -> list[dict[str, Any]]:
        return [{"userId": user, "status": status}
                for (t, user), status in sorted(self._statuses.items()) if t == tenant]

    async def _broadcast(self, tenant: str, event: str, user: str, status: AgentStatus
                         ) -> None:
        try:
            await self.app.publish(tenant, agents_room(tenant), event,
                                   {"userId": user, "status": status,
                                    "at": self.tickets.clock.now()})
        except BrokerUnavailable as exc:
            log.warning("%s of %s/%s not sent: %s", event, tenant, user, exc)

    async def set_status(self, session: Session, status: AgentStatus) -> dict[str, Any]:
        key = (session.tenant_id, session.user_id)
        if key not in self._agents:  # (a connection the desk did not count: confined)
            self._agents[key] = _Agent(sessions=1)
            await self._count(key, +1)
        self._statuses.setdefault(key, "online")
        await self._changed_to(key, status)
        return {"userId": session.user_id, "status": status}

    async def session_opened(self, session: Session) -> None:
        if not self.app.is_agent(session) or session.identity.confined:
            return
        tenant, user = key = session.tenant_id, session.user_id
        for queue in await self.queues_of(tenant, user):
            self.app.hub.rooms.add(session, QUEUE_ROOM + queue)
        self._gone.pop(key, None)
        agent = self._agents.get(key)
        if agent is not None and agent.going is not None:  # back within the grace
            agent.going.cancel()  # (the connection still counted in the cluster is this one)
            agent.going = None
            agent.sessions += 1
            return
        if agent is None:
            agent = self._agents[key] = _Agent()
        agent.sessions += 1
        total = await self._count(key, +1)
        if (agent.sessions == 1) if total is None else (total == 1):
            status = self._statuses[key] = "online"
            await self._tell(key, status)
            await self._broadcast(tenant, "agent:online", user, status)
            await self._broadcast(tenant, "agent:status", user, status)
            await self._offer(tenant, user)
        else:  # online on another node already (with the status known there)
            self._statuses.setdefault(key, "online")

    async def session_closed(self, session: Session) -> None:
        key = (session.tenant_id, session.user_id)
        agent = self._agents.get(key)
        if agent is None or agent.going is not None:
            return
        agent.sessions -= 1
        if agent.sessions <= 0:  # counts on in the cluster until the grace ends
            agent.going = trio.CancelScope()
            self.app.nursery.start_soon(self._going, key, agent, agent.going)
        else:
            await self._count(key, -1)

    async def _going(self, key: Key, agent: _Agent, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(self.settings.offline_grace)
        if scope.cancelled_caught or self._agents.get(key) is not agent:
            return
        del self._agents[key]
        if await self._count(key, -1):
            return  # still connected to another node
        # no connection left on any node (or none known, Redis unreachable)
        await self._give_back_later(key)

    async def _give_back_later(self, key: Key) -> None:
        """Take an agent offline now, and give her tickets back ``reassign_after``
        later unless she came back (to any node) meanwhile."""
        tenant, user = key
        token = self._gone[key] = object()
        self._statuses.pop(key, None)
        # the clients' announcements before the nodes': a node where she has
        # connected meanwhile (this one's grace ended as her count went back
        # up there) answers the nodes' one with agent:online, after these
        await self._broadcast(tenant, "agent:offline", user, "offline")
        await self._broadcast(tenant, "agent:status", user, "offline")
        await self._tell(key, None)
        await trio.sleep(self.settings.reassign_after)
        # not if they came back since (and maybe went again, more recently)
        if self._gone.get(key) is not token:
            return
        del self._gone[key]
        if key in self._agents or await self._count(key, 0):
            return  # back on a node whose announcement has not come yet
        await self.give_back(tenant, user)

    async def give_back(self, tenant: str, user: str) -> None:
        """Put the active tickets of an offline agent back in their queues."""
        rows = await self.app.store.fetch_all(self.storage.held_by(tenant, user))
        for row in rows:
            try:
                await self.tickets.assign(tenant, row["id"], None, reason="assignee_offline")
            except ClientError as exc:  # changed meanwhile (closed, reassigned)
                log.debug("ticket %s not given back: %s", row["id"], exc.message)
            except BrokerUnavailable as exc:  # given back, not announced
                log.warning("ticket %s given back unannounced: %s", row["id"], exc)

    async def _offer(self, tenant: str, user: str) -> None:
        try:
            await self.offer_to(tenant, user)
        except BrokerUnavailable as exc:
            log.warning("waiting tickets not offered to %s/%s: %s", tenant, user, exc)

    # -- several nodes -------------------------------------------------------------

    async def _count(self, key: Key, delta: int) -> int | None:
        """The agent's connections over the cluster after adding ``delta`` of
        this node's; None while Redis is unreachable (this node decides alone)."""
        tenant, user = key
        try:
            return await self.app.cluster_count(_group(tenant), user, delta)
        except BrokerUnavailable as exc:
            log.warning("connections of agent %s/%s counted on this node only: %s",
                        tenant, user, exc)
            return None

    async def _tell(self, key: Key, status: AgentStatus | None) -> None:
        """Announce an agent's status to every node (None: she went offline);
        kept to be sent later while Redis is unreachable."""
        self._unsent.pop(key, None)
        try:
            await self.app.announce(STATUS_TOPIC, {"statuses": [[*key, status]]})
        except BrokerUnavailable as exc:
            log.warning("status of agent %s/%s known on this node only for now: %s",
                        *key, exc)
            self._unsent[key] = status
            self._unsent_added.set()

    def _statuses_announced(self, announcement: Announcement) -> None:
        """Statuses set, or agents gone offline (None), on any node (this one's too)."""
        data = announcement.data
        entries = data.get("statuses") if isinstance(data, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not (isinstance(entry, list) and len(entry) == 3
                    and isinstance(entry[0], str) and isinstance(entry[1], str)):
                continue
            key: Key = (entry[0], entry[1])
            status = entry[2]
            if status in AGENT_STATUSES:
                self._statuses[key] = status
                self._gone.pop(key, None)  # online on a node: no tickets given back
            elif status is None and announcement.node != self.app.node_id:
                if key in self._agents:
                    # still connected here: said offline by a node that could not
                    # know (a race with a reconnection, or Redis unreachable there)
                    self.app.nursery.start_soon(self._online_after_all, key)
                else:
                    self._statuses.pop(key, None)

    async def _online_after_all(self, key: Key) -> None:
        """Another node took an agent offline that is connected here: tell the
        nodes, and the clients (they got her agent:offline last) if she has a
        connection here that is not in its grace."""
        status = self._statuses.get(key, "online")
        await self._tell(key, status)
        agent = self._agents.get(key)
        if agent is not None and agent.going is None:
            tenant, user = key
            await self._broadcast(tenant, "agent:online", user, status)
            await self._broadcast(tenant, "agent:status", user, status)

    def _hello(self, announcement: Announcement) -> None:
        """A node started: tell it the statuses of the agents connected here."""
        if announcement.node != self.app.node_id and self._agents:
            self.app.nursery.start_soon(self._answer_hello)

    async def _answer_hello(self) -> None:
        statuses = [[*key, self._statuses[key]] for key in sorted(self._agents)
                    if key in self._statuses]
        try:
            await self.app.announce(STATUS_TOPIC, {"statuses": statuses})
        except BrokerUnavailable as exc:
            log.warning("statuses of %d agents not told to a new node: %s",
                        len(statuses), exc)

    def _node_gone(self, announcement: Announcement) -> None:
        """A node died: its agents with no connection left anywhere go offline
        after the grace (said by the node that noticed, once)."""
        if announcement.node != self.app.node_id:
            return
        for tenant, user in emptied_members(announcement, _group("")):
            self.app.nursery.start_soon(self._offline_after_node_gone, (tenant, user))

    def _node_back(self, announcement: Announcement) -> None:
        """This node was taken for gone while cut off (its agents went offline
        on the others): its agents connected here are online again."""
        if announcement.node == self.app.node_id and self._agents:
            self.app.nursery.start_soon(self._online_again)

    async def _online_again(self) -> None:
        await self._answer_hello()  # (every node knows their statuses again)
        for key in sorted(self._agents):
            if self._agents[key].going is not None:
                continue  # in her grace here: not connected
            status = self._statuses.get(key, "online")
            await self._broadcast(key[0], "agent:online", key[1], status)
            await self._broadcast(key[0], "agent:status", key[1], status)

    async def _offline_after_node_gone(self, key: Key) -> None:
        await trio.sleep(self.settings.offline_grace)
        if key in self._agents or await self._count(key, 0):
            return  # back meanwhile, here or on another node
        await self._give_back_later(key)

    async def _catch_up(self) -> None:
        """Ask the other nodes for their agents' statuses at start-up, and send
        what could not be announced while Redis was unreachable, once it answers
        (tried again every ``broker.heartbeat``)."""
        while True:
            try:
                if self._hello_due:
                    await self.app.announce(HELLO_TOPIC, None)
                    self._hello_due = False
                if self._unsent:
                    unsent, self._unsent = self._unsent, {}
                    try:
                        await self.app.announce(STATUS_TOPIC, {"statuses": [
                            [*key, status] for key, status in sorted(unsent.items())]})
                    except BrokerUnavailable:
                        for key, status in unsent.items():  # (one set meanwhile is newer)
                            self._unsent.setdefault(key, status)
                        raise
                    log.info("statuses of %d agents announced", len(unsent))
            except BrokerUnavailable:
                await trio.sleep(self.app.config.broker.heartbeat)
                continue
            await self._unsent_added.wait()
            self._unsent_added = trio.Event()

    # -- queues ----------------------------------------------------------------------

    async def put_queue(self, tenant: str, queue: str, name: str, strategy: str,
                        members: list[tuple[str, int | None]] | None) -> None:
        storage = self.storage
        upsert = self.app.store.upsert(storage.queues, key=["tenant_id", "id"],
                                       update=["name", "strategy"])
        before = set() if members is None else await self.members_of(tenant, queue)
        await self.app.store.run(lambda c: storage.put_queue(
            c, upsert, tenant, queue, name, strategy, members),
            serialize_on=("desk-queue", tenant, queue))
        self.queues.forget(tenant, queue)
        if members is not None:
            await self._resync_room(tenant, queue, before, {m for m, _ in members})

    async def add_member(self, tenant: str, queue: str, user: str, capacity: int | None
                         ) -> None:
        upsert = self.app.store.upsert(
            self.storage.members, {"tenant_id": tenant, "queue_id": queue, "user_id": user,
                                   "capacity": capacity},
            key=["tenant_id", "queue_id", "user_id"])
        await self.app.store.execute(upsert)
        self.queues.forget(tenant, queue)
        await self._resync_room(tenant, queue, set(), {user})
        await self.offer_to(tenant, user)

    async def remove_member(self, tenant: str, queue: str, user: str) -> bool:
        m = self.storage.members
        removed = await self.app.store.execute(m.delete().where(
            m.c.tenant_id == tenant, m.c.queue_id == queue, m.c.user_id == user))
        self.queues.forget(tenant, queue)
        await self._resync_room(tenant, queue, {user}, set())
        return removed > 0

    async def delete_queue(self, tenant: str, queue: str) -> bool:
        """Delete a queue and its members (its tickets keep their ``queueId``
        and are no longer auto-assigned); its members' connections leave
        ``queue:{id}``. False if there was no such queue."""
        before = await self.members_of(tenant, queue)
        storage = self.storage

        def delete(conn: Any) -> int:
            m, q = storage.members, storage.queues
            conn.execute(m.delete().where(m.c.tenant_id == tenant, m.c.queue_id == queue))
            return int(conn.execute(q.delete().where(q.c.tenant_id == tenant,
                                                     q.c.id == queue)).rowcount)

        deleted = await self.app.store.run(delete, serialize_on=("desk-queue", tenant, queue))
        self.queues.forget(tenant, queue)
        for user in before:
            for session in list(self.app.user_sessions(tenant, user)):
                await self.app.leave(session, QUEUE_ROOM + queue)
        return deleted > 0

    async def _resync_room(self, tenant: str, queue: str, before: set[str],
                           after: set[str]) -> None:
        """Put the connections of new members in ``queue:{id}``, take out the
        ones of members removed (unless their role lets them stay)."""
        room = QUEUE_ROOM + queue
        for user in after - before:
            for session in list(self.app.user_sessions(tenant, user)):
                if self.app.is_agent(session):
                    self.app.hub.rooms.add(session, room)
        for user in before - after:
            for session in list(self.app.user_sessions(tenant, user)):
                if room in session.rooms:
                    await self.app.recheck_rooms(session, [room])

    async def members_of(self, tenant: str, queue: str) -> set[str]:
        rows = await self.app.store.fetch_all(self.storage.queue_members(tenant, queue))
        return {row["user_id"] for row in rows}

    async def queues_of(self, tenant: str, user: str) -> list[str]:
        rows = await self.app.store.fetch_all(self.storage.queues_of(tenant, user))
        return [row["queue_id"] for row in rows]

    async def may_join_queue(self, session: Session, queue: str) -> bool:
        if session.identity.confined:
            return False
        if session.role in self.settings.supervisor_roles:
            return True
        return self.app.is_agent(session) and \
            queue in await self.queues_of(session.tenant_id, session.user_id)

    async def describe(self, tenant: str) -> list[dict[str, Any]]:
        store = self.app.store
        queues = await store.fetch_all(self.storage.all_queues(tenant))
        members = await store.fetch_all(self.storage.all_members(tenant))
        return [{"id": q["id"], "name": q["name"], "strategy": q["strategy"],
                 "members": [{"userId": m["user_id"], "capacity": m["capacity"],
                              "status": self.status(tenant, m["user_id"])}
                             for m in members if m["queue_id"] == q["id"]]}
                for q in queues]

    # -- assignment ------------------------------------------------------------------

    def candidates(self, queue: Queue) -> list[tuple[str, int]]:
        """The online members of ``queue`` (on any node) with their capacity,
        in the order to offer them a ticket: after the last one given a ticket
        for round robin; for least busy, the order is the database's to find
        (see :meth:`auto_assign`), this one only breaks ties."""
        tenant = queue.tenant
        online = [(user, self.capacity(own)) for user, own in queue.members
                  if self.status(tenant, user) == "online"]
        last = self._last.get((tenant, queue.id))
        if last is not None and queue.strategy == "round_robin":
            after = [i for i, (user, _) in enumerate(online) if user > last]
            start = after[0] if after else 0
            online = online[start:] + online[:start]
        return online

    def _chosen(self, tenant: str, queue: str, user: str) -> None:
        self._last[(tenant, queue)] = user

    async def _ticket_changed(self, change: TicketChange) -> None:
        ticket = change.ticket
        if not self.settings.auto_assign:
            return
        # (a new ticket is offered to its queue's members as it is created)
        if ticket.queue_id is not None and ticket.assignee_id is None and ticket.is_active \
                and change.kind in ("reopened", "transferred", "assigned"):
            self.app.nursery.start_soon(self.auto_assign, ticket)
        previous = change.previous
        if previous is not None and previous.assignee_id is not None and (
                previous.is_active and (not ticket.is_active
                                        or ticket.assignee_id != previous.assignee_id)):
            # capacity freed: give that agent the next waiting ticket
            self.app.nursery.start_soon(self.offer_to, ticket.tenant_id,
                                        previous.assignee_id)

    def capacity(self, own: int | None) -> int:
        return self.settings.default_capacity if own is None else own

    async def _ordered(self, queue: Queue) -> list[tuple[str, int]]:
        """The candidates of ``queue`` below capacity, in the order to try them."""
        online = self.candidates(queue)
        if not online:
            return []
        counts = {row["assignee_id"]: int(row["n"]) for row in await
                  self.app.store.fetch_all(self.storage.active_counts(
                      queue.tenant, [user for user, _ in online]))}
        free = [(user, cap) for user, cap in online if counts.get(user, 0) < cap]
        if queue.strategy == "least_busy":
            free.sort(key=lambda member: counts.get(member[0], 0))
        return free

    async def auto_assign(self, ticket: Ticket, *, announce: bool = True) -> Ticket | None:
        """Give ``ticket`` to a free online member of its queue; when there is
        none, announce it to the queue as waiting (unless not ``announce``).
        None if not assigned."""
        tenant, queue_id = ticket.tenant_id, ticket.queue_id
        assert queue_id is not None
        queue = await self.queues.get(tenant, queue_id)
        for user, capacity in [] if queue is None else await self._ordered(queue):
            try:
                assigned = await self.tickets.assign(
                    tenant, ticket.id, user, if_unassigned=True, capacity=capacity,
                    reason="auto_assign")
            except ClientError as exc:
                if exc.code == CONFLICT and exc.extra.get("reason") == "capacity":
                    continue
                return None  # taken meanwhile, closed or gone
            self._chosen(tenant, queue_id, user)
            return assigned
        if announce:
            await self.app.publish(tenant, QUEUE_ROOM + queue_id, "ticket:queued",
                                   {"ticket": ticket.to_json()})
        return None

    async def offer_to(self, tenant: str, user: str) -> None:
        """An agent may take more: assign the waiting tickets of their queues."""
        if not self.settings.auto_assign or self.status(tenant, user) != "online":
            return
        for queue in await self.queues_of(tenant, user):
            await self.drain(tenant, queue)

    async def drain(self, tenant: str, queue: str) -> None:
        """Assign the waiting tickets of a queue, oldest first, while someone is free."""
        lock = self._draining.setdefault((tenant, queue), trio.Lock())
        async with lock:
            rows = await self.app.store.fetch_all(
                self.storage.waiting(tenant, queue, DRAIN_BATCH))
            for row in rows:
                ticket = await self.tickets.get(tenant, row["id"])
                if ticket is None or ticket.assignee_id is not None or not ticket.is_active:
                    continue
                if await self.auto_assign(ticket, announce=False) is None:
                    break
