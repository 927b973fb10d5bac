"""The bounded outgoing queue of one connection.

Fan-out puts ready-made wire bytes in; the connection's writer takes
everything queued at once and writes it with a single ``send_all`` (write
coalescing: one syscall for many frames). The queue is bounded in bytes: a
``put`` that would pass the bound is refused, and the caller treats the peer as
a slow consumer. The queue wakes no one: the channel that owns it starts a
writer when it queues into an outbox that had nothing (see ``WsChannel``).
"""

from __future__ import annotations


class Outbox:
    __slots__ = ("_frames", "_size", "closed", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closed = False
        self._frames: list[bytes] = []
        self._size = 0

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
        return True

    def put_first(self, data: bytes) -> None:
        """Queue ``data`` before everything (what a write left), past the bound."""
        self._frames.insert(0, data)
        self._size += len(data)

    def put_last(self, frame: bytes) -> None:
        """Drop what is queued, queue ``frame`` and accept nothing after it."""
        self._frames = [frame]
        self._size = len(frame)
        self.closed = True

    def finish(self) -> None:
        """Accept nothing more (what is queued is still taken)."""
        self.closed = True
