"""The shared timers every connection's heartbeat runs on (Trio's clock)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio
import trio.testing
from switchboard.core.timers import GRANULARITY, Timers


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


async def test_timers_due_within_one_step_of_the_grid_are_served_by_one_wake(
        autojump_clock: trio.testing.MockClock) -> None:
    """A hundred deadlines within a few milliseconds: one wake of the timer task
    serves them all, none before its deadline, none more than a step late."""
    calls: list[tuple[str, float]] = []
    wakes: list[int] = []

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        before = len(calls)
        yield
        wakes.append(len(calls) - before)

    timers = Timers()
    timers.around = around
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time() + 10.0001
        deadlines = {str(i): start + i * 0.00004 for i in range(100)}
        for name, deadline in deadlines.items():
            timers.at(deadline, Recorder(name, calls))
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert wakes == [100]
    for name, when in calls:
        assert deadlines[name] <= when <= deadlines[name] + GRANULARITY


async def test_a_failure_around_the_callbacks_stops_no_later_timer(
        autojump_clock: trio.testing.MockClock) -> None:
    calls: list[tuple[str, float]] = []
    failures: list[str] = []
    entered = 0

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        nonlocal entered
        entered += 1
        yield
        if entered == 1:
            raise OSError("the writes after the first wake failed")

    timers = Timers(lambda what, exc: failures.append(f"{what}: {exc}"))
    timers.around = around
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        timers.at(start + 1, Recorder("first", calls))
        timers.at(start + 2, Recorder("second", calls))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [name for name, _ in calls] == ["first", "second"]
    assert failures == ["timers: the writes after the first wake failed"]


def test_a_deadline_is_never_rounded_below_itself() -> None:
    timers = Timers()
    # (one step of float above a grid point: ceil(d / step) * step lands below it)
    for deadline in (0.015, 0.1 + 0.2, 123.456789, 2093456.8250000002, 229721.86500000002):
        assert timers.at(deadline, Recorder("x", [])).deadline >= deadline
