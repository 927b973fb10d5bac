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
"""

from __future__ import annotations

from typing import Any

import attrs
import trio
from switchboard.core import App, ClientError, Rate, Session, hookimpl, incoming, outgoing
from switchboard.core.errors import FORBIDDEN
from switchboard.core.rooms import check_room_name

#: (tenant, room, user)
Key = tuple[str, str, str]


@attrs.frozen
class TypingSettings:
    #: Seconds without ``typing:start`` after which a device stops typing.
    idle_timeout: float = 5.0
    #: Coalescing window of ``typing:update`` per room and user, in seconds.
    throttle_interval: float = 0.5


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


class TypingPlugin:
    app: App
    settings: TypingSettings

    def __init__(self) -> None:
        #: Devices typing per (tenant, room, user): session -> its idle timer.
        self._typing: dict[Key, dict[Session, trio.CancelScope]] = {}
        #: Rooms each session is typing in.
        self._rooms_of: dict[Session, set[str]] = {}
        #: Keys whose last broadcast was ``typing=true``.
        self._announced: set[Key] = set()

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return TypingSettings

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        rate = Rate(rate=5.0, burst=10.0)
        return [
            incoming("typing:start", TypingRequest, self.start, rate=rate,
                     doc="You are typing in a room you joined; ack {room, typing: true}. "
                         "Repeat it while typing to stay typing."),
            incoming("typing:stop", TypingRequest, self.stop, rate=rate,
                     doc="You stopped typing in a room; ack {room, typing: false}."),
            outgoing("typing:update", TypingUpdate,
                     doc="To the room, except the sender: a user started or stopped "
                         "typing (once per user, coalesced)."),
        ]

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        self._updates = app.coalescer(self.settings.throttle_interval, self._broadcast)

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
        deadline = trio.current_time() + self.settings.idle_timeout
        timer = devices.get(session)
        if timer is not None:
            timer.deadline = deadline
            return {"room": room, "typing": True}
        timer = devices[session] = trio.CancelScope(deadline=deadline)
        self._rooms_of.setdefault(session, set()).add(room)
        self.app.nursery.start_soon(self._expire, session, room, timer)
        if len(devices) == 1:
            await self._updates.submit(key, _Change(True, session))
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

    async def _expire(self, session: Session, room: str, timer: trio.CancelScope) -> None:
        with timer:
            await trio.sleep_forever()
        key = (session.tenant_id, room, session.user_id)
        if self._typing.get(key, {}).get(session) is timer:  # not stopped meanwhile
            await self._stop_device(session, room)

    async def _stop_device(self, session: Session, room: str) -> None:
        key = (session.tenant_id, room, session.user_id)
        devices = self._typing.get(key)
        timer = devices.pop(session, None) if devices is not None else None
        if timer is None:
            return
        timer.cancel()
        rooms = self._rooms_of.get(session)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[session]
        if not devices:
            del self._typing[key]
            await self._updates.submit(key, _Change(False, session))

    async def _broadcast(self, key: Key, change: _Change) -> None:
        if change.typing == (key in self._announced):
            return  # flapping ended where the last broadcast left it
        if change.typing:
            self._announced.add(key)
        else:
            self._announced.discard(key)
        tenant, room, user = key
        await self.app.publish(tenant, room, "typing:update",
                               TypingUpdate(room, user, change.typing), exclude=change.origin)
