"""The coalescing throttle: first update at once, bursts collapse to the latest."""

from __future__ import annotations

from typing import TypeAlias

import pytest
import trio
from switchboard.core.throttle import Coalescer
from trio.testing import MockClock

INTERVAL = 1.0
Throttle: TypeAlias = Coalescer[str, int]


class Recorder:
    def __init__(self) -> None:
        self.delivered: list[tuple[float, str, int]] = []

    async def deliver(self, key: str, value: int) -> None:
        self.delivered.append((trio.current_time(), key, value))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def coalescer(nursery: trio.Nursery, recorder: Recorder) -> Throttle:
    return Coalescer(nursery, INTERVAL, recorder.deliver)


# Each test takes ``autojump_clock`` itself: pytest-trio runs a test on a clock
# only when the test function asks for it.


async def test_first_update_is_delivered_at_once(
        autojump_clock: MockClock, coalescer: Throttle, recorder: Recorder) -> None:
    start = trio.current_time()
    await coalescer.submit("alice", 1)
    assert recorder.delivered == [(start, "alice", 1)]


async def test_burst_delivers_only_the_latest_at_the_end_of_the_interval(
        autojump_clock: MockClock, coalescer: Throttle, recorder: Recorder) -> None:
    start = trio.current_time()
    await coalescer.submit("alice", 1)
    for value in range(2, 7):
        await trio.sleep(0.1)
        await coalescer.submit("alice", value)
    assert recorder.delivered == [(start, "alice", 1)]  # nothing more yet
    await trio.sleep(INTERVAL)
    assert recorder.delivered == [(start, "alice", 1), (start + INTERVAL, "alice", 6)]


async def test_burst_costs_at_most_two_deliveries_per_interval(
        autojump_clock: MockClock, coalescer: Throttle, recorder: Recorder) -> None:
    for value in range(50):
        await coalescer.submit("alice", value)
        await trio.sleep(0.02)  # 50 updates over one interval
    await trio.sleep(INTERVAL * 2)
    assert [value for _, _, value in recorder.delivered] == [0, 49]


async def test_separate_keys_are_independent(
        autojump_clock: MockClock, coalescer: Throttle, recorder: Recorder) -> None:
    start = trio.current_time()
    await coalescer.submit("alice", 1)
    await coalescer.submit("bob", 10)
    await coalescer.submit("alice", 2)
    assert recorder.delivered == [(start, "alice", 1), (start, "bob", 10)]
    await trio.sleep(INTERVAL * 2)
    assert recorder.delivered[2:] == [(start + INTERVAL, "alice", 2)]


async def test_update_after_quiet_time_is_immediate_again(
        autojump_clock: MockClock, coalescer: Throttle, recorder: Recorder) -> None:
    await coalescer.submit("alice", 1)
    await coalescer.submit("alice", 2)
    await trio.sleep(INTERVAL * 3)
    later = trio.current_time()
    await coalescer.submit("alice", 3)
    assert recorder.delivered[-1] == (later, "alice", 3)
    assert len(recorder.delivered) == 3


async def test_update_right_after_the_interval_is_immediate(
        autojump_clock: MockClock, coalescer: Throttle, recorder: Recorder) -> None:
    start = trio.current_time()
    await coalescer.submit("alice", 1)
    await trio.sleep(INTERVAL)
    await coalescer.submit("alice", 2)
    assert recorder.delivered == [(start, "alice", 1), (start + INTERVAL, "alice", 2)]

