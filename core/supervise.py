"""Supervision: a failure ends the one thing it happened in, never the server.

The server's task tree is server -> connections -> one connection's tasks,
with plugin work beside the connections. Trio propagates an exception out of
a task into its nursery, which cancels the nursery's other tasks: right for a
connection's own reader and writer, fatal if it reaches the server's
nurseries. So everything started in them goes through a guard here:

- a connection that raises is ended alone (see ``Server.handle_stream``);
- a plugin's task started through :class:`SupervisedNursery` (``app.nursery``)
  that raises is logged and counted, and the server runs on;
- a plugin background task that raises is logged, counted and started again
  after a back-off (:func:`keep_running`).

Failures are logged once: a database outage (:class:`~.store.StoreUnavailable`)
as one line, anything else (a bug) with its traceback.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .store import StoreUnavailable

log = logging.getLogger("switchboard")

#: Reports a contained failure: (what failed, the exception).
Report = Callable[[str, Exception], None]

#: Back-off of a background task that keeps failing: first and longest wait.
RESTART_FIRST = 1.0
RESTART_LONGEST = 60.0


def log_failure(what: str, exc: Exception) -> None:
    """Log a contained failure once: an outage as one line, a bug with its traceback."""
    if isinstance(exc, StoreUnavailable):
        log.warning("%s: %s", what, exc)
    else:
        log.error("%s failed: %r", what, exc, exc_info=exc)


def task_name(fn: Callable[..., Any]) -> str:
    """A readable name of a task function (``Plugin.method``)."""
    inner = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(inner, "__qualname__", None) or repr(inner))


class SupervisedNursery:
    """A nursery for work that must not take its parent down.

    ``start_soon`` and ``start`` behave like trio's, on the wrapped nursery,
    except that an exception a task raises (after ``task_status.started()``,
    for ``start``) is reported and swallowed instead of cancelling every
    other task of that nursery. Cancellation still propagates as usual.
    """

    def __init__(self, nursery: trio.Nursery, report: Report) -> None:
        self._nursery = nursery
        self._report = report

    @property
    def cancel_scope(self) -> trio.CancelScope:
        return self._nursery.cancel_scope

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any,
                   name: str | None = None) -> None:
        """Start ``fn(*args)`` in a context of its own: work that outlives the
        request that started it keeps nothing of that request's context (the
        web framework's request, its headers, the server's stream)."""
        what = name or task_name(fn)

        def start() -> None:
            self._nursery.start_soon(self._guarded, fn, args, what, name=what)

        contextvars.Context().run(start)

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any,
                    name: str | None = None) -> Any:
        what = name or task_name(fn)
        return await self._nursery.start(self._guarded_start, fn, args, what, name=what)

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                       what: str) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            self._report(what, exc)

    async def _guarded_start(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                             what: str, *, task_status: trio.TaskStatus[Any]) -> None:
        started = False

        class _Status:
            def started(self, value: Any = None) -> None:
                nonlocal started
                started = True
                task_status.started(value)

        try:
            await fn(*args, task_status=_Status())
        except Exception as exc:
            if not started:
                raise  # the caller of ``start`` gets it, as with trio
            self._report(what, exc)


async def keep_running(fn: Callable[[], Awaitable[Any]], what: str, report: Report) -> None:
    """Run ``fn`` until it returns; each time it raises, report it and start it
    again after a back-off (1 s, doubling up to 60 s; back to 1 s once it has
    run a minute without failing)."""

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        await fn()

    await keep_serving(run, what, report)


async def keep_serving(run: Callable[..., Awaitable[Any]], what: str, report: Report, *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """:func:`keep_running` for a task started with ``nursery.start``:
    ``run(task_status=...)`` tells the starter once, on its first start; each
    time it raises, it is reported and started again after the same back-off.

    For a plugin's batch writer, which must be there before any request
    (``await app.nursery.start(keep_serving, batcher.run, "x: writer",
    app.task_failed)``)."""
    status: trio.TaskStatus[None] = task_status
    delay = RESTART_FIRST
    while True:
        began = trio.current_time()
        try:
            await run(task_status=status)
            return
        except Exception as exc:
            report(what, exc)
        status = trio.TASK_STATUS_IGNORED
        if trio.current_time() - began >= RESTART_LONGEST:
            delay = RESTART_FIRST
        log.warning("%s: starting it again in %g s", what, delay)
        await trio.sleep(delay)
        delay = min(delay * 2, RESTART_LONGEST)
