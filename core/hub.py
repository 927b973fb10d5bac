"""The hub: local sessions, their rooms, and fan-out through the broker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .auth import Identity
from .broker import Broker, BrokerUnavailable, Publication
from .metrics import Metrics
from .recovery import Recovery
from .rooms import ALL_TENANTS, Rooms, agents_room, tenant_room, user_room
from .session import Codec, Session

#: Publications delivered before the fan-out of a list lets other tasks run.
PUBLISH_SLICE = 64
#: The transport whose queued frames are written as they are (plain
#: WebSocket frames): several may be queued joined, as one piece.
JOINABLE_PROTOCOL = "ws"


def _same_audience(a: Publication, b: Publication) -> bool:
    return (a.room == b.room and a.tenant == b.tenant and a.exclude == b.exclude
            and a.skip_room == b.skip_room)


class Hub:
    def __init__(self, broker: Broker, metrics: Metrics, *, agent_roles: list[str]) -> None:
        self.broker = broker
        self.metrics = metrics
        self.rooms = Rooms()
        self.sessions: dict[str, Session] = {}
        self._agent_roles = frozenset(agent_roles)
        #: Recent publications for connection state recovery, when enabled.
        self.recovery: Recovery | None = None
        #: Called with every publication before it is fanned out (see
        #: :meth:`App.watch_publications`).
        self.watchers: list[Callable[[Publication], None]] = []
        #: Called with every publication this node delivers, whichever node it
        #: was published on (the admin console's tail); must be quick.
        self.taps: list[Callable[[Publication], None]] = []

    def is_agent(self, session: Session) -> bool:
        return session.role in self._agent_roles and not session.identity.confined

    # -- sessions ---------------------------------------------------------

    def canonical_rooms(self, identity: Identity) -> frozenset[str]:
        """The rooms a session of ``identity`` is put in when it opens."""
        rooms = {user_room(identity.user_id)}
        if not identity.confined:
            rooms.add(tenant_room(identity.tenant_id))
            if identity.role in self._agent_roles:
                rooms.add(agents_room(identity.tenant_id))
        return frozenset(rooms)

    def attach(self, session: Session) -> None:
        """Register a new session and put it in its canonical rooms."""
        self.sessions[session.id] = session
        self.rooms.add(session, user_room(session.user_id))
        if session.identity.confined:
            return
        self.rooms.add(session, tenant_room(session.tenant_id))
        if self.is_agent(session):
            self.rooms.add(session, agents_room(session.tenant_id))

    def detach(self, session: Session) -> None:
        session.closed = True
        for room in list(session.rooms):
            self.rooms.discard(session, room)
        self.sessions.pop(session.id, None)

    def user_sessions(self, tenant: str, user: str) -> set[Session]:
        return self.rooms.members(tenant, user_room(user))

    # -- fan-out ----------------------------------------------------------

    async def publish(self, tenant: str, room: str, event: str, data: Any, *,
                      exclude: str | None = None, skip_room: str | None = None) -> None:
        """Deliver ``event`` to every member of ``room`` of ``tenant``, on every
        node (but ``exclude``, a session id, and the members of ``skip_room``)."""
        self.metrics.publications.inc()
        publication = Publication(tenant, room, event, data, exclude, skip_room)
        for watch in self.watchers:
            watch(publication)
        await self.broker.publish(publication)

    async def publish_many(self, publications: list[Publication]) -> None:
        """:meth:`publish` several, in order (one round trip on Redis). On one
        node, consecutive publications to the same room are delivered as one
        run (see :meth:`deliver_run`)."""
        self.metrics.publications.inc(len(publications))
        for publication in publications:
            for watch in self.watchers:
                watch(publication)
        if self.broker.clustered:
            await self.broker.publish_many(publications)
            return
        start = 0
        delivered = 0
        while start < len(publications):
            first = publications[start]
            end = start + 1
            # (a run is at most a slice: what is queued to a member at once stays bounded)
            while (end < len(publications) and end - start < PUBLISH_SLICE
                   and _same_audience(publications[end], first)):
                end += 1
            self.deliver_run(publications[start:end])
            delivered += end - start
            start = end
            if delivered >= PUBLISH_SLICE:
                # let the members' writers (and everyone else) run between slices
                delivered = 0
                await trio.lowlevel.checkpoint()

    async def emit_to_user(self, tenant: str, user: str, event: str, data: Any) -> None:
        await self.publish(tenant, user_room(user), event, data)

    async def emit_to_tenant(self, tenant: str, event: str, data: Any) -> None:
        await self.publish(tenant, tenant_room(tenant), event, data)

    def deliver(self, publication: Publication, position: str | None = None) -> int:
        """Local fan-out: encode once per codec, queue the same bytes to each member.

        ``position`` is the publication's place in the broker's stream (its
        recovery offset), if the broker keeps one."""
        for tap in self.taps:
            tap(publication)
        if publication.tenant == ALL_TENANTS and publication.room == ALL_TENANTS:
            return self._deliver_everywhere(publication)
        offset = position
        recovery = self.recovery
        if recovery is None:
            offset = None
        elif recovery.local:
            offset = recovery.record(publication)
        frames: dict[Codec, bytes] = {}
        count = 0
        for session in self._audience(publication):
            codec = session.codec
            frame = frames.get(codec)
            if frame is None:
                frame = frames[codec] = codec.encode_event(publication.event, publication.data,
                                                           offset)
            if frame:
                session.transport.send(frame)
                count += 1
        self.metrics.deliveries.inc(count)
        return count

    def deliver_run(self, publications: Sequence[Publication]) -> int:
        """Local fan-out of consecutive publications to the same audience (the
        same tenant, room, ``exclude`` and ``skip_room``), as :meth:`deliver`
        of each in turn would do it: each encoded once per codec, but the
        members found once, and a plain WebSocket member given the run's
        frames in one piece (one queueing instead of one per event)."""
        first = publications[0]
        if len(publications) == 1 or (first.tenant == ALL_TENANTS
                                      and first.room == ALL_TENANTS):
            return sum(self.deliver(publication) for publication in publications)
        offsets: list[str | None] = []
        recovery = self.recovery
        for publication in publications:
            for tap in self.taps:
                tap(publication)
            offsets.append(recovery.record(publication)
                           if recovery is not None and recovery.local else None)
        runs: dict[Codec, list[bytes]] = {}
        joined: dict[Codec, bytes] = {}
        count = 0
        for session in self._audience(first):
            codec = session.codec
            frames = runs.get(codec)
            if frames is None:
                frames = runs[codec] = [
                    frame for frame in (codec.encode_event(p.event, p.data, offset)
                                        for p, offset in zip(publications, offsets, strict=True))
                    if frame]
                joined[codec] = b"".join(frames)
            if not frames:
                continue
            transport = session.transport
            if transport.protocol == JOINABLE_PROTOCOL:
                # (its frames are whole WebSocket frames: written as they are queued)
                transport.send(joined[codec])
            else:
                for frame in frames:
                    transport.send(frame)
            count += len(frames)
        self.metrics.deliveries.inc(count)
        return count

    def _audience(self, publication: Publication) -> list[Session]:
        """The members of the publication's room on this node that get it: not
        closed, not its ``exclude``, not in its ``skip_room`` (a copy: sending
        may change the room)."""
        members = self.rooms.members(publication.tenant, publication.room)
        if not members:
            return []
        exclude, skip = publication.exclude, publication.skip_room
        if skip is None:
            return [s for s in members if s.id != exclude and not s.closed]
        return [s for s in members
                if s.id != exclude and not s.closed and skip not in s.rooms]

    def _deliver_everywhere(self, publication: Publication) -> int:
        """A system-wide announcement: every member of every ``tenant:{id}``
        room of this node (no recovery offset: it belongs to no one room)."""
        count = 0
        frames: dict[Codec, bytes] = {}
        for tenant, room in list(self.rooms):
            if room != tenant_room(tenant):
                continue
            for session in list(self.rooms.members(tenant, room)):
                if session.closed:
                    continue
                codec = session.codec
                frame = frames.get(codec)
                if frame is None:
                    frame = frames[codec] = codec.encode_event(publication.event,
                                                               publication.data, None)
                if frame:
                    session.transport.send(frame)
                    count += 1
        self.metrics.deliveries.inc(count)
        return count

    # -- stats ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        per_tenant: dict[str, dict[str, Any]] = {}
        users: dict[str, set[str]] = {}
        protocols: Counter[str] = Counter()
        for session in self.sessions.values():
            entry = per_tenant.setdefault(session.tenant_id, {"connections": 0, "rooms": 0})
            entry["connections"] += 1
            users.setdefault(session.tenant_id, set()).add(session.user_id)
            protocols[session.transport.protocol] += 1
        for tenant, _room in self.rooms:
            per_tenant.setdefault(tenant, {"connections": 0, "rooms": 0})["rooms"] += 1
        for tenant, entry in per_tenant.items():
            entry["users_online"] = len(users.get(tenant, ()))
        return {
            "connections": len(self.sessions),
            "rooms": len(self.rooms),
            "users_online": sum(len(u) for u in users.values()),
            "protocols": dict(protocols),
            "tenants": per_tenant,
        }


async def cluster_stats(hub: Hub) -> dict[str, Any]:
    """Stats of the whole cluster: the totals at the top (as :meth:`Hub.stats`
    of one node), each live node's own under ``nodes`` (by node id), and this
    node's id as ``node``. A user with devices on two nodes counts once on each
    node, so ``users_online`` of the totals may count them twice. While the
    broker is unreachable, only this node is known (``degraded``: true)."""
    local = hub.stats()
    broker = hub.broker
    degraded = False
    try:
        nodes = dict(await broker.nodes())
    except BrokerUnavailable:
        nodes, degraded = {}, True
    nodes[broker.node_id] = local
    total: dict[str, Any] = {"connections": 0, "rooms": 0, "users_online": 0,
                             "protocols": {}, "tenants": {}}
    for report in nodes.values():
        for key in ("connections", "rooms", "users_online"):
            total[key] += int(report.get(key, 0))
        for protocol, count in dict(report.get("protocols", {})).items():
            total["protocols"][protocol] = total["protocols"].get(protocol, 0) + count
        for tenant, entry in dict(report.get("tenants", {})).items():
            into = total["tenants"].setdefault(tenant, {"connections": 0, "rooms": 0,
                                                        "users_online": 0})
            for key in ("connections", "rooms", "users_online"):
                into[key] += int(entry.get(key, 0))
    total["node"] = broker.node_id
    total["nodes"] = nodes
    if degraded:
        total["degraded"] = True
    return total
