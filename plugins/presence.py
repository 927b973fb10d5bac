"""Presence: who is online, with what status, and when they were last seen.

- A user is online while any of their devices (sessions) is connected;
  ``user:online`` goes out when the first device connects.
- Who hears of a user: an agent's presence goes to ``tenant:{id}`` (everyone
  in the tenant: a customer sees whether agents are online); anyone else's
  to ``tenant:{id}:agents`` and their own ``user:{id}`` only (a customer's
  presence is the agents' business, not other customers').
  ``presence:list`` answers an agent with every user online, anyone else
  with the agents online (and themselves).
- When the last device goes, ``user:offline`` is announced only after
  ``grace_period`` seconds, and not at all if a device comes back before (a
  page reload or a network blip does not flap).
- ``presence:update {status}`` sets online / busy / away / offline for all the
  user's devices; the resulting ``presence:user_updated`` broadcasts are
  coalesced per user (at most one per ``update_interval``, carrying the latest).
- Last-seen is kept in the ``presence_last_seen`` table, written by one
  background task in batches. While the database is unavailable the times
  wait in memory (the latest per user) and the write is retried with a
  back-off; at shutdown what is waiting (and the users still in their grace
  period) is written once more.
- Other plugins ask through the ``presence`` service
  (``app.service("presence")``): who is online, one user's presence.

Several nodes (a Redis broker): a user's devices are counted per node with
``app.cluster_count`` (group ``presence:{tenant}``, and an agent's in
``presence-agents:{tenant}`` too), so ``user:online`` goes
out once, from the node whose device took the cluster's total from 0 to 1,
and ``user:offline`` once, from the node whose grace period ended with the
total at 0. A device that leaves keeps counting during its grace period, so a
device coming back on another node does not flap. The devices of a node that
dies stop counting after ``broker.node_ttl``; the node that notices
announces it, and its users with no device left anywhere get ``user:offline``
after the grace period. Statuses set with ``presence:update`` reach the other
nodes through the control channel (topic ``presence:status``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import sqlalchemy as sa
import trio
from quart import Blueprint
from switchboard.core import (
    NODE_BACK,
    NODE_GONE,
    Announcement,
    App,
    BrokerUnavailable,
    EventSpec,
    PresenceInfo,
    PresenceService,
    Rate,
    Session,
    StoreUnavailable,
    Timer,
    agents_room,
    api_key_tenant_allowed,
    check_identifier,
    documented,
    emptied_members,
    error_response,
    hookimpl,
    incoming,
    object_schema,
    outgoing,
    require_api_key,
    tenant_room,
    user_room,
)
from switchboard.plugins.migrations import directory as migrations_directory

log = logging.getLogger("switchboard.presence")
#: Back-off of the last-seen writer while the database is unavailable.
RETRY_FIRST = 1.0
RETRY_LONGEST = 30.0
#: Seconds the shutdown gives the last write of last-seen times.
SHUTDOWN_WRITE = 5.0

Status = Literal["online", "busy", "away", "offline"]
#: Control-channel topics: a node is gone (the core's); a status was set.
STATUS_TOPIC = "presence:status"
#: The rooms of a user's presence events: an agent's, anyone else's.
AUDIENCE = ["tenant:{tenantId}", "tenant:{tenantId}:agents", "user:{userId}"]


def _group(tenant: str) -> str:
    return f"presence:{tenant}"


def _agents_group(tenant: str) -> str:
    """The devices of the tenant's agents (counted in :func:`_group` too); not
    under ``presence:``, the prefix a dead node's emptied members are read by."""
    return f"presence-agents:{tenant}"


@attrs.frozen
class PresenceSettings:
    #: Seconds after the last device leaves before ``user:offline`` is sent.
    grace_period: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    #: Coalescing window of ``presence:user_updated`` per user, in seconds.
    update_interval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))


@attrs.frozen
class PresenceUpdate:
    status: Status


@attrs.frozen
class UserOnline:
    userId: str
    role: str
    status: Status


@attrs.frozen
class UserOffline:
    userId: str
    lastSeen: float


@attrs.frozen
class UserPresence:
    userId: str
    status: Status
    devices: int
    lastSeen: float | None


@attrs.define
class _User:
    role: str
    status: Status = "online"
    devices: int = 0
    last_seen: float | None = None
    #: While no device is left: the end of the grace period, on the server's
    #: shared timers (a departure costs no task of its own).
    grace: Timer | None = None


