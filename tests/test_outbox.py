"""The per-connection outbox: bounded in bytes, drained in one piece."""

from __future__ import annotations

import trio
import trio.testing
from switchboard.core.outbox import Outbox


async def test_take_returns_everything_queued_joined() -> None:
    box = Outbox(1000)
    assert box.put(b"a") and box.put(b"bc")
    assert await box.take() == b"abc"
    assert box.size == 0


async def test_a_put_past_the_bound_is_refused_and_queues_nothing() -> None:
    box = Outbox(4)
    assert box.put(b"abc")
    assert not box.put(b"de")
    assert box.size == 3


async def test_linger_gathers_frames_that_arrive_soon_after_the_first(
        autojump_clock: trio.testing.MockClock) -> None:
    box = Outbox(1000)
    taken: list[bytes] = []

    async def writer() -> None:
        taken.append(await box.take(linger=0.005))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        box.put(b"first ")
        await trio.sleep(0.002)
        box.put(b"second")
    assert taken == [b"first second"]


async def test_without_linger_the_first_frame_goes_alone(
        autojump_clock: trio.testing.MockClock) -> None:
    box = Outbox(1000)
    taken: list[bytes] = []

    async def writer() -> None:
        taken.append(await box.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        box.put(b"first ")
        await trio.sleep(0.002)
        box.put(b"second")
    assert taken == [b"first "]


async def test_finish_wakes_the_writer_with_what_is_left_then_nothing() -> None:
    box = Outbox(1000)
    box.put(b"last")
    box.finish()
    assert await box.take() == b"last"
    assert await box.take() == b""
