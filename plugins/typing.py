"""Typing indicators: who is typing in which room.

- ``typing:start {room}`` / ``typing:stop {room}`` from a client that has
  joined ``room``; the others in the room get ``typing:update {room, userId,
  typing}`` (the sending connection does not).
- A user counts once, whatever the number of their devices: ``typing=true``
  when the first device starts, ``typing=false`` when no device of the user
  types in the room any more.
- A repeated ``typing:start`` only refreshes the device's timer. After
  ``idle_timeout`` seconds without one the server stops the device's typing
  itself, as it does when the device disconnects.
- Broadcasts are coalesced per (room, user) with ``throttle_interval``: a
  start/stop flapping within the interval ends in one update with the latest
  state, and an update that would repeat the last one sent is dropped.

A device that leaves the room stops typing in it at once.

Several nodes (a Redis broker): the typing devices of a (room, user) are
counted per node with ``app.cluster_count``, so ``typing=true`` goes out
when the first device of the cluster starts and ``typing=false`` when the
last one stops, whichever nodes they are on. A node that dies stops
counting after ``broker.node_ttl``; the node that notices sends
``typing=false`` for its users that no other device keeps typing.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio
from switchboard.core import (
    FORBIDDEN,
    NODE_GONE,
    Announcement,
    App,
    BrokerUnavailable,
    ClientError,
    Rate,
    Session,
    Timer,
    check_room_name,
    emptied_members,
    hookimpl,
    incoming,
    outgoing,
)

#: (tenant, room, user)
Key = tuple[str, str, str]
#: Groups of ``app.cluster_count``: ``typing`` SEP tenant SEP room (members: users).
GROUP = "typing"
SEP = "\x1f"


def _group(tenant: str, room: str) -> str:
    return f"{GROUP}{SEP}{tenant}{SEP}{room}"


@attrs.frozen
class TypingSettings:
    #: Seconds without ``typing:start`` after which a device stops typing.
    idle_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    #: Coalescing window of ``typing:update`` per room and user, in seconds.
    throttle_interval: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))


@attrs.frozen
class TypingRequest:
    room: str


@attrs.frozen
class TypingUpdate:
    room: str
    userId: str
    typing: bool


@attrs.frozen
class _Change:
    """What the coalescer carries: the new state and the connection that caused it."""

    typing: bool
    origin: Session | None


class _Typist:
    """A device typing in a room, until ``until`` (Trio's clock) unless it
    says so again: a deadline on the server's shared timers, not a task. A
    repeated ``typing:start`` only moves ``until``; the timer, when it comes,
    waits again for what is left."""

    __slots__ = ("plugin", "room", "session", "timer", "until")

    def __init__(self, plugin: TypingPlugin, session: Session, room: str, until: float) -> None:
        self.plugin, self.session, self.room, self.until = plugin, session, room, until
        self.timer: Timer | None = plugin.app.timers.at(until, self)

    def due(self) -> None:
        if not self.rearmed():
            self.timer = None
            self.plugin.app.nursery.start_soon(self.plugin._expire, self)

    def rearmed(self) -> bool:
        """Whether a ``typing:start`` has moved ``until`` since the timer was
        set: then the timer waits again for what is left."""
        if self.until <= trio.current_time():
            return False
        self.timer = self.plugin.app.timers.at(self.until, self)
        return True


class TypingPlugin:
    app: App
    settings: TypingSettings

    def __init__(self) -> None:
        #: Devices typing per (tenant, room, user).
        self._typing: dict[Key, dict[Session, _Typist]] = {}
        #: Rooms each session is typing in.
        self._rooms_of: dict[Session, set[str]] = {}
        #: Keys whose last broadcast was ``typing=true``.
        self._announced: set[Key] = set()
        #: Keys with a change submitted to the coalescer and not yet broadcast.
        self._pending: set[Key] = set()

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return TypingSettings

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        rate = Rate(rate=5.0, burst=10.0)
        return [
            incoming("typing:start", TypingRequest, self.start, rate=rate,
                     ack={"type": "object", "properties": {"room": {"type": "string"},
                                                           "typing": {"const": True}}},
                     doc="You are typing in a room you joined; ack {room, typing: true}. "
                         "Repeat it while typing to stay typing."),
            incoming("typing:stop", TypingRequest, self.stop, rate=rate,
                     ack={"type": "object", "properties": {"room": {"type": "string"},
                                                           "typing": {"const": False}}},
                     doc="You stopped typing in a room; ack {room, typing: false}."),
            outgoing("typing:update", TypingUpdate, rooms=["{room}"],
                     doc="To the room, except the sender: a user started or stopped "
                         "typing (once per user, coalesced)."),
        ]

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        self._updates = app.coalescer(self.settings.throttle_interval, self._broadcast)
        app.on_announcement(NODE_GONE, self._node_gone)

    @hookimpl
    async def switchboard_room_left(self, session: Session, room: str) -> None:
        await self._stop_device(session, room)

    @hookimpl
    async def switchboard_session_closed(self, session: Session) -> None:
        for room in list(self._rooms_of.get(session, ())):
            await self._stop_device(session, room)

    # -- events ------------------------------------------------------------

    async def start(self, session: Session, request: TypingRequest) -> dict[str, Any]:
        room = self._check_member(session, request.room)
        key = (session.tenant_id, room, session.user_id)
        devices = self._typing.setdefault(key, {})
        until = trio.current_time() + self.settings.idle_timeout
        typist = devices.get(session)
        if typist is not None:
            typist.until = until
            return {"room": room, "typing": True}
        devices[session] = _Typist(self, session, room, until)
        self._rooms_of.setdefault(session, set()).add(room)
        if len(devices) == 1:
            total = await self._count(key, +1)
            if total is None or total == 1:  # the cluster's first typing device
                if total is not None and key not in self._pending:
                    self._announced.discard(key)  # (stopped on another node since)
                await self._submit(key, _Change(True, session))
        return {"room": room, "typing": True}

    async def stop(self, session: Session, request: TypingRequest) -> dict[str, Any]:
        room = self._check_member(session, request.room)
        await self._stop_device(session, room)
        return {"room": room, "typing": False}

    # -- internals ---------------------------------------------------------

    def _check_member(self, session: Session, room: object) -> str:
        name = check_room_name(room)
        if name not in session.rooms:
            raise ClientError(FORBIDDEN, f"join {name!r} before typing in it", room=name)
        return name

    async def _expire(self, typist: _Typist) -> None:
        session, room = typist.session, typist.room
        key = (session.tenant_id, room, session.user_id)
        if self._typing.get(key, {}).get(session) is not typist:
            return  # stopped meanwhile
        if not typist.rearmed():  # (a typing:start may have come since the timer)
            await self._stop_device(session, room)

    async def _stop_device(self, session: Session, room: str) -> None:
        key = (session.tenant_id, room, session.user_id)
        devices = self._typing.get(key)
        typist = devices.pop(session, None) if devices is not None else None
        if typist is None:
            return
        self.app.timers.cancel(typist.timer)
        rooms = self._rooms_of.get(session)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[session]
        if not devices:
            del self._typing[key]
            total = await self._count(key, -1)
            if not total:  # the cluster's last typing device (or this node alone)
                if total is not None and key not in self._pending:
                    self._announced.add(key)  # (it may have started on another node)
                await self._submit(key, _Change(False, session))

    async def _submit(self, key: Key, change: _Change) -> None:
        self._pending.add(key)
        await self._updates.submit(key, change)

    async def _count(self, key: Key, delta: int) -> int | None:
        """Typing devices of the (room, user) over the cluster after adding
        ``delta``; None while the broker is unreachable (this node alone)."""
        tenant, room, user = key
        try:
            return await self.app.cluster_count(_group(tenant, room), user, delta)
        except BrokerUnavailable:
            return None

    def _node_gone(self, announcement: Announcement) -> None:
        """A dead node's typists that no device keeps typing stop (said once,
        by the node that noticed)."""
        if announcement.node != self.app.node_id:
            return
        for tenant_room, user in emptied_members(announcement, GROUP + SEP):
            parts = tenant_room.split(SEP, 1)
            if len(parts) == 2:
                self.app.nursery.start_soon(self._stopped_elsewhere, (parts[0], parts[1], user))

    async def _stopped_elsewhere(self, key: Key) -> None:
        tenant, room, user = key
        self._announced.discard(key)
        try:
            await self.app.publish(tenant, room, "typing:update",
                                   TypingUpdate(room, user, False))
        except BrokerUnavailable:
            pass

    async def _broadcast(self, key: Key, change: _Change) -> None:
        self._pending.discard(key)
        if change.typing == (key in self._announced):
            return  # flapping ended where the last broadcast left it
        if change.typing:
            self._announced.add(key)
        else:
            self._announced.discard(key)
        tenant, room, user = key
        try:
            await self.app.publish(tenant, room, "typing:update",
                                   TypingUpdate(room, user, change.typing), exclude=change.origin)
        except BrokerUnavailable:
            pass  # (a typing indicator is not worth keeping: the next one will do)
