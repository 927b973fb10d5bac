"""The write batcher: many callers, one flush per batch, results in order."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import trio
import trio.testing
from switchboard.core.batching import Batcher


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await trio.sleep(0.01)  # the transaction takes a while (mock clock)
        return [i * 10 for i in items]


async def test_concurrent_submits_share_batches_and_get_their_own_results(
        autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, max_batch=100)
    results: dict[int, int] = {}

    async def submit(i: int) -> None:
        results[i] = await batcher.submit(i)

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        async with trio.open_nursery() as callers:
            for i in range(50):
                callers.start_soon(submit, i)
        nursery.cancel_scope.cancel()
    assert results == {i: i * 10 for i in range(50)}
    assert len(recorder.batches) < 50
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(50))


async def test_max_batch_bounds_a_flush(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, max_batch=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        async with trio.open_nursery() as callers:
            for i in range(30):
                callers.start_soon(batcher.submit, i)
        nursery.cancel_scope.cancel()
    assert max(len(b) for b in recorder.batches) <= 7


async def test_linger_waits_for_more_items(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, linger=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        async with trio.open_nursery() as callers:
            callers.start_soon(batcher.submit, 1)
            await trio.sleep(0.02)
            callers.start_soon(batcher.submit, 2)
        nursery.cancel_scope.cancel()
    assert recorder.batches == [[1, 2]]


async def test_min_interval_gathers_a_steady_stream_but_never_delays_a_lone_item(
        autojump_clock: trio.testing.MockClock) -> None:
    started: list[tuple[float, list[int]]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        started.append((trio.current_time(), list(items)))
        await trio.sleep(0.001)  # a quick transaction
        return list(items)

    batcher = Batcher(flush, min_interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        t0 = trio.current_time()
        async with trio.open_nursery() as callers:
            for i in range(20):  # one item every 2 ms
                callers.start_soon(batcher.submit, i)
                await trio.sleep(0.002)
        await trio.sleep(1)  # quiet
        alone_at = trio.current_time()
        await batcher.submit(99)
        nursery.cancel_scope.cancel()
    assert [i for _, items in started for i in items] == [*range(20), 99]
    steady = started[:-1]
    # the first item went at once, the rest in flushes at least 10 ms apart
    assert steady[0] == (t0, [0])
    assert all(b[0] - a[0] >= 0.01 - 1e-9 for a, b in itertools.pairwise(steady))
    assert len(steady) <= 6 and max(len(items) for _, items in steady) >= 4
    # after a quiet moment an item is flushed the moment it comes
    assert started[-1] == (alone_at, [99])


async def test_a_failed_flush_fails_every_item_of_its_batch(
        autojump_clock: trio.testing.MockClock) -> None:
    async def broken(items: Sequence[int]) -> list[int]:
        raise RuntimeError("database is down")

    batcher = Batcher(broken)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        with pytest.raises(RuntimeError, match="database is down"):
            await batcher.submit(1)
        nursery.cancel_scope.cancel()


async def test_submitting_when_not_running_is_an_error() -> None:
    batcher: Batcher[int, int] = Batcher(Recorder().flush)
    with pytest.raises(RuntimeError):
        await batcher.submit(1)


async def test_with_retry_alone_one_bad_item_fails_alone(
        autojump_clock: trio.testing.MockClock) -> None:
    flushed: list[list[int]] = []

    async def refuses_negative(items: Sequence[int]) -> list[int]:
        flushed.append(list(items))
        await trio.sleep(0.01)
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return [i * 10 for i in items]

    batcher = Batcher(refuses_negative, linger=0.05,
                      retry_alone=lambda exc: isinstance(exc, ValueError))
    outcomes: dict[int, object] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        queued = [(i, batcher.enqueue(i)) for i in (1, 2, -3, 4)]  # in this order
        for i, pending in queued:
            try:
                outcomes[i] = await pending.wait()
            except ValueError as exc:
                outcomes[i] = str(exc)
        nursery.cancel_scope.cancel()
    assert outcomes == {1: 10, 2: 20, -3: "negative", 4: 40}
    assert flushed == [[1, 2, -3, 4], [1], [2], [-3], [4]]


async def test_errors_retry_alone_does_not_accept_fail_the_whole_batch(
        autojump_clock: trio.testing.MockClock) -> None:
    calls: list[list[int]] = []

    async def down(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await trio.sleep(0.01)
        raise ConnectionError("database is down")

    batcher = Batcher(down, linger=0.05,
                      retry_alone=lambda exc: not isinstance(exc, ConnectionError))
    failed: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        queued = [(i, batcher.enqueue(i)) for i in range(5)]
        for i, pending in queued:
            with pytest.raises(ConnectionError):
                await pending.wait()
            failed.append(i)
        nursery.cancel_scope.cancel()
    assert sorted(failed) == list(range(5))
    assert calls == [[0, 1, 2, 3, 4]]  # no one-by-one retries


@pytest.mark.parametrize("max_batch", [0, -1])
def test_a_batch_of_none_is_refused_at_once(max_batch: int) -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        return list(items)

    with pytest.raises(ValueError, match="max_batch"):
        Batcher(flush, max_batch=max_batch)
