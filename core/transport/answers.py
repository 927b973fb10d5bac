"""The answers of one connection, in the order its events came.

A handler may answer later (:class:`~..events.Deferred`): its ack waits in
this queue while the connection goes on reading and handling the next events,
and goes out as soon as it and every answer before it are known. A Deferred
made with ``Deferred.of`` (a queued write) completes through a callback, in
the task that finished the write, so its ack leaves together with what that
task wrote (a broadcast) and no task waits for it; any other Deferred is
awaited by a task of the connection's own, started the first time one comes.
While nothing is deferred, answers go out at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from ..errors import ClientError, server_failure
from ..events import Deferred

#: Deferred answers waiting at most; past it, handling the next event waits.
QUEUE_SIZE = 64

Send = Callable[[Any], None]
Fail = Callable[[ClientError], None]


class _Answer:
    __slots__ = ("done", "error", "fail", "send", "value")

    def __init__(self, send: Send, fail: Fail) -> None:
        self.send = send
        self.fail = fail
        self.done = False
        self.value: Any = None
        self.error: ClientError | None = None

    def settle(self, deferred: Deferred) -> None:
        """Take the outcome of a deferred answer whose source is done."""
        try:
            self.value = deferred.settled()
        except Exception as exc:
            self.error = server_failure(exc, "the request")
        self.done = True


class OrderedAnswers:
    __slots__ = ("_idle", "_nursery", "_queue", "_send", "_space")

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._queue: deque[_Answer] = deque()
        #: Deferred answers without a source, for the task that awaits them.
        self._send: trio.MemorySendChannel[tuple[_Answer, Deferred]] | None = None
        self._space: trio.Event | None = None
        self._idle: trio.Event | None = None

    async def answer(self, result: Any, send: Send, fail: Fail) -> None:
        """Send ``result`` (or, for a Deferred, its outcome) after earlier answers."""
        if not self._queue and not isinstance(result, Deferred):
            send(result)
            return
        while len(self._queue) >= QUEUE_SIZE:
            if self._space is None:
                self._space = trio.Event()
            await self._space.wait()
        entry = _Answer(send, fail)
        self._queue.append(entry)
        if not isinstance(result, Deferred):
            entry.value, entry.done = result, True
            self._flush()
        elif result.source is not None:
            deferred = result
            result.source.add_done_callback(lambda: self._complete(entry, deferred))
        else:
            if self._send is None:
                self._send, receive = trio.open_memory_channel[tuple[_Answer, Deferred]](
                    QUEUE_SIZE)
                self._nursery.start_soon(self._await_each, receive)
            await self._send.send((entry, result))

    def _complete(self, entry: _Answer, deferred: Deferred) -> None:
        entry.settle(deferred)
        self._flush()

    async def _await_each(self, receive: trio.MemoryReceiveChannel[tuple[_Answer, Deferred]],
                          ) -> None:
        async for entry, deferred in receive:
            try:
                entry.value = await deferred.wait()
            except Exception as exc:
                entry.error = server_failure(exc, "the request")
            entry.done = True
            self._flush()

    def _flush(self) -> None:
        """Send the answers at the head of the queue that are known, in order."""
        queue = self._queue
        while queue and queue[0].done:
            entry = queue.popleft()
            if entry.error is not None:
                entry.fail(entry.error)
            else:
                entry.send(entry.value)
        if self._space is not None and len(queue) < QUEUE_SIZE:
            self._space.set()
            self._space = None
        if self._idle is not None and not queue:
            self._idle.set()
            self._idle = None

    @property
    def pending(self) -> int:
        """Answers not sent yet."""
        return len(self._queue)

    async def wait_idle(self) -> None:
        """Return once every answer so far has been sent (or failed)."""
        if self._queue:
            if self._idle is None:
                self._idle = trio.Event()
            await self._idle.wait()
