"""One task for the timers of every connection.

A connection's heartbeat (the next ping, the pong's deadline, the token's
expiry) used to be a task of its own, asleep nearly all the time: a few KiB
of coroutine frames, a Task, a cancel scope and its status per connection,
for a wake-up every heartbeat interval. :class:`Timers` keeps those deadlines
in one heap instead, and a single task sleeps until the earliest of them (on
Trio's clock, so tests drive it with ``MockClock``) and calls what is due.

A callback runs synchronously in the timer task: it may send frames and start
closing a connection, never wait. One that raises is logged and counted; the
timer task goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable

import trio

from .supervise import log_failure

log = logging.getLogger("switchboard.timers")


class Timer:
    """One scheduled call; :meth:`cancel` it, or schedule a new one, to move it."""

    __slots__ = ("callback", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None] | None) -> None:
        self.deadline = deadline
        self.callback = callback

    @property
    def cancelled(self) -> bool:
        return self.callback is None

    def cancel(self) -> None:
        self.callback = None


class Timers:
    """Deadlines on Trio's clock, all served by :meth:`run` (one task)."""

    def __init__(self, on_failure: Callable[[str, Exception], None] | None = None) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._cancelled = 0
        self._on_failure = on_failure or log_failure

    def __len__(self) -> int:
        """Timers scheduled and not yet due (cancelled ones included until dropped)."""
        return len(self._heap)

    def at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` at ``deadline`` (Trio's clock), unless cancelled first."""
        timer = Timer(deadline, callback)
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._order), timer))
        sleep = self._sleep
        if sleep is not None and deadline < sleep.deadline:
            sleep.deadline = deadline
        return timer

    def cancel(self, timer: Timer | None) -> None:
        """Cancel ``timer`` (None or an already cancelled one: nothing to do)."""
        if timer is None or timer.callback is None:
            return
        timer.callback = None
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].callback is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    async def run(self) -> None:
        """Call each timer when it is due, for ever (run it in a nursery)."""
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, timer = heapq.heappop(self._heap)
                callback = timer.callback
                if callback is None:
                    self._cancelled = max(0, self._cancelled - 1)
                    continue
                timer.callback = None
                try:
                    callback()
                except Exception as exc:
                    self._on_failure(f"timer {getattr(callback, '__qualname__', callback)}",
                                     exc)
            heap = self._heap
            with trio.CancelScope(deadline=heap[0][0] if heap else float("inf")) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._sleep = None
