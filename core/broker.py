"""The broker: every fan-out goes through it.

A :class:`Publication` names a room within a tenant; the broker hands it to
the hub of every node, which delivers it to the local members. In-memory (one
node) is the default; ``redis://`` (see :mod:`.redis_broker`) spans several
nodes. A broker offers three things:

- **Publications**: :meth:`Broker.publish` sends one to every node (this one
  included), each in the same order; the broker's ``run`` hands them to the
  hub with their *stream position* (the recovery offset clients are told), or
  ``None`` when the broker keeps no history (then the node's own recovery log
  numbers them).
- **Recovery**: :meth:`Broker.recovery` gives the store of the publications a
  reconnecting client missed and of the sessions that dropped; on Redis it is
  shared by every node, so a client whose node died recovers on another.
- **Counts shared by the nodes**: :meth:`Broker.count` keeps a count per node
  (devices of a user, say) and answers the cluster's total; the counts of a
  node that dies stop counting (presence uses it).
- **The control channel**: :meth:`Broker.announce` sends a small message on a
  topic to every node (cache invalidations, heartbeats); handlers registered
  with :meth:`Broker.on_announcement` get it as an :class:`Announcement`.
  Plugins use it through :meth:`App.announce <switchboard.core.App.announce>`.

Channels: the Redis broker carries every publication of the cluster in one
bounded stream that every node reads (as the Socket.IO Redis-streams adapter
does); a node drops at once what has no local member (a dictionary look-up).
One stream gives every room, tenant and node the same order and makes the
recovery offset a single position, at the price of every node reading every
publication.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from .config import ConfigError
from .recovery import LocalRecovery, Recovery


@attrs.frozen
class Publication:
    """One event published to a room of a tenant: what the broker carries between
    nodes and what ``App.watch_publications`` hands to its callback."""

    tenant: str
    room: str
    event: str
    data: Any
    #: Session id that must not receive it (the sender), if any.
    exclude: str | None = None
    #: Members of this room (of the same tenant) do not receive it: they got
    #: the same event through that room already.
    skip_room: str | None = None


@attrs.frozen
class Announcement:
    """A message of the control channel."""

    topic: str
    data: Any
    #: Id of the node that announced it (``Broker.node_id``).
    node: str


#: Topic of the announcement that a node is gone, by the node that noticed
#: (data: {"node": id, "emptied": {group: [member, ...]}}, the members whose
#: total fell to 0; see :meth:`Broker.count`).
NODE_GONE = "switchboard:node_gone"
#: Topic of the announcement, by a node the others had taken for gone, that it
#: is back and counted again (data: {"node": id}).
NODE_BACK = "switchboard:node_back"


def emptied_members(announcement: Announcement, prefix: str) -> list[tuple[str, str]]:
    """The members of a :data:`NODE_GONE` announcement whose total fell to 0 in
    the groups named ``prefix`` + something: (that something, member) each;
    what is malformed is skipped."""
    data = announcement.data
    emptied = data.get("emptied") if isinstance(data, dict) else None
    if not isinstance(emptied, dict):
        return []
    return [(group.removeprefix(prefix), member)
            for group, members in emptied.items()
            if isinstance(group, str) and group.startswith(prefix)
            and isinstance(members, list)
            for member in members if isinstance(member, str)]


#: The hub's delivery: a publication and its stream position (or None).
Deliver = Callable[[Publication, "str | None"], int]
AnnouncementHandler = Callable[[Announcement], None]


class BrokerUnavailable(Exception):
    """The broker cannot take a publication now (its server is unreachable);
    nothing was published. Clients get the error ``broker_unavailable``."""


#: Publications delivered in a row before the in-memory broker lets others run.
PUBLISH_SLICE = 64


def new_node_id() -> str:
    return secrets.token_hex(6)


class Broker(Protocol):
    #: This node's id (random per start).
    node_id: str
    #: True when other nodes may share the cluster (not the in-memory broker).
    clustered: bool

    @property
    def available(self) -> bool:
        """False while the broker's server cannot be reached (``/ready`` says so)."""

    async def publish(self, publication: Publication) -> None:
        """Send ``publication`` to every node (this one included); raise
        :class:`BrokerUnavailable` when that cannot be done now."""

    async def publish_many(self, publications: list[Publication]) -> None:
        """:meth:`publish` each of ``publications``, in order (at once where
        the broker can: one round trip to Redis)."""

    async def announce(self, topic: str, data: Any) -> None:
        """Send ``data`` (JSON) on the control channel to every node, this one included."""

    def on_announcement(self, topic: str, handler: AnnouncementHandler) -> None:
        """Call ``handler`` with every announcement of ``topic`` (quick, must not raise)."""

    def recovery(self, window: float, max_events: int) -> Recovery:
        """The recovery store of this broker's cluster."""

    async def count(self, group: str, member: str, delta: int) -> int:
        """Add ``delta`` to this node's count of ``member`` in ``group``;
        return the cluster's total (of live nodes). Atomic: of two nodes
        adding 1 to a total of 0 at once, one sees 1 and the other 2."""

    async def counts(self, group: str) -> dict[str, int]:
        """The members of ``group`` with a total above 0, and their totals."""

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """The live nodes' latest reports (node id -> what ``report`` gave)."""

    async def run(self, deliver: Deliver, report: Callable[[], dict[str, Any]], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver publications and announcements until cancelled; ``report``
        is this node's state (its stats), published with its heartbeat."""


class ControlHandlers:
    """The announcement handlers of a broker, by topic."""

    def __init__(self, on_failure: Callable[[str, Exception], None] | None = None) -> None:
        self._handlers: dict[str, list[AnnouncementHandler]] = {}
        self.on_failure = on_failure

    def add(self, topic: str, handler: AnnouncementHandler) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def dispatch(self, announcement: Announcement) -> None:
        for handler in self._handlers.get(announcement.topic, ()):
            try:
                handler(announcement)
            except Exception as exc:
                if self.on_failure is None:
                    raise
                self.on_failure(f"announcement handler {handler!r}", exc)


class MemoryBroker:
    """Single-node broker: publishing is delivering."""

    clustered = False

    def __init__(self) -> None:
        self.node_id = new_node_id()
        self.control = ControlHandlers()
        self._deliver: Deliver | None = None
        self._report: Callable[[], dict[str, Any]] | None = None
        self._counts: dict[str, dict[str, int]] = {}

    @property
    def available(self) -> bool:
        return True

    async def publish(self, publication: Publication) -> None:
        if self._deliver is not None:
            self._deliver(publication, None)

    async def publish_many(self, publications: list[Publication]) -> None:
        for n, publication in enumerate(publications, 1):
            if self._deliver is not None:
                self._deliver(publication, None)
            if n % PUBLISH_SLICE == 0:
                # Let the members' writers (and everyone else) run between slices.
                await trio.lowlevel.checkpoint()

    async def announce(self, topic: str, data: Any) -> None:
        self.control.dispatch(Announcement(topic, data, self.node_id))

    def on_announcement(self, topic: str, handler: AnnouncementHandler) -> None:
        self.control.add(topic, handler)

    def recovery(self, window: float, max_events: int) -> Recovery:
        return LocalRecovery(window, max_events)

    async def count(self, group: str, member: str, delta: int) -> int:
        members = self._counts.setdefault(group, {})
        total = members.get(member, 0) + delta
        if total > 0:
            members[member] = total
        else:
            members.pop(member, None)
            if not members:
                del self._counts[group]
        return max(total, 0)

    async def counts(self, group: str) -> dict[str, int]:
        return dict(self._counts.get(group, {}))

    async def nodes(self) -> dict[str, dict[str, Any]]:
        return {self.node_id: self._report() if self._report is not None else {}}

    async def run(self, deliver: Deliver, report: Callable[[], dict[str, Any]], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._deliver = deliver
        self._report = report
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self._deliver = None


def make_broker(url: str, *, prefix: str = "switchboard",
                heartbeat: float = 2.0, node_ttl: float = 6.0,
                history_size: int = 10_000, history_ttl: float = 0.0) -> Broker:
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("redis", "rediss", "redis+sentinel", "redis+cluster", "rediss+cluster"):
        from .redis_broker import RedisBroker

        return RedisBroker(url, prefix=prefix, heartbeat=heartbeat, node_ttl=node_ttl,
                           history_size=history_size, history_ttl=history_ttl)
    raise ConfigError("broker.url",
                      f"unsupported broker {scheme!r} (supported: memory://, redis://, "
                      "rediss://, redis+sentinel://, redis+cluster://, rediss+cluster://)")
