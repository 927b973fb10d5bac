"""The answers of one connection, in the order its events came.

A handler may answer later (:class:`~..events.Deferred`): its ack waits in
this queue while the connection goes on reading and handling the next events;
a task of the connection's own sends the answers in order. While nothing is
deferred, answers go out at once and the task is never started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ..errors import ClientError, server_failure
from ..events import Deferred

#: Deferred answers waiting at most; past it, handling the next event waits.
QUEUE_SIZE = 64

Send = Callable[[Any], None]
Fail = Callable[[ClientError], None]


class OrderedAnswers:
    __slots__ = ("_nursery", "_pending", "_send")

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._pending = 0
        self._send: trio.MemorySendChannel[tuple[Any, Send, Fail]] | None = None

    async def answer(self, result: Any, send: Send, fail: Fail) -> None:
        """Send ``result`` (or, for a Deferred, its outcome) after earlier answers."""
        if not self._pending and not isinstance(result, Deferred):
            send(result)
            return
        if self._send is None:
            self._send, receive = trio.open_memory_channel[tuple[Any, Send, Fail]](QUEUE_SIZE)
            self._nursery.start_soon(self._run, receive)
        self._pending += 1
        await self._send.send((result, send, fail))

    async def _run(self, receive: trio.MemoryReceiveChannel[tuple[Any, Send, Fail]]) -> None:
        async for result, send, fail in receive:
            try:
                value = await result.wait() if isinstance(result, Deferred) else result
            except Exception as exc:
                fail(server_failure(exc, "the request"))
            else:
                send(value)
            finally:
                self._pending -= 1
