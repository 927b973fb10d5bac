"""The shared timers every connection's heartbeat runs on (Trio's clock)."""

from __future__ import annotations

import trio
import trio.testing
from switchboard.core.timers import Timers


class Recorder:
    def __init__(self, name: str, calls: list[tuple[str, float]], fail: bool = False) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail

    def due(self) -> None:
        self.calls.append((self.name, trio.current_time()))
        if self.fail:
            raise RuntimeError("a bug in one connection's timer")


async def test_timers_are_called_in_deadline_order_and_a_failing_one_stops_none(
        autojump_clock: trio.testing.MockClock) -> None:
    calls: list[tuple[str, float]] = []
    failures: list[str] = []
    timers = Timers(lambda what, exc: failures.append(str(exc)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        timers.at(start + 30, Recorder("late", calls))
        cancelled = timers.at(start + 10, Recorder("cancelled", calls))
        timers.at(start + 20, Recorder("failing", calls, fail=True))
        await trio.sleep(1)
        timers.at(start + 5, Recorder("early, scheduled while the task sleeps", calls))
        timers.cancel(cancelled)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert [(name, when - start) for name, when in calls] == [
        ("early, scheduled while the task sleeps", 5), ("failing", 20), ("late", 30)]
    assert failures == ["a bug in one connection's timer"]


async def test_many_cancelled_timers_are_dropped_from_the_heap() -> None:
    timers = Timers()
    now = trio.current_time()
    scheduled = [timers.at(now + 100 + i, Recorder(str(i), [])) for i in range(1000)]
    for timer in scheduled[:900]:
        timers.cancel(timer)
    assert len(timers) < 500
