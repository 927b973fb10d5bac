"""The queues as the desk reads them often: each queue's strategy and
members, kept in memory for a few seconds (``CACHE_SECONDS``) and dropped at
once when this node changes them, so that creating and assigning a ticket
does not read them from the database each time. A change made through
another node is seen within ``CACHE_SECONDS``."""

from __future__ import annotations

import attrs
import trio
from switchboard.core import App

from .storage import DeskStorage

CACHE_SECONDS = 5.0


@attrs.frozen
class Queue:
    tenant: str
    id: str
    name: str
    strategy: str
    #: (user, own capacity or None), by user id.
    members: tuple[tuple[str, int | None], ...]
    loaded_at: float


class QueueDirectory:
    app: App

    def __init__(self, storage: DeskStorage) -> None:
        self.storage = storage
        self._cache: dict[tuple[str, str], Queue] = {}

    def start(self, app: App) -> None:
        self.app = app

    async def get(self, tenant: str, queue: str) -> Queue | None:
        """The queue (None if there is none), at most ``CACHE_SECONDS`` old."""
        key = (tenant, queue)
        cached = self._cache.get(key)
        now = trio.current_time()
        if cached is not None and now - cached.loaded_at < CACHE_SECONDS:
            return cached
        store, storage = self.app.store, self.storage
        q = storage.queues
        row = await store.fetch_one(q.select().where(q.c.tenant_id == tenant, q.c.id == queue))
        if row is None:
            self._cache.pop(key, None)
            return None
        members = await store.fetch_all(storage.queue_members(tenant, queue))
        found = Queue(tenant, queue, row["name"], row["strategy"],
                      tuple((m["user_id"], m["capacity"]) for m in members), now)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = found
        return found

    def forget(self, tenant: str, queue: str) -> None:
        """This node changed the queue: read it again next time."""
        self._cache.pop((tenant, queue), None)
