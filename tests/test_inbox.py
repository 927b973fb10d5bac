"""The reader-to-handler handoff: in order, and waiting only when the queue is full."""

from __future__ import annotations

import trio
import trio.testing
from switchboard.core.transport.inbox import drain, send_in_turn


async def test_items_arrive_in_order_and_a_full_queue_holds_the_sender(
        autojump_clock: trio.testing.MockClock) -> None:
    send, receive = trio.open_memory_channel[int](2)
    handled: list[int] = []

    async def handler() -> None:
        async for item in receive:
            handled.append(item)
            handled.extend(drain(receive))
            await trio.sleep(1)  # a slow handler

    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler)
        for item in range(10):
            await send_in_turn(send, item)
        await send.aclose()
    assert handled == list(range(10))


async def test_queueing_below_capacity_does_not_switch_tasks() -> None:
    send, receive = trio.open_memory_channel[int](4)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for item in range(4):
            await send_in_turn(send, item)
        assert ran == []  # the queueing task never yielded
    assert list(drain(receive)) == [0, 1, 2, 3]
