"""Coalescing throttle for chatty events (typing, presence).

The first update for a key goes out at once; further updates within
``interval`` are coalesced and only the latest is delivered when the interval
ends. So a burst of N updates costs at most two deliveries per interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

if TYPE_CHECKING:
    from .supervise import SupervisedNursery

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """Deliver the updates of each key at most about once per ``interval``
    (get one with ``app.coalescer(interval, deliver)``).

    ``await submit(key, value)``: the first value of a key is delivered at
    once; later ones within the interval replace each other, and the latest
    is delivered when the interval ends.
    """

    def __init__(self, nursery: trio.Nursery | SupervisedNursery, interval: float,
                 deliver: Callable[[K, V], Awaitable[None]]) -> None:
        self._nursery = nursery
        self.interval = interval
        self._deliver = deliver
        self._last_sent: dict[K, float] = {}
        self._pending: dict[K, V] = {}

    async def submit(self, key: K, value: V) -> None:
        """Deliver ``value`` for ``key`` now, or as the latest at the end of the interval."""
        now = trio.current_time()
        last = self._last_sent.get(key)
        if key in self._pending:
            self._pending[key] = value
            return
        if last is None or now - last >= self.interval:
            self._last_sent[key] = now
            await self._deliver(key, value)
            self._nursery.start_soon(self._forget, key, now)
            return
        self._pending[key] = value
        self._nursery.start_soon(self._flush_at, key, last + self.interval)

    async def _flush_at(self, key: K, when: float) -> None:
        await trio.sleep_until(when)
        value = self._pending.pop(key)
        now = trio.current_time()
        self._last_sent[key] = now
        await self._deliver(key, value)
        await self._forget(key, now)

    async def _forget(self, key: K, sent_at: float) -> None:
        """Drop the bookkeeping of an idle key so memory stays bounded."""
        await trio.sleep_until(sent_at + self.interval)
        if self._last_sent.get(key) == sent_at and key not in self._pending:
            del self._last_sent[key]