class _GraceEnd:
    """What a grace period's timer calls when it ends (see :class:`Timers`)."""

    __slots__ = ("key", "plugin", "user")

    def __init__(self, plugin: PresencePlugin, key: tuple[str, str], user: _User) -> None:
        self.plugin, self.key, self.user = plugin, key, user

    def due(self) -> None:
        plugin, user = self.plugin, self.user
        plugin.app.nursery.start_soon(plugin._offline_after_grace, self.key, user, user.grace)


class PresencePlugin:
    app: App
    settings: PresenceSettings

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], _User] = {}
        self.table: sa.Table | None = None
        #: Last-seen times not yet written, the latest per (tenant, user).
        self._unsaved: dict[tuple[str, str], float] = {}
        self._unsaved_added = trio.Event()
        #: Statuses set on any node, of users online somewhere in the cluster.
        self._statuses: dict[tuple[str, str], Status] = {}

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return PresenceSettings

    @hookimpl
    def switchboard_services(self) -> Mapping[str, object]:
        service: PresenceService = self  # (mypy checks the contract)
        return {"presence": service}

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        return [
            incoming("presence:update", PresenceUpdate, self.update,
                     rate=Rate(rate=1.0, burst=5.0), ack=object_schema(status=str),
                     doc="Set your status (online, busy, away, offline); ack {status}."),
            incoming("presence:list", None, self.list_users,
                     ack=object_schema(users={"type": "array", "items": UserPresence}),
                     doc="Ack {users: [UserPresence]}: an agent gets the users online in "
                         "the tenant, anyone else the agents online (and themselves)."),
            incoming("presence:heartbeat", None, self.heartbeat,
                     ack=object_schema(time=float),
                     doc="Application-level keep-alive; refreshes last-seen."),
            outgoing("user:online", UserOnline, rooms=AUDIENCE,
                     doc="A user's first device; an agent's to tenant:{id}, anyone "
                         "else's to tenant:{id}:agents and user:{id}."),
            outgoing("user:offline", UserOffline, rooms=AUDIENCE,
                     doc="A user's last device left grace_period ago; to the same "
                         "rooms as user:online."),
            outgoing("presence:user_updated", UserPresence, rooms=AUDIENCE,
                     doc="A status change (coalesced per user); to the same rooms as "
                         "user:online."),
        ]

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("presence")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.table = sa.Table(
            "presence_last_seen", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("user_id", sa.String(200), primary_key=True),
            sa.Column("last_seen", sa.Float, nullable=False),
        )

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("presence", __name__)

        @bp.get("/api/v1/presence/<tenant>")
        @documented(
            "The users online in a tenant, on every node",
            responses={
                200: "`{users: [{userId, status, devices, lastSeen}]}`",
                403: "the key may not use this tenant",
            },
        )
        @require_api_key
        async def online(tenant: str) -> Any:
            if not api_key_tenant_allowed(tenant):
                return error_response(403, "forbidden", "API key not valid for this tenant")
            return {"users": [attrs.asdict(u) for u in await self.cluster_snapshot(tenant)]}

        @bp.get("/api/v1/presence/<tenant>/<user>")
        @documented(
            "A user's presence",
            responses={
                200: "`{userId, status, devices, lastSeen}`",
                403: "the key may not use this tenant",
                404: "no presence known",
            },
        )
        @require_api_key
        async def one(tenant: str, user: str) -> Any:
            if not api_key_tenant_allowed(tenant):
                return error_response(403, "forbidden", "API key not valid for this tenant")
            info = await self.presence_of(tenant, user)
            if info is None:
                return error_response(404, "not_found", f"no presence known for {user!r}")
            return {"userId": user, "status": info.status, "devices": info.devices,
                    "lastSeen": info.last_seen}

        return bp

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        self._updates = app.coalescer(self.settings.update_interval, self._send_update)
        app.on_announcement(NODE_GONE, self._node_gone)
        app.on_announcement(NODE_BACK, self._node_back)
        app.on_announcement(STATUS_TOPIC, self._status_announced)

    @hookimpl
    def switchboard_background_tasks(self) -> list[Any]:
        return [self._write_last_seen]

    @hookimpl
    async def switchboard_shutdown(self) -> None:
        for key, user in self._users.items():
            if user.devices == 0 and user.last_seen is not None:  # in its grace period
                self._unsaved[key] = user.last_seen
        if not self._unsaved:
            return
        unsaved, self._unsaved = self._unsaved, {}
        try:
            with trio.move_on_after(SHUTDOWN_WRITE):
                await self._save_last_seen(unsaved)
                return
            log.warning("last-seen times of %d users not saved: the database did not "
                        "answer within %g s of the shutdown", len(unsaved), SHUTDOWN_WRITE)
        except StoreUnavailable as exc:
            log.warning("last-seen times of %d users not saved at shutdown: %s",
                        len(unsaved), exc)

    @hookimpl
    async def switchboard_session_opened(self, session: Session) -> None:
        key = (session.tenant_id, session.user_id)
        user = self._users.get(key)
        if user is None:
            user = self._users[key] = _User(role=session.role,
                                            status=self._statuses.get(key, "online"))
        if user.grace is not None:  # back within the grace period: no announcements
            self.app.timers.cancel(user.grace)  # (the device still counted in the cluster
            user.grace = None                   # is this one)
            user.devices += 1
            return
        user.devices += 1
        total = await self._count(key, +1, self._is_agent(user))
        if (user.devices == 1) if total is None else (total == 1):
            try:
                await self._tell(session.tenant_id, session.user_id, self._is_agent(user),
                                 "user:online",
                                 UserOnline(session.user_id, user.role, user.status))
            except BrokerUnavailable as exc:
                log.warning("user:online of %s/%s not sent: %s", session.tenant_id,
                            session.user_id, exc)

    @hookimpl
    async def switchboard_session_closed(self, session: Session) -> None:
        key = (session.tenant_id, session.user_id)
        user = self._users.get(key)
        if user is None:
            return
        user.devices -= 1
        user.last_seen = time.time()
        if user.devices == 0:  # the device counts on in the cluster until the grace ends
            user.grace = self.app.timers.at(trio.current_time() + self.settings.grace_period,
                                            _GraceEnd(self, key, user))
        else:
            await self._count(key, -1, self._is_agent(user))

    def _is_agent(self, user: _User) -> bool:
        return self.app.is_agent(user.role)

    async def _tell(self, tenant: str, user_id: str, agent: bool, event: str,
                    data: Any) -> None:
        """Publish a user's presence event: an agent's to the whole tenant;
        anyone else's to the tenant's agents, and to the user's own devices."""
        if agent:
            await self.app.publish(tenant, tenant_room(tenant), event, data)
            return
        await self.app.publish(tenant, agents_room(tenant), event, data)
        await self.app.publish(tenant, user_room(user_id), event, data)

    async def _count(self, key: tuple[str, str], delta: int, agent: bool = False
                     ) -> int | None:
        """The user's devices over the cluster after adding ``delta`` of this
        node's (an agent's counted among the agents' too); None while the
        broker is unreachable (this node decides alone)."""
        tenant, user_id = key
        total = None
        try:
            total = await self.app.cluster_count(_group(tenant), user_id, delta)
        except BrokerUnavailable as exc:
            log.warning("presence of %s/%s counted on this node only: %s", tenant, user_id,
                        exc)
        if agent and delta:
            # (counted on this node even while Redis is unreachable, and
            # written again with the rest once it answers: both counts alike)
            with contextlib.suppress(BrokerUnavailable):
                await self.app.cluster_count(_agents_group(tenant), user_id, delta)
        return total

    async def _announce_offline(self, key: tuple[str, str], last_seen: float,
                                agent: bool) -> None:
        tenant, user_id = key
        self._statuses.pop(key, None)
        try:
            await self._tell(tenant, user_id, agent, "user:offline",
                             UserOffline(user_id, last_seen))
            await self.app.announce(STATUS_TOPIC, {"tenant": tenant, "user": user_id,
                                                   "status": None})
        except BrokerUnavailable as exc:
            log.warning("user:offline of %s/%s not sent: %s", tenant, user_id, exc)

    def _node_gone(self, announcement: Announcement) -> None:
        """A node died: its users with no device left anywhere go offline after
        the grace period (said by the node that noticed, once)."""
        if announcement.node != self.app.node_id:
            return
        agents = set(emptied_members(announcement, _agents_group("")))
        for key in emptied_members(announcement, _group("")):
            self.app.nursery.start_soon(self._offline_after_node_gone, key, key in agents)

    def _node_back(self, announcement: Announcement) -> None:
        """This node was taken for gone while cut off (its users went offline
        on the others): its users with a device here are online again."""
        if announcement.node == self.app.node_id:
            self.app.nursery.start_soon(self._online_again)

    async def _online_again(self) -> None:
        for key, user in sorted(self._users.items()):
            if user.devices > 0 and not await self._online_after_all(key, user):
                return

    async def _offline_after_node_gone(self, key: tuple[str, str], agent: bool) -> None:
        last_seen = time.time()
        await trio.sleep(self.settings.grace_period)
        if key in self._users or await self._count(key, 0):
            return  # back meanwhile, here or on another node
        await self._announce_offline(key, last_seen, agent)
        self._unsaved[key] = last_seen
        self._unsaved_added.set()

    def _status_announced(self, announcement: Announcement) -> None:
        data = announcement.data
        if not isinstance(data, dict):
            return
        key = (data.get("tenant"), data.get("user"))
        status = data.get("status")
        if not (isinstance(key[0], str) and isinstance(key[1], str)):
            return
        tenant_user = (key[0], key[1])
        if status in ("online", "busy", "away", "offline"):
            self._statuses[tenant_user] = status
            if (user := self._users.get(tenant_user)) is not None:
                user.status = status
        elif announcement.node != self.app.node_id:
            user = self._users.get(tenant_user)
            if user is not None and user.devices > 0:
                # a device here: said offline by a node whose grace period
                # ended as this device's count went up (its user:offline went
                # out before this announcement): online after all
                self.app.nursery.start_soon(self._online_after_all, tenant_user, user)
            else:
                self._statuses.pop(tenant_user, None)

    async def _online_after_all(self, key: tuple[str, str], user: _User) -> bool:
        """Say again that a user with a device here is online (to the clients,
        then the nodes); False when the broker could not be reached."""
        tenant, user_id = key
        try:
            await self._tell(tenant, user_id, self._is_agent(user), "user:online",
                             UserOnline(user_id, user.role, user.status))
            await self.app.announce(STATUS_TOPIC, {"tenant": tenant, "user": user_id,
                                                   "status": user.status})
        except BrokerUnavailable as exc:
            log.warning("user:online of %s/%s not sent again: %s", tenant, user_id, exc)
            return False
        return True

    async def _offline_after_grace(self, key: tuple[str, str], user: _User,
                                   grace: Timer | None) -> None:
        """The grace period ``grace`` of ``user`` has ended: offline, unless a
        device came back since (its grace is then another one, or none)."""
        if user.grace is not grace or self._users.get(key) is not user:
            return
        del self._users[key]
        last_seen = user.last_seen or time.time()
        # Announce before the (threaded) write: the announcement is due now, and a
        # device reconnecting during the write must not see its user:online
        # overtaken by this user:offline.
        agent = self._is_agent(user)
        if not await self._count(key, -1, agent):  # no device left on any node (or none known)
            await self._announce_offline(key, last_seen, agent)
        self._unsaved[key] = last_seen
        self._unsaved_added.set()

    async def _write_last_seen(self) -> None:
        """Write waiting last-seen times, batched; retry while the database is down."""
        delay = RETRY_FIRST
        while True:
            while not self._unsaved:
                await self._unsaved_added.wait()
                self._unsaved_added = trio.Event()
            batch, self._unsaved = self._unsaved, {}
            try:
                await self._save_last_seen(batch)
            except StoreUnavailable as exc:
                for key, when in batch.items():  # a time noted meanwhile is newer
                    self._unsaved.setdefault(key, when)
                log.warning("last-seen times of %d users not saved (%s); trying again in "
                            "%g s", len(self._unsaved), exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_LONGEST)
                continue
            delay = RETRY_FIRST

    # -- events ------------------------------------------------------------

    async def update(self, session: Session, request: PresenceUpdate) -> dict[str, Any]:
        key = (session.tenant_id, session.user_id)
        user = self._users[key]
        user.status = request.status
        self._statuses[key] = request.status
        try:  # the other nodes' devices of the user, and their lists
            await self.app.announce(STATUS_TOPIC, {"tenant": session.tenant_id,
                                                   "user": session.user_id,
                                                   "status": request.status})
        except BrokerUnavailable as exc:
            log.warning("status of %s/%s set on this node only: %s", *key, exc)
        await self._updates.submit(key, request.status)
        return {"status": user.status}

    async def list_users(self, session: Session, _: Any) -> dict[str, Any]:
        users = await self.cluster_snapshot(session.tenant_id)
        if not self.app.is_agent(session):
            agents = await self._agents_online(session.tenant_id)
            users = [u for u in users if u.userId in agents or u.userId == session.user_id]
        return {"users": [attrs.asdict(u) for u in users]}

    async def _agents_online(self, tenant: str) -> set[str]:
        """The tenant's agents with a device on any node (this node's alone
        while the broker is unreachable)."""
        agents = {user_id for (t, user_id), user in self._users.items()
                  if t == tenant and user.devices > 0 and self._is_agent(user)}
        try:
            totals = await self.app.cluster_counts(_agents_group(tenant))
        except BrokerUnavailable:
            return agents
        return agents | {user_id for user_id, total in totals.items() if total > 0}

    async def heartbeat(self, session: Session, _: Any) -> dict[str, Any]:
        now = time.time()
        self._users[(session.tenant_id, session.user_id)].last_seen = now
        return {"time": now}

    async def _send_update(self, key: tuple[str, str], status: Status) -> None:
        tenant, user_id = key
        user = self._users.get(key)
        if user is None:
            return
        try:
            await self._tell(tenant, user_id, self._is_agent(user), "presence:user_updated",
                             self._view(user_id, user))
        except BrokerUnavailable as exc:
            log.warning("presence:user_updated of %s/%s not sent: %s", tenant, user_id, exc)

    # -- queries (and the presence service) --------------------------------

    def online(self, tenant_id: str) -> list[PresenceInfo]:
        """The users of the tenant with a device connected to this node."""
        return [PresenceInfo(user_id, user.status, user.devices, user.last_seen, user.role)
                for (t, user_id), user in sorted(self._users.items())
                if t == tenant_id and user.devices > 0]

    async def presence_of(self, tenant_id: str, user_id: str) -> PresenceInfo | None:
        """One user's presence, online or not; None if they were never seen."""
        if check_identifier(tenant_id) or check_identifier(user_id):
            return None  # no such user can have been seen
        state = self._users.get((tenant_id, user_id))
        if state is not None and state.devices:
            return PresenceInfo(user_id, state.status, state.devices, state.last_seen,
                                state.role)
        if state is None and (total := await self._count((tenant_id, user_id), 0)):
            return PresenceInfo(user_id, self._statuses.get((tenant_id, user_id), "online"),
                                total, None)  # online on another node
        last_seen = self._unsaved.get((tenant_id, user_id))
        if last_seen is None and state is not None:
            last_seen = state.last_seen  # in the grace period
        if last_seen is None:
            last_seen = await self.last_seen(tenant_id, user_id)
        if last_seen is None:
            return None
        return PresenceInfo(user_id, "offline", 0, last_seen)

    async def cluster_snapshot(self, tenant: str) -> list[UserPresence]:
        """The users of the tenant online on any node (``devices`` over the
        cluster); this node's alone while the broker is unreachable."""
        views = {view.userId: view for view in self.snapshot(tenant)}
        try:
            totals = await self.app.cluster_counts(_group(tenant))
        except BrokerUnavailable:
            totals = {}
        for user_id, total in totals.items():
            local = self._users.get((tenant, user_id))
            if local is not None and local.devices == 0:
                continue  # in its grace period here: not listed (as on one node)
            view = views.get(user_id)
            if view is None:
                views[user_id] = UserPresence(
                    user_id, self._statuses.get((tenant, user_id), "online"), total, None)
            elif total > view.devices:
                views[user_id] = attrs.evolve(view, devices=total)
        return [views[user_id] for user_id in sorted(views)]

    def snapshot(self, tenant: str) -> list[UserPresence]:
        return [self._view(user_id, user) for (t, user_id), user in sorted(self._users.items())
                if t == tenant and user.devices > 0]

    def _view(self, user_id: str, user: _User) -> UserPresence:
        return UserPresence(user_id, user.status, user.devices, user.last_seen)

    async def last_seen(self, tenant: str, user: str) -> float | None:
        assert self.table is not None
        t = self.table
        row = await self.app.store.fetch_one(
            sa.select(t.c.last_seen).where(t.c.tenant_id == tenant, t.c.user_id == user))
        return None if row is None else float(row["last_seen"])

    async def _save_last_seen(self, times: dict[tuple[str, str], float]) -> None:
        """Insert or overwrite ``times`` in one transaction."""
        assert self.table is not None
        if not times:
            return
        rows = [{"tenant_id": tenant, "user_id": user, "last_seen": when}
                for (tenant, user), when in times.items()]
        await self.app.store.execute_many(
            self.app.store.upsert(self.table, key=["tenant_id", "user_id"]), rows)
