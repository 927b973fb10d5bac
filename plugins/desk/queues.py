"""The queues as the desk reads them often: each queue's strategy and
members, kept in memory for a few seconds (``CACHE_SECONDS``) and dropped at
once when this node changes them, so that creating and assigning a ticket
does not read them from the database each time. A node that changes a
queue tells the others of its cluster (``desk:queue`` on the control
channel), which drop their copy; when the broker cannot carry that, they see
the change within ``CACHE_SECONDS``.

A queue in use is read again (the queue and its members in one statement)
in the background once its copy is ``REFRESH_AFTER`` old, while callers go
on with the copy: under a steady stream of tickets nobody waits for the
read. A copy that is due is never used; its callers wait for one read
(started by the first of them). Before, every ticket of a queue read it
(two statements each, queued behind the batches' transactions) when its
copy expired: a stall of the whole desk every ``CACHE_SECONDS``."""

from __future__ import annotations

import contextlib
import logging

import attrs
import trio
from switchboard.core import Announcement, App, BrokerUnavailable, StoreError

from .storage import DeskStorage

CACHE_SECONDS = 5.0
REFRESH_AFTER = 4.0
#: Announced with ``[tenant, queue]`` by the node that changed a queue.
CHANGED_TOPIC = "desk:queue"

log = logging.getLogger("switchboard.desk")


@attrs.frozen
class Queue:
    tenant: str
    id: str
    name: str
    strategy: str
    #: (user, own capacity or None), by user id.
    members: tuple[tuple[str, int | None], ...]
    loaded_at: float


@attrs.define(eq=False)
class _Read:
    """A read of one queue under way, for the callers that wait for it."""

    done: trio.Event = attrs.Factory(trio.Event)
    found: Queue | None = None
    ok: bool = False


class QueueDirectory:
    app: App

    def __init__(self, storage: DeskStorage) -> None:
        self.storage = storage
        self._cache: dict[tuple[str, str], Queue] = {}
        self._reading: dict[tuple[str, str], _Read] = {}

    def start(self, app: App) -> None:
        self.app = app
        app.on_announcement(CHANGED_TOPIC, self._changed_elsewhere)

    async def get(self, tenant: str, queue: str) -> Queue | None:
        """The queue (None if there is none), at most ``CACHE_SECONDS`` old."""
        key = (tenant, queue)
        while True:
            cached = self._cache.get(key)
            reading = self._reading.get(key)
            if cached is not None:
                age = trio.current_time() - cached.loaded_at
                if age < CACHE_SECONDS:
                    if age >= REFRESH_AFTER and reading is None:
                        self.app.nursery.start_soon(self._refresh, key, self._begin(key))
                    return cached
            if reading is None:
                return await self._read(key, self._begin(key))
            await reading.done.wait()
            if reading.ok:
                return reading.found
            # (that read failed or was cancelled: this caller reads)

    def _begin(self, key: tuple[str, str]) -> _Read:
        reading = self._reading[key] = _Read()
        return reading

    async def _refresh(self, key: tuple[str, str], reading: _Read) -> None:
        # (failed, the copy serves until due; then its callers read)
        with contextlib.suppress(StoreError):
            await self._read(key, reading)

    async def _read(self, key: tuple[str, str], reading: _Read) -> Queue | None:
        try:
            now = trio.current_time()
            rows = await self.app.store.fetch_all(self.storage.queue_with_members(*key))
            found = None if not rows else Queue(
                *key, rows[0]["name"], rows[0]["strategy"],
                tuple((row["user_id"], row["capacity"]) for row in rows
                      if row["user_id"] is not None), now)
            if self._reading.get(key) is reading:  # (not changed here meanwhile)
                if found is None:
                    self._cache.pop(key, None)
                else:
                    if len(self._cache) > 10_000:
                        self._cache.clear()
                    self._cache[key] = found
            reading.found, reading.ok = found, True
            return found
        finally:
            if self._reading.get(key) is reading:
                del self._reading[key]
            reading.done.set()

    def forget(self, tenant: str, queue: str) -> None:
        """This node changed the queue: read it again next time (a read under
        way when it changed is not kept); the other nodes are told to do the same."""
        self._drop(tenant, queue)
        self.app.nursery.start_soon(self._tell_other_nodes, tenant, queue)

    def _drop(self, tenant: str, queue: str) -> None:
        self._cache.pop((tenant, queue), None)
        self._reading.pop((tenant, queue), None)

    async def _tell_other_nodes(self, tenant: str, queue: str) -> None:
        try:
            await self.app.announce(CHANGED_TOPIC, [tenant, queue])
        except BrokerUnavailable:
            log.warning("queue %s/%s changed: other nodes not told (the broker is "
                        "unreachable); they read it again within %g s",
                        tenant, queue, CACHE_SECONDS)

    def _changed_elsewhere(self, announcement: Announcement) -> None:
        data = announcement.data
        if announcement.node != self.app.node_id and isinstance(data, list) and len(data) == 2:
            self._drop(str(data[0]), str(data[1]))
