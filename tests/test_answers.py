"""A connection's answers go out in the order of its events, whatever kind each is."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio
import trio.testing
from switchboard.core.batching import Pending
from switchboard.core.errors import ClientError
from switchboard.core.events import Deferred
from switchboard.core.transport.answers import QUEUE_SIZE, OrderedAnswers


class Sent:
    def __init__(self) -> None:
        self.out: list[Any] = []

    def send(self, n: int) -> Any:
        return lambda value: self.out.append((n, value))

    def fail(self, n: int) -> Any:
        return lambda error: self.out.append((n, error.code))


def finish(pending: Pending[Any, Any], result: Any = None,
           error: BaseException | None = None) -> None:
    pending.result, pending.error = result, error
    pending._finish()


async def test_immediate_deferred_and_queued_write_answers_keep_their_order(
        autojump_clock: trio.testing.MockClock) -> None:
    sent = Sent()
    first: Pending[str, dict[str, str]] = Pending("a")
    second: Pending[str, dict[str, str]] = Pending("b")

    async def slow() -> str:
        await trio.sleep(1)
        return "slow"

    async with trio.open_nursery() as nursery:
        answers = OrderedAnswers(nursery)
        await answers.answer("now", sent.send(0), sent.fail(0))
        await answers.answer(Deferred.of(first, lambda r: r["id"]), sent.send(1), sent.fail(1))
        await answers.answer(Deferred(slow), sent.send(2), sent.fail(2))
        await answers.answer("after", sent.send(3), sent.fail(3))
        await answers.answer(Deferred.of(second), sent.send(4), sent.fail(4))
        assert sent.out == [(0, "now")]
        finish(second, {"id": "B"})  # out of order: waits for those before it
        assert sent.out == [(0, "now")]
        finish(first, {"id": "A"})
        assert sent.out == [(0, "now"), (1, "A")]  # at once, in the writer's call
        await trio.sleep(2)
        assert sent.out == [(0, "now"), (1, "A"), (2, "slow"), (3, "after"),
                            (4, {"id": "B"})]
        nursery.cancel_scope.cancel()


async def test_a_failed_write_answers_its_error_in_its_place(
        autojump_clock: trio.testing.MockClock) -> None:
    sent = Sent()
    failing: Pending[str, Any] = Pending("a")
    async with trio.open_nursery() as nursery:
        answers = OrderedAnswers(nursery)
        await answers.answer(Deferred.of(failing), sent.send(0), sent.fail(0))
        await answers.answer("next", sent.send(1), sent.fail(1))
        finish(failing, error=ClientError("conflict", "taken"))
        assert sent.out == [(0, "conflict"), (1, "next")]
        refused: Pending[str, Any] = Pending("b")
        await answers.answer(Deferred.of(refused), sent.send(2), sent.fail(2))
        finish(refused, error=RuntimeError("bug"))
        assert sent.out[-1] == (2, "internal_error")
        nursery.cancel_scope.cancel()


async def test_too_many_answers_waiting_hold_up_the_next_event(
        autojump_clock: trio.testing.MockClock) -> None:
    sent = Sent()
    pendings: list[Pending[int, int]] = [Pending(i) for i in range(QUEUE_SIZE + 1)]
    async with trio.open_nursery() as nursery:
        answers = OrderedAnswers(nursery)
        for i in range(QUEUE_SIZE):
            await answers.answer(Deferred.of(pendings[i]), sent.send(i), sent.fail(i))
        with trio.move_on_after(5) as waited:
            await answers.answer(Deferred.of(pendings[-1]), sent.send(-1), sent.fail(-1))
        assert waited.cancelled_caught
        finish(pendings[0], 0)
        with trio.fail_after(5):
            await answers.answer(Deferred.of(pendings[-1]), sent.send(-1), sent.fail(-1))
        assert sent.out == [(0, 0)]
        nursery.cancel_scope.cancel()


def test_a_callback_that_raises_does_not_stop_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    pending: Pending[str, int] = Pending("a")
    called: list[str] = []

    def broken() -> None:
        raise RuntimeError("bug")

    pending.add_done_callback(broken)
    pending.add_done_callback(lambda: called.append("second"))
    finish(pending, 1)
    assert called == ["second"]
    assert "callback" in caplog.text
    pending.add_done_callback(lambda: called.append("late"))  # done already: at once
    assert called == ["second", "late"]


async def test_queued_write_answers_leave_no_cyclic_garbage(
        autojump_clock: trio.testing.MockClock) -> None:
    """Each answer is freed by reference counting: a reference cycle per message
    would feed the cyclic collector, whose full passes stall every connection
    (they showed as a p99 ack latency ten times the median).

    The collector counts what every thread of the test process left: a worker
    thread of an earlier test ending meanwhile (an idle one ends after 10 s,
    with what it held, a browser test's event loop say) can leave garbage
    during one run of messages. A cycle per message shows in every run, so
    one run without garbage in three passes."""
    sent = Sent()
    found = []
    async with trio.open_nursery() as nursery:
        answers = OrderedAnswers(nursery)
        for run in range(3):
            gc.collect()
            gc.disable()
            try:
                for i in range(200 * run, 200 * (run + 1)):
                    pending: Pending[int, int] = Pending(i)
                    await answers.answer(Deferred.of(pending, lambda r: r + 1), sent.send(i),
                                         sent.fail(i))
                    finish(pending, i)
                found.append(gc.collect())
            finally:
                gc.enable()
            if found[-1] == 0:
                break
        nursery.cancel_scope.cancel()
    assert found[-1] == 0, f"cyclic garbage found after each run: {found}"
    assert len(sent.out) == 200 * len(found)
