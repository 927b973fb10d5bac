"""The broker: every fan-out goes through it.

A :class:`Publication` names a room within a tenant; the broker hands it to
the hub of every node, which delivers it to the local members. In-memory (one
node) is the default; a networked broker (Redis, NATS) implements the same
two methods to span several nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from .config import ConfigError


@attrs.frozen
class Publication:
    tenant: str
    room: str
    event: str
    data: Any
    #: Session id that must not receive it (the sender), if any.
    exclude: str | None = None
    #: Members of this room (of the same tenant) do not receive it: they got
    #: the same event through that room already.
    skip_room: str | None = None


Deliver = Callable[[Publication], int]


class Broker(Protocol):
    async def publish(self, publication: Publication) -> None:
        """Send ``publication`` to every node (this one included)."""

    async def run(self, deliver: Deliver, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver publications from other nodes until cancelled."""


class MemoryBroker:
    """Single-node broker: publishing is delivering."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def publish(self, publication: Publication) -> None:
        if self._deliver is not None:
            self._deliver(publication)

    async def run(self, deliver: Deliver, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._deliver = deliver
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self._deliver = None


def make_broker(url: str) -> Broker:
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return MemoryBroker()
    raise ConfigError("broker.url", f"unsupported broker {scheme!r} (supported: memory://)")
