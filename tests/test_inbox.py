"""The reader-to-handler handoff: in order, waiting only when the queue is full,
and a handler task only while there are events."""

from __future__ import annotations

import trio
import trio.testing
from switchboard.core.transport.inbox import Inbox


def handler_tasks(nursery: trio.Nursery) -> int:
    return sum(task.name.endswith("Inbox._run") for task in nursery.child_tasks)


async def test_items_are_handled_in_order_and_a_full_queue_holds_the_reader(
        autojump_clock: trio.testing.MockClock) -> None:
    handled: list[int] = []
    queued_at: list[float] = []

    async def handle(item: int) -> bool:
        await trio.sleep(1)  # a slow handler
        handled.append(item)
        return True

    async with trio.open_nursery() as nursery:
        inbox = Inbox(nursery, handle, size=2)
        for item in range(10):
            await inbox.put(item)
            queued_at.append(trio.current_time())
    assert handled == list(range(10))
    # the first three went in at once (one taken, two queued); then one per second
    assert queued_at[:3] == [queued_at[0]] * 3
    assert queued_at[3] - queued_at[0] == 1


async def test_queueing_below_capacity_does_not_switch_tasks() -> None:
    ran: list[str] = []

    async def handle(item: int) -> bool:
        ran.append(f"handled {item}")
        return True

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        inbox = Inbox(nursery, handle, size=4)
        nursery.start_soon(other)
        for item in range(4):
            await inbox.put(item)
        assert ran == []  # the queueing task never yielded
    assert sorted(ran) == ["handled 0", "handled 1", "handled 2", "handled 3", "other"]


async def test_the_handler_task_exists_only_while_there_are_events(
        autojump_clock: trio.testing.MockClock) -> None:
    handled: list[str] = []

    async def handle(item: str) -> bool:
        await trio.sleep(1)
        handled.append(item)
        return True

    async with trio.open_nursery() as nursery:
        inbox = Inbox(nursery, handle)
        assert handler_tasks(nursery) == 0 and not inbox.running
        await inbox.put("a")
        await inbox.put("b")
        await trio.lowlevel.checkpoint()
        assert handler_tasks(nursery) == 1 and inbox.running
        await trio.sleep(5)
        assert handled == ["a", "b"]
        assert handler_tasks(nursery) == 0 and not inbox.running  # idle: gone
        await inbox.put("c")  # a new burst starts a new one
        await trio.sleep(5)
        assert handled == ["a", "b", "c"]
        assert handler_tasks(nursery) == 0


async def test_put_last_goes_behind_the_queue_only_while_handling(
        autojump_clock: trio.testing.MockClock) -> None:
    handled: list[str] = []

    async def handle(item: str) -> bool:
        await trio.sleep(1)
        handled.append(item)
        return item != "stop"

    async with trio.open_nursery() as nursery:
        inbox = Inbox(nursery, handle, size=1)
        assert not inbox.put_last("stop")  # nothing running: nothing queued
        await inbox.put("a")
        await inbox.put("b")
        assert inbox.put_last("stop")  # past the size: it never waits
        await trio.sleep(10)
        assert handled == ["a", "b", "stop"]
        await inbox.put("late")  # after a stop, events are dropped
        await trio.sleep(10)
    assert handled == ["a", "b", "stop"]
    assert handler_tasks(nursery) == 0


async def test_a_closed_inbox_drops_what_comes_later(
        autojump_clock: trio.testing.MockClock) -> None:
    handled: list[str] = []

    async def handle(item: str) -> bool:
        handled.append(item)
        return True

    async with trio.open_nursery() as nursery:
        inbox = Inbox(nursery, handle)
        await inbox.put("a")
        await trio.sleep(1)
        inbox.close()
        await inbox.put("b")
    assert handled == ["a"]
