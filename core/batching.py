"""Write batching: many concurrent callers, one transaction per batch.

Each caller submits an item and waits for its own result; a single task takes
everything queued (up to ``max_batch``) and hands it to ``flush`` at once, so a
burst of N writes costs about N / max_batch transactions instead of N. The
result of an item is delivered only after its batch has committed, so "stored
before acknowledged" holds per item.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

log = logging.getLogger("switchboard")

T = TypeVar("T")
R = TypeVar("R")


class Pending(Generic[T, R]):
    """An item queued for writing; ``await pending.wait()`` gives its result, and
    ``add_done_callback`` calls a function, in the writer's task, once it is known."""

    __slots__ = ("_callbacks", "done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = trio.Event()
        self.result: R | None = None
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[], None]] = []

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the outcome is known (at once if it is)."""
        if self.done.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    def outcome(self) -> R:
        """The result once done; raises the error if the write failed."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]

    def _finish(self) -> None:
        self.done.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one caller's bug must not stop the writer
                log.exception("a callback of a batched write failed")

    async def wait(self) -> R:
        with trio.CancelScope(shield=True):
            # Once queued, the item will be written: wait for the outcome even if
            # the caller is cancelled, so no caller believes a stored item was lost.
            await self.done.wait()
        return self.outcome()


class Batcher(Generic[T, R]):
    """Run ``flush(items) -> results`` (same length and order) over queued items.

    ``flush`` is all or nothing: when it raises, none of the batch took effect.
    By default every item of a failed batch then gets the error. With
    ``retry_alone``, a batch whose error it accepts is written again one item
    at a time, in order, so that one bad item (input that slipped past
    validation and that the database refuses) fails alone instead of failing
    the others queued with it, which may belong to other users or tenants.
    """

    def __init__(self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *,
                 max_batch: int = 500, linger: float = 0.0, min_interval: float = 0.0,
                 retry_alone: Callable[[Exception], bool] | None = None) -> None:
        if max_batch < 1:  # (a batch of none would never empty the queue)
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._flush = flush
        self._retry_alone = retry_alone
        self.max_batch = max_batch
        #: Seconds to wait after the first item for more (bigger batches: fewer
        #: transactions, and results that go out together).
        self.linger = linger
        #: Seconds at least between the starts of two flushes: under a steady
        #: stream the items of that time share one flush (and what it sends),
        #: while an item that comes after a quiet moment is flushed at once
        #: (unlike ``linger``, which always waits). A full batch never waits.
        self.min_interval = min_interval
        self._last_flush = -float("inf")
        self._queue: list[Pending[T, R]] = []
        self._wakeup = trio.Event()
        self._running = False

    def enqueue(self, item: T) -> Pending[T, R]:
        """Queue ``item`` now (items are written in the order they are queued)."""
        if not self._running:
            raise RuntimeError("the batch writer is not running")
        pending: Pending[T, R] = Pending(item)
        self._queue.append(pending)
        self._wakeup.set()
        return pending

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait until its batch is written; return its result."""
        return await self.enqueue(item).wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task: flush batches until cancelled (then flush what is left)."""
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                if self.linger > 0 and len(self._queue) < self.max_batch:
                    await trio.sleep(self.linger)
                while self._queue:
                    if self.min_interval > 0 and len(self._queue) < self.max_batch:
                        await trio.sleep_until(self._last_flush + self.min_interval)
                    self._last_flush = trio.current_time()
                    await self._flush_some()
        finally:
            self._running = False
            with trio.CancelScope(shield=True):
                while self._queue:
                    await self._flush_some()

    async def _flush_some(self) -> None:
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        try:
            results = await self._flush([p.item for p in batch])
        except Exception as exc:
            if len(batch) > 1 and self._retry_alone is not None and self._retry_alone(exc):
                for pending in batch:
                    await self._flush_alone(pending)
                return
            for pending in batch:
                pending.error = exc
                pending._finish()
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
            pending._finish()

    async def _flush_alone(self, pending: Pending[T, R]) -> None:
        try:
            (pending.result,) = await self._flush([pending.item])
        except Exception as exc:
            pending.error = exc
        pending._finish()
