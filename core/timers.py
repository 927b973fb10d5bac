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

Deadlines are served on a grid of :data:`GRANULARITY` seconds (a timer never
fires early, at most that much late): the task wakes once for all the
timers due within it, not once per timer (tens of thousands of connections
pinged every 25 s would otherwise wake it hundreds of times a second, each
wake a cancelled sleep). The callbacks of one wake run inside
:attr:`Timers.around` (the server's: what they queue to connections is
written by the timer task when they are done).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
from collections.abc import Callable
from typing import Protocol

import trio

from .supervise import log_failure

log = logging.getLogger("switchboard.timers")

#: Seconds of the grid deadlines are rounded up to.
GRANULARITY = 0.005


class Due(Protocol):
    """What a timer calls: ``due()`` (an object, not a bound method: one
    object less kept per scheduled timer)."""

    def due(self) -> None: ...


class Timer:
    """One scheduled call of ``target.due()``; cancel it with :meth:`Timers.cancel`."""

    __slots__ = ("deadline", "target")

    def __init__(self, deadline: float, target: Due | None) -> None:
        self.deadline = deadline
        self.target = target

    def __lt__(self, other: Timer) -> bool:
        return self.deadline < other.deadline

    @property
    def cancelled(self) -> bool:
        return self.target is None


class Timers:
    """Deadlines on Trio's clock, all served by :meth:`run` (one task)."""

    def __init__(self, on_failure: Callable[[str, Exception], None] | None = None) -> None:
        self._heap: list[Timer] = []
        self._sleep: trio.CancelScope | None = None
        self._cancelled = 0
        self._on_failure = on_failure or log_failure
        #: What the callbacks of one wake run inside.
        self.around: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext

    def __len__(self) -> int:
        """Timers scheduled and not yet due (cancelled ones included until dropped)."""
        return len(self._heap)

    def at(self, deadline: float, target: Due) -> Timer:
        """Call ``target.due()`` at ``deadline`` (Trio's clock), unless cancelled first."""
        if deadline < math.inf:
            # (never below the deadline asked, whatever the float rounding)
            deadline = max(deadline, math.ceil(deadline / GRANULARITY) * GRANULARITY)
        timer = Timer(deadline, target)
        heapq.heappush(self._heap, timer)
        sleep = self._sleep
        if sleep is not None and deadline < sleep.deadline:
            sleep.deadline = deadline
        return timer

    def cancel(self, timer: Timer | None) -> None:
        """Cancel ``timer`` (None or an already cancelled one: nothing to do)."""
        if timer is None or timer.target is None:
            return
        timer.target = None
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [timer for timer in self._heap if timer.target is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    async def run(self) -> None:
        """Call each timer when it is due, for ever (run it in a nursery)."""
        while True:
            now = trio.current_time()
            if self._heap and self._heap[0].deadline <= now:
                try:
                    with self.around():
                        self._call_due(now)
                except Exception as exc:  # (around's own end: its writes)
                    self._on_failure("timers", exc)
            deadline = self._heap[0].deadline if self._heap else float("inf")
            with trio.CancelScope(deadline=deadline) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._sleep = None

    def _call_due(self, now: float) -> None:
        while self._heap and self._heap[0].deadline <= now:
            timer = heapq.heappop(self._heap)
            target = timer.target
            if target is None:
                self._cancelled = max(0, self._cancelled - 1)
                continue
            timer.target = None
            try:
                target.due()
            except Exception as exc:
                self._on_failure(f"timer of {target!r}", exc)
