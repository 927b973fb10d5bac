"""Connection state recovery: recent publications and the state of sessions
that dropped, so a client that comes back soon gets what it missed.

Every publication delivered through the hub gets an offset; protocols that
support recovery (Socket.IO v4.6+) tell it to the client with each event. A
client that reconnects within ``window`` seconds with its private session id
and last offset gets its session id and rooms back and the publications it
missed replayed in order. Both buffers are bounded in time and in count.

:class:`Recovery` is what the transports use; :class:`LocalRecovery` keeps both
buffers in this node's memory (the in-memory broker's), the Redis broker keeps
them in Redis so that any node can recover a session another node held.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from .auth import Identity

if TYPE_CHECKING:
    from .broker import Publication
    from .session import Session


@attrs.frozen
class SavedSession:
    session_id: str
    identity: Identity
    rooms: frozenset[str]
    saved_at: float


class Recovery(Protocol):
    #: True when publications are numbered by this node's :meth:`record`
    #: (False when the broker hands the hub their positions).
    local: bool

    def record(self, publication: Publication) -> str:
        """Keep ``publication`` (delivered on this node); return its offset."""

    async def missed(self, offset: str, rooms: Iterable[str], tenant: str,
                     session_id: str) -> list[tuple[str, Publication]] | None:
        """Publications after ``offset`` to ``rooms`` of ``tenant`` (but those
        ``session_id`` sent); None if they cannot all be given (too old, or
        the history was lost): the client must re-sync."""

    async def save(self, pid: str, saved: SavedSession) -> None:
        """Keep a dropped session for ``window`` seconds."""

    async def restore(self, pid: str) -> SavedSession | None:
        """Take back a saved session (once); None if unknown or too old."""

    def track(self, pid: str, session: Session) -> None:
        """``session`` (of private id ``pid``) is open on this node: a shared
        store keeps its state current, so that it can be recovered on another
        node if this one dies without saving it."""

    def untrack(self, pid: str) -> None:
        """The session of ``pid`` closed for good (the client left): forget it."""


def missed_by(publication: Publication, tenant: str, rooms: set[str],
              session_id: str) -> bool:
    """Whether a session of ``tenant`` in ``rooms`` (id ``session_id``) was to
    receive ``publication``: one of its rooms, not its own, and not one it got
    through another room (``skip_room``) already."""
    return (publication.tenant == tenant and publication.room in rooms
            and publication.exclude != session_id
            and (publication.skip_room is None or publication.skip_room not in rooms))


class RecoveryLog:
    def __init__(self, window: float, max_events: int) -> None:
        self.window = window
        self.max_events = max_events
        self._counter = 0
        self._events: deque[tuple[int, float, Publication]] = deque()
        self._sessions: OrderedDict[str, SavedSession] = OrderedDict()

    def record(self, publication: Publication) -> str:
        """Keep ``publication``; return its offset."""
        now = trio.current_time()
        self._counter += 1
        events = self._events
        events.append((self._counter, now, publication))
        horizon = now - self.window
        while events and (events[0][1] < horizon or len(events) > self.max_events):
            events.popleft()
        return str(self._counter)

    def missed(self, offset: str, rooms: Iterable[str], tenant: str,
               session_id: str) -> list[tuple[str, Publication]] | None:
        """Publications after ``offset`` to ``rooms``; None if ``offset`` is too old."""
        try:
            after = int(offset)
        except ValueError:
            return None
        events = self._events
        if after > self._counter or (events and after < events[0][0] - 1):
            return None
        if not events and after != self._counter:
            return None
        room_set = set(rooms)
        return [(str(n), p) for n, _, p in events
                if n > after and missed_by(p, tenant, room_set, session_id)]

    def save(self, pid: str, saved: SavedSession) -> None:
        self._sessions[pid] = saved
        horizon = trio.current_time() - self.window
        while self._sessions:
            first = next(iter(self._sessions.values()))
            if first.saved_at >= horizon and len(self._sessions) <= self.max_events:
                break
            self._sessions.popitem(last=False)

    def restore(self, pid: str) -> SavedSession | None:
        saved = self._sessions.pop(pid, None)
        if saved is None or saved.saved_at < trio.current_time() - self.window:
            return None
        return saved


class LocalRecovery:
    """:class:`Recovery` in this node's memory."""

    local = True

    def __init__(self, window: float, max_events: int) -> None:
        self.log = RecoveryLog(window, max_events)

    def record(self, publication: Publication) -> str:
        return self.log.record(publication)

    async def missed(self, offset: str, rooms: Iterable[str], tenant: str,
                     session_id: str) -> list[tuple[str, Publication]] | None:
        return self.log.missed(offset, rooms, tenant, session_id)

    async def save(self, pid: str, saved: SavedSession) -> None:
        self.log.save(pid, saved)

    async def restore(self, pid: str) -> SavedSession | None:
        return self.log.restore(pid)

    def track(self, pid: str, session: Session) -> None:
        pass  # this node's memory dies with it: nothing to keep current

    def untrack(self, pid: str) -> None:
        pass
