"""A connection's events, handled one at a time and in arrival order by a task
that exists only while there are some.

The reader hands each event over and goes on reading: a handler that waits for
this client's answer (``session.call``) must not stop that answer from being
read. The handler task is started by the first event of a burst and ends as
soon as the queue is empty, so a connection that is not sending (most of them,
most of the time) holds no task, no coroutine stack and no queue, about 4 KB
each; a burst of events still costs one task, not one per event, and the reader
queues without yielding while there is room (it yields at its next read anyway).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")

#: Events queued at most; past it, the reader waits for the handler.
INBOX_SIZE = 64


class Inbox(Generic[T]):
    """The events of one connection for its handler.

    ``handle`` takes one event and returns False to stop handling (the
    connection is closing): the events behind it and any put later are dropped.
    """

    __slots__ = ("_handle", "_items", "_nursery", "_room", "_size", "_stopped")

    def __init__(self, nursery: trio.Nursery, handle: Callable[[T], Awaitable[bool]],
                 size: int = INBOX_SIZE) -> None:
        self._nursery = nursery
        self._handle = handle
        self._size = size
        #: The queue while the handler task runs, None while it does not.
        self._items: deque[T] | None = None
        #: Set when the reader waits for room (made only then).
        self._room: trio.Event | None = None
        self._stopped = False

    @property
    def running(self) -> bool:
        """Events are queued or being handled."""
        return self._items is not None

    async def put(self, item: T) -> None:
        """Queue ``item``, starting the handler if it is not running; wait (and
        let the handler run) only when the queue is full."""
        items = self._items
        if items is None:
            if self._stopped:
                return
            self._items = deque((item,))
            self._nursery.start_soon(self._run)
            return
        while len(items) >= self._size:
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
            if self._items is not items:  # the handler stopped meanwhile
                return
        items.append(item)

    def put_last(self, item: T) -> bool:
        """Queue ``item`` behind the events being handled (whatever the room);
        False, and nothing queued, when the handler is not running."""
        if self._items is None:
            return False
        self._items.append(item)
        return True

    def close(self) -> None:
        """The connection is over: events put from now on are dropped."""
        self._stopped = True

    async def _run(self) -> None:
        items = self._items
        assert items is not None
        try:
            while items:
                item = items.popleft()
                if self._room is not None:
                    self._room.set()
                    self._room = None
                if not await self._handle(item):
                    self._stopped = True
                    return
                del item  # not kept alive while the next one is awaited
        finally:
            self._items = None
            if self._room is not None:
                self._room.set()
                self._room = None
