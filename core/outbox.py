"""The bounded outgoing queue of one connection.

Fan-out puts ready-made wire bytes in; the connection's writer task takes
everything queued at once and writes it with a single ``send_all`` (write
coalescing: one syscall for many frames). The queue is bounded in bytes: a
``put`` that would pass the bound is refused, and the caller treats the peer as
a slow consumer.

There is one reader (the writer task), so a waiting ``take`` is the task itself,
woken directly: no parking lot per connection.
"""

from __future__ import annotations

import trio


class Outbox:
    __slots__ = ("_frames", "_size", "_waiter", "closed", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closed = False
        self._frames: list[bytes] = []
        self._size = 0
        self._waiter: trio.lowlevel.Task | None = None

    @property
    def size(self) -> int:
        """Bytes queued and not yet taken by the writer."""
        return self._size

    @property
    def pending(self) -> bool:
        """Frames are queued."""
        return bool(self._frames)

    def take_now(self) -> bytes:
        """Everything queued, joined (``b""`` when nothing is)."""
        frames = self._frames
        self._frames = []
        self._size = 0
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def put(self, frame: bytes) -> bool:
        """Queue ``frame``; False (and nothing queued) if it would pass the bound."""
        if self.closed:
            return True
        size = self._size + len(frame)
        if size > self.limit:
            return False
        self._frames.append(frame)
        self._size = size
        if self._waiter is not None:
            self._wake()
        return True

    def put_last(self, frame: bytes) -> None:
        """Drop what is queued, queue ``frame`` and accept nothing after it."""
        self._frames = [frame]
        self._size = len(frame)
        self.closed = True
        if self._waiter is not None:
            self._wake()

    async def take(self, linger: float = 0.0) -> bytes:
        """Wait for queued frames and return all of them joined.

        With ``linger``, wait that long after the first frame arrives so that
        frames queued meanwhile go out in the same write (fewer, larger writes
        when many small events arrive one by one, for that much latency).
        """
        while not self._frames:
            if self.closed:
                return b""
            if self._waiter is not None:
                raise trio.BusyResourceError("another task is already taking from this outbox")
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
            if linger > 0 and not self.closed:
                await trio.sleep(linger)
        frames = self._frames
        self._frames = []
        self._size = 0
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def finish(self) -> None:
        """Accept nothing more; a waiting ``take`` returns what is left, then ``b""``."""
        self.closed = True
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        task, self._waiter = self._waiter, None
        assert task is not None
        trio.lowlevel.reschedule(task)

    def _abort(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED
