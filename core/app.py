"""The application core shared by every transport: sessions, events, rooms.

Transports (plain WebSocket, Socket.IO) authenticate a client, wrap it in a
:class:`Session` and hand each incoming event to :meth:`App.dispatch`; they
never know what the events mean. Plugins get the :class:`App` in
``switchboard_startup`` as their handle on the server.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import attrs
import trio

from .auth import AuthError, Identity, TokenVerifier
from .broker import Announcement, BrokerUnavailable, Publication
from .config import Config
from .errors import (
    FORBIDDEN,
    RATE_LIMITED,
    UNAUTHORIZED,
    UNKNOWN_EVENT,
    ClientError,
    CloseCode,
    server_failure,
)
from .events import Deferred, unstructure
from .forwarded import TrustedProxies
from .handshake import Handshake
from .hub import Hub
from .metrics import Metrics
from .pluginmanager import Plugins
from .profiles import Inbound
from .ratelimit import TokenBucket, ViolationCounter
from .rooms import agents_room, check_room_name, is_room_name, tenant_room, user_room
from .session import Codec, Session, Transport
from .store import Store
from .supervise import SupervisedNursery, log_failure
from .throttle import Coalescer
from .timers import Timers

if TYPE_CHECKING:
    from .services import (
        ChatService,
        HandoverService,
        NotificationsService,
        PipelineService,
        PresenceService,
        TicketService,
    )

log = logging.getLogger("switchboard")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
#: Seconds a closing session may wait for the broker to count it out.
USER_COUNT_TIMEOUT = 2.0


class App:
    """The server as a plugin sees it; plugins get it in ``switchboard_startup``.

    For plugins:

    - ``config`` (the whole :class:`~switchboard.core.Config`, e.g.
      ``config.rooms.agent_roles``), :meth:`settings` (this plugin's
      ``[plugins.NAME]``), ``store`` (:class:`~switchboard.core.Store`).
    - Delivering: :meth:`publish` to a room of a tenant, :meth:`user_sessions`
      (a user's connected sessions, each with ``emit`` and ``call``),
      :meth:`watch_publications` (see what is published).
    - Several nodes: :meth:`announce` and :meth:`on_announcement` (the
      broker's control channel), :meth:`cluster_count` and
      :meth:`cluster_counts` (counts shared by the nodes), :attr:`node_id`.
    - Rooms: :meth:`join`, :meth:`leave`, :meth:`authorize_join`,
      :meth:`recheck_rooms`, :meth:`is_agent`.
    - Other plugins: :meth:`service` (``app.service("chat")``), :meth:`notify`
      and :meth:`notify_soon` (call a notification hook on every plugin),
      :meth:`call_hook` (call a hook and get its results), :meth:`implements`.
    - Work that outlives a request: :attr:`nursery`, :meth:`coalescer`;
      ``shutting_down`` is True once the server has been asked to stop.

    ``hub``, ``plugins``, ``metrics`` and ``verifier`` are the server's own
    parts: a plugin has no need of them.
    """

    def __init__(self, config: Config, plugins: Plugins, hub: Hub, store: Store,
                 metrics: Metrics, verifier: TokenVerifier) -> None:
        #: The server's configuration (frozen attrs classes).
        self.config = config
        #: Whose ``X-Forwarded-For`` names the client (``server.trusted_proxies``).
        self.proxies = TrustedProxies(config.server.trusted_proxies)
        self.plugins = plugins
        self.hub = hub
        #: The database (SQLite or PostgreSQL) every plugin's tables are in.
        self.store = store
        self.metrics = metrics
        self.verifier = verifier
        self.events = plugins.incoming()
        # notification hook calls queued by notify_soon, run by _run_notifications
        self._soon_in, self._soon_out = trio.open_memory_channel[
            tuple[str, dict[str, Any]]](math.inf)
        self._soon_pending = 0
        self._soon_idle = trio.Event()
        self._soon_idle.set()
        #: Per-event rate limits: the plugins' defaults, overridden (or, for
        #: events no plugin declares, such as those an event proxy forwards,
        #: set) by ``[limits.events]``.
        self._event_rates = {
            **{name: spec.rate for name, spec in self.events.items()},
            **config.limits.events,
        }
        self._user_buckets: dict[tuple[str, str], TokenBucket] = {}
        self._expiry_deadlines: weakref.WeakKeyDictionary[Identity, float] = (
            weakref.WeakKeyDictionary())
        self._nursery: SupervisedNursery | None = None
        #: Every connection's heartbeat and token-expiry deadlines, served by
        #: one task of the server's (see :mod:`.timers`).
        self.timers = Timers(self._timer_failed)
        #: True once the server has been asked to stop.
        self.shutting_down = False

    # -- for plugins -------------------------------------------------------

    @property
    def nursery(self) -> SupervisedNursery:
        """The server's nursery, for plugin work that outlives one request.

        ``start_soon`` and ``start`` work as on a trio nursery, but a task that
        raises is logged and counted (``switchboard_plugin_failures_total``)
        instead of stopping the server.
        """
        if self._nursery is None:
            raise RuntimeError("the server is not running")
        return self._nursery

    def attach_nursery(self, nursery: trio.Nursery) -> None:
        """Called by the server once its nursery is open."""
        self._nursery = SupervisedNursery(nursery, self.task_failed)
        nursery.start_soon(self.timers.run)
        nursery.start_soon(self._run_notifications)
        if self.hub.broker.clustered:
            nursery.start_soon(self._refresh_user_shares)

    def _timer_failed(self, what: str, exc: Exception) -> None:
        """A connection's timer raised (a bug): counted and logged, the timers go on."""
        self.metrics.connection_failures.inc()
        log_failure(what, exc)

    def task_failed(self, what: str, exc: Exception) -> None:
        """Log and count a plugin task that raised."""
        self.metrics.plugin_failures.labels(_plugin_of(what), "task").inc()
        log_failure(f"task {what}", exc)

    def hook_failed(self, plugin: str, hook: str, exc: Exception) -> None:
        """Log and count a plugin hook implementation that raised."""
        self.metrics.plugin_failures.labels(plugin, hook).inc()
        log_failure(f"plugin {plugin}: {hook}", exc)

    def settings(self, plugin: object) -> Any:
        """The structured ``[plugins.NAME]`` settings of ``plugin``."""
        return self.plugins.settings.get(self.plugins.name_of(plugin))

    def coalescer(self, interval: float,
                  deliver: Callable[[K, V], Awaitable[None]]) -> Coalescer[K, V]:
        """A coalescing throttle running in the server's nursery:
        ``await coalescer.submit(key, value)`` delivers the first value of a key
        at once and, within ``interval`` seconds, only the latest of the rest."""
        return Coalescer(self.nursery, interval, deliver)

    async def publish(self, tenant: str, room: str, event: str, data: Any, *,
                      exclude: Session | None = None, skip_room: str | None = None) -> None:
        """Send ``event`` with ``data`` to every session in ``room`` of ``tenant``,
        on every node (``exclude``: except that session; ``skip_room``: except
        the members of that room, who got the same event through it: publish
        to two rooms and each session gets it once).

        ``data`` is any JSON value; attrs instances are unstructured, and
        :class:`~switchboard.core.Args` sends several arguments. Rooms are
        per tenant: ``user_room(id)``, ``tenant_room(id)``, ``agents_room(id)``
        and any name a plugin uses (``conversation:{id}``, ``lead:{id}``).
        A room nobody is in costs nothing.
        """
        await self.hub.publish(tenant, room, event, unstructure(data),
                               exclude=exclude.id if exclude else None, skip_room=skip_room)

    def watch_publications(self, patterns: Iterable[str],
                           callback: Callable[[Publication], None]) -> None:
        """Call ``callback(publication)`` for every publication (this node's:
        from any plugin, handler or ``POST /api/v1/emit``) whose event name
        matches one of the glob ``patterns``, before it is fanned out. The
        callback must be quick and must not raise (queue the work; a failure
        is logged and counted, and the publication goes on)."""
        wanted = list(patterns)
        decided: dict[str, bool] = {}

        def watch(publication: Publication) -> None:
            event = publication.event
            match = decided.get(event)
            if match is None:
                match = any(fnmatch.fnmatchcase(event, p) for p in wanted)
                if len(decided) < 10_000:
                    decided[event] = match
            if match:
                try:
                    callback(publication)
                except Exception as exc:
                    self.task_failed(f"publication watcher {callback!r}", exc)

        self.hub.watchers.append(watch)

    async def announce(self, topic: str, data: Any = None) -> None:
        """Send ``data`` (any JSON value) on ``topic`` to every node of the
        cluster, this one included: the handlers of :meth:`on_announcement`
        get it. For what a plugin keeps per node and must tell the others
        about: a cache entry to drop, a setting changed. On one node (the
        in-memory broker) it is a local call. Raises
        :class:`~switchboard.core.BrokerUnavailable` while Redis is unreachable
        (an announcement is not queued: the caller decides)."""
        await self.hub.broker.announce(topic, unstructure(data))

    def on_announcement(self, topic: str, handler: Callable[[Announcement], None]) -> None:
        """Call ``handler(announcement)`` with every announcement of ``topic``
        (``announcement.data``, ``announcement.node``: the sender's node id,
        ``app.node_id`` when it is this one). Announcements of one node
        arrive in the order it sent them. The handler must be quick and must
        not raise (a failure is logged and counted); start a task in
        :attr:`nursery` for slow work. Name topics after the plugin
        (``"chat:cache"``)."""

        def guarded(announcement: Announcement) -> None:
            try:
                handler(announcement)
            except Exception as exc:
                self.task_failed(f"announcement handler {handler!r} of {topic!r}", exc)

        self.hub.broker.on_announcement(topic, guarded)

    async def cluster_count(self, group: str, member: str, delta: int = 0) -> int:
        """Add ``delta`` to this node's count of ``member`` in ``group`` and
        return the total over the cluster's live nodes (``delta=0`` only
        reads it). Atomic across nodes: of two nodes taking a total of 0 to 1
        at once, one sees 1 and the other 2, so exactly one announces a
        "first". The counts of a node that dies stop counting after
        ``broker.node_ttl``; the announcement ``switchboard:node_gone`` then
        lists, per group, the members whose total fell to 0 (its ``data``:
        ``{"node", "emptied": {group: [member, ...]}}``). A node that was only
        cut off for that long writes its counts again when it is back and
        announces ``switchboard:node_back`` (``{"node"}``, its own id): announce
        again then what this node holds (its users online, say). Raises
        :class:`~switchboard.core.BrokerUnavailable` while Redis is unreachable."""
        return await self.hub.broker.count(group, member, delta)

    async def cluster_counts(self, group: str) -> dict[str, int]:
        """The members of ``group`` with a total above 0 over the cluster."""
        return await self.hub.broker.counts(group)

    @property
    def node_id(self) -> str:
        """This node's id in the cluster (random per start)."""
        return self.hub.broker.node_id

    def user_sessions(self, tenant: str, user: str) -> set[Session]:
        """The sessions of a user connected to this node (empty when none is)."""
        return self.hub.user_sessions(tenant, user)

    def is_agent(self, who: Session | str) -> bool:
        """Whether a session's role (or a role) is one of ``rooms.agent_roles``:
        agents may join any room of their tenant and are in ``tenant:{id}:agents``."""
        role = who if isinstance(who, str) else who.role
        return role in self.config.rooms.agent_roles

    # -- other plugins -----------------------------------------------------

    @overload
    def service(self, name: Literal["chat"]) -> ChatService: ...

    @overload
    def service(self, name: Literal["notifications"]) -> NotificationsService: ...

    @overload
    def service(self, name: Literal["presence"]) -> PresenceService: ...

    @overload
    def service(self, name: Literal["tickets"]) -> TicketService: ...

    @overload
    def service(self, name: Literal["pipeline"]) -> PipelineService: ...

    @overload
    def service(self, name: Literal["handover"]) -> HandoverService: ...

    @overload
    def service(self, name: str) -> Any: ...

    def service(self, name: str) -> Any:
        """The service another plugin offers under ``name`` (with the
        ``switchboard_services`` hook): ``app.service("chat")``.

        The first-party ones are typed (see :mod:`switchboard.core.services`);
        annotate a third-party one yourself. Raises :class:`LookupError` when
        no enabled plugin offers it, so a plugin that needs one fails at its
        start-up, naming it, when it looks it up there.
        """
        found = self.plugins.services.get(name)
        if found is None:
            known = ", ".join(sorted(self.plugins.services)) or "none"
            raise LookupError(f"no enabled plugin offers the service {name!r} "
                              f"(offered: {known})")
        return found[1]

    def implements(self, hook: str) -> bool:
        """Whether any enabled plugin implements ``hook`` (to skip preparing the
        arguments of a call nobody listens to)."""
        return self.plugins.implements(hook)

    async def notify(self, hook: str, **kwargs: Any) -> None:
        """Call notification hook ``hook`` of every plugin now, one at a time;
        one that raises is logged and counted and the others still run."""
        await self.plugins.notify(hook, self.hook_failed, **kwargs)

    def notify_soon(self, hook: str, **kwargs: Any) -> None:
        """Queue a :meth:`notify` of ``hook`` and return at once.

        Queued calls run in a background task of the server, one after the
        other in the order they were queued, so a slow implementation never
        holds up the caller; nothing is queued when no plugin implements
        ``hook``. Calls still queued when the server stops run before
        ``switchboard_shutdown`` (for up to ``server.drain_timeout``).
        """
        if not self.plugins.implements(hook):
            return
        self._soon_pending += 1
        self._soon_idle = trio.Event()
        self._soon_in.send_nowait((hook, kwargs))

    async def _run_notifications(self) -> None:
        async for hook, kwargs in self._soon_out:
            try:
                await self.notify(hook, **kwargs)
            finally:
                self._soon_pending -= 1
                if self._soon_pending == 0:
                    self._soon_idle.set()

    async def notifications_done(self) -> None:
        """Wait until every call queued by :meth:`notify_soon` has run."""
        await self._soon_idle.wait()

    # -- authentication ----------------------------------------------------

    async def authenticate(self, handshake: Handshake) -> Identity:
        """Who is connecting: the first identity a ``switchboard_authenticate``
        implementation returns. :class:`AuthError` when one refuses, when none
        accepts, or when one fails (``internal_error``, logged and counted)."""
        for plugin, call in self.plugins.callers("switchboard_authenticate"):
            try:
                result = call(handshake=handshake)
                if inspect.isawaitable(result):
                    result = await result
            except AuthError:
                raise
            except Exception as exc:
                self.hook_failed(plugin, "switchboard_authenticate", exc)
                raise AuthError("authentication failed on the server", code="internal_error",
                                status=500) from None
            if result is None:
                continue
            if not isinstance(result, Identity):
                self.hook_failed(plugin, "switchboard_authenticate", TypeError(
                    f"returned {type(result).__name__}, not an Identity"))
                raise AuthError("authentication failed on the server", code="internal_error",
                                status=500)
            if handshake.transport != "reauth":
                await self._check_connections(result)
            return result
        raise AuthError("missing token" if handshake.token() is None else "not authenticated")

    async def _check_connections(self, identity: Identity) -> None:
        """Refuse a new connection of a user who has ``limits.max_connections_per_user``
        already (on every node: the broker's count, or this node's alone while
        the broker cannot be reached)."""
        limit = self.config.limits.max_connections_per_user
        if limit <= 0:
            return
        tenant, user = identity.tenant_id, identity.user_id
        count = len(self.hub.user_sessions(tenant, user))
        if count < limit and self.hub.broker.clustered:
            try:
                count = max(count, await self.hub.broker.count(
                    f"switchboard:users:{tenant}", user, 0))
            except BrokerUnavailable:
                pass
        if count >= limit:
            raise AuthError(f"this user has {count} connections already, the most allowed",
                            code="too_many_connections", status=429, data={"limit": limit})

    def expiry_deadline(self, identity: Identity) -> float:
        """When (on Trio's clock) the identity's token expires.

        The wall-clock ``exp`` is converted once, when the identity is first
        seen (at connect or re-authentication), and remembered: converting it
        again later would push the deadline along whenever Trio's clock runs
        apart from the wall clock (as ``MockClock`` does in tests).
        """
        if identity.expires_at is None:
            return float("inf")
        deadline = self._expiry_deadlines.get(identity)
        if deadline is None:
            deadline = trio.current_time() + (identity.expires_at - time.time())
            self._expiry_deadlines[identity] = deadline
        return deadline

    # -- sessions ----------------------------------------------------------

    def new_session(self, identity: Identity, transport: Transport, codec: Codec, *,
                    session_id: str | None = None, profile: str = "",
                    handshake: Handshake | None = None) -> Session:
        limits = self.config.limits
        key = (identity.tenant_id, identity.user_id)
        if key not in self._user_buckets:
            self._user_buckets[key] = TokenBucket.of(limits.user)
        return Session(
            identity, transport, codec,
            connected_at=trio.current_time(),
            rate_bucket=TokenBucket.of(limits.connection),
            violations=ViolationCounter(limits.max_violations, limits.violation_window),
            session_id=session_id,
            profile=self.plugins.profiles[profile] if profile else None,
            handshake=handshake.slim() if handshake is not None else None,
        )

    async def open_session(self, session: Session, rooms: Iterable[str] = ()) -> None:
        """Attach a new session (and put it back in ``rooms``, when recovered)."""
        self.hub.attach(session)
        for room in (*session.identity.rooms, *rooms):  # granted by the authenticator
            if is_room_name(room):
                self.hub.rooms.add(session, room)
        self.metrics.session_opened(session.transport.protocol)
        log.info("session %s opened user=%s tenant=%s protocol=%s", session.id,
                 session.user_id, session.tenant_id, session.transport.protocol)
        if self.hub.broker.clustered:
            await self._count_user(session, +1)
        await self.notify("switchboard_session_opened", session=session)
        if session.profile is not None and session.profile.on_connect is not None:
            for event, data in session.profile.on_connect(session):
                session.emit(event, data, raw=True)

    async def close_session(self, session: Session, reason: str) -> None:
        if session.closed:
            return
        self.hub.detach(session)
        self.metrics.session_closed(session.transport.protocol, reason)
        if not self.hub.user_sessions(session.tenant_id, session.user_id):
            self._user_buckets.pop((session.tenant_id, session.user_id), None)
        log.info("session %s closed: %s", session.id, reason)
        if self.hub.broker.clustered:
            with trio.CancelScope(shield=True), trio.move_on_after(USER_COUNT_TIMEOUT):
                await self._count_user(session, -1)
        if self.plugins.implements("switchboard_session_closed"):
            with trio.CancelScope(shield=True):
                await self.notify("switchboard_session_closed", session=session, reason=reason)

    async def call_hook(self, name: str, **kwargs: Any) -> list[Any]:
        """Call a hook by name and collect what it returns: each implementation
        in turn, awaited before the next; their results, in call order. An
        exception of an implementation is raised to the caller."""
        return [result for _, result in await self.plugins.acall(name, **kwargs)]

    # -- events ------------------------------------------------------------

    async def dispatch(self, session: Session, name: str, data: Any) -> Any:
        """Handle one client event; return its ack value or raise ClientError.

        With a compatibility profile, a frontend event is translated to its
        canonical event first, and the result (or error) back into the events
        and ack that frontend expects.
        """
        profile = session.profile
        rule = profile.inbound.get(name) if profile is not None else None
        if rule is None:
            return await self._dispatch(session, name, data)
        try:
            if rule.handler is not None or rule.event is None:
                self.check_rate(session, name)
            payload = rule.payload(data)
            if rule.handler is not None:
                result = await rule.handler(self, session, payload)
            elif rule.event is None:
                result = None
            else:
                event = rule.event if isinstance(rule.event, str) else rule.event(data)
                result = await self._dispatch(session, event, payload)
        except ClientError as exc:
            return self._profiled_error(rule, session, data, exc)
        if isinstance(result, Deferred):
            # Translated when it is known, still without holding up the client's
            # next events (a profiled chat client's messages share batches too).
            deferred = result

            async def translated() -> Any:
                try:
                    value = await deferred.wait()
                except Exception as exc:
                    return self._profiled_error(rule, session, data, server_failure(exc, name))
                return self._profiled_result(rule, session, data, value)

            return Deferred(translated)
        return self._profiled_result(rule, session, data, result)

    @staticmethod
    def _profiled_result(rule: Inbound, session: Session, data: Any, result: Any) -> Any:
        if rule.on_result is not None:
            for event, reply in rule.on_result(session, data, result):
                session.emit(event, reply, raw=True)
        return rule.ack(result)

    @staticmethod
    def _profiled_error(rule: Inbound, session: Session, data: Any, exc: ClientError) -> Any:
        if rule.on_error is None:
            raise exc
        for event, reply in rule.on_error(session, data, exc):
            session.emit(event, reply, raw=True)
        return None

    async def _dispatch(self, session: Session, name: str, data: Any) -> Any:
        self.check_rate(session, name)
        if name == "auth":
            return await self._reauthenticate(session, data)
        spec = self.events.get(name)
        if spec is None:
            return await self._unhandled(session, name, data)
        payload = spec.structure(data)
        self.metrics.event_received(name, declared=True)
        assert spec.handler is not None
        try:
            result = await spec.handler(session, payload)
        except Exception as exc:
            raise server_failure(exc, f"{name} (plugin {spec.plugin})") from None
        return unstructure(result) if attrs.has(type(result)) else result

    async def offer_unhandled(self, session: Session, event: str, data: Any) -> Any:
        """Offer a client event to the ``switchboard_unhandled_event``
        implementations (an event proxy) as if no plugin declared it, and
        return the answer of the one that takes it; ``unknown_event`` when
        none does. For a compatibility profile whose frontend event goes to a
        plugin for some payloads and to the deployment's backend for others
        (a lead the pipeline plugin does not know)."""
        return await self._unhandled(session, event, data)

    async def _unhandled(self, session: Session, name: str, data: Any) -> Any:
        """An event no plugin declared: a ``switchboard_unhandled_event``
        implementation may take it (an event proxy); else ``unknown_event``."""
        for plugin, call in self.plugins.callers("switchboard_unhandled_event"):
            try:
                answer = call(session=session, event=name, data=data)
            except ClientError:
                raise
            except Exception as exc:
                raise server_failure(exc, f"{name} (plugin {plugin})") from None
            if answer is None:
                continue
            self.metrics.event_received(name, declared=False)
            try:
                result = await answer if inspect.isawaitable(answer) else answer
            except Exception as exc:
                raise server_failure(exc, f"{name} (plugin {plugin})") from None
            return unstructure(result) if attrs.has(type(result)) else result
        raise ClientError(UNKNOWN_EVENT, f"unknown event {name!r}", event=name)

    # -- the per-user limit over several nodes ------------------------------
    #
    # Each node limits a user's events with its own bucket; with several nodes
    # the user's rate and burst are split between them in proportion to the
    # user's devices on each (counted in the broker: group ``switchboard:users:
    # {tenant}``), so that all the nodes together allow the configured rate.
    # A node's share is set when a device of the user opens or closes on it
    # and refreshed with every ``broker.heartbeat`` (a change on another node
    # is seen within one heartbeat).

    async def _count_user(self, session: Session, delta: int) -> None:
        key = (session.tenant_id, session.user_id)
        try:
            total = await self.hub.broker.count(f"switchboard:users:{key[0]}", key[1], delta)
        except BrokerUnavailable:
            return  # the share stays as it was
        self._set_user_share(key, total)

    def _set_user_share(self, key: tuple[str, str], total: int) -> None:
        bucket = self._user_buckets.get(key)
        if bucket is None:
            return
        local = len(self.hub.user_sessions(*key))
        share = 1.0 if total <= local or local == 0 else local / total
        rate = self.config.limits.user
        bucket.rate, bucket.burst = rate.rate * share, rate.burst * share

    async def _refresh_user_shares(self) -> None:
        while True:
            await trio.sleep(self.config.broker.heartbeat)
            for tenant in sorted({tenant for tenant, _ in self._user_buckets}):
                try:
                    totals = await self.hub.broker.counts(f"switchboard:users:{tenant}")
                except BrokerUnavailable:
                    break
                for (t, user) in list(self._user_buckets):
                    if t == tenant:
                        self._set_user_share((t, user), totals.get(user, 0))

    def check_rate(self, session: Session, name: str) -> None:
        """Take a token for one client frame; raise ClientError(rate_limited) if none."""
        buckets = [session.rate_bucket]
        user = self._user_buckets.get((session.tenant_id, session.user_id))
        if user is not None:
            buckets.append(user)
        rate = self._event_rates.get(name)
        if rate is not None:
            if session.event_buckets is None:
                session.event_buckets = {}
            bucket = session.event_buckets.get(name)
            if bucket is None:
                bucket = session.event_buckets[name] = TokenBucket.of(rate)
            buckets.append(bucket)
        for bucket in buckets:
            if not bucket.try_take():
                if session.violations.record():
                    session.transport.close(CloseCode.RATE_LIMITED, "rate limit abuse")
                raise ClientError(RATE_LIMITED, "too many events, slow down", event=name,
                                  retry_after=round(bucket.retry_after(), 3))

    async def _reauthenticate(self, session: Session, data: Any) -> Any:
        """``auth {token}``: the same user and tenant with a fresh token.

        When the role changes, membership follows: ``tenant:{id}:agents`` is
        joined or left, and every other room the session is in is authorized
        again for the new identity; the rooms it may no longer be in are left
        (``switchboard_room_left`` is called for each) and listed in the ack.
        """
        base = session.handshake or Handshake(transport="reauth", path="")
        handshake = attrs.evolve(base, transport="reauth",
                                 auth=data if isinstance(data, dict) else None)
        try:
            identity = await self.authenticate(handshake)
        except AuthError as exc:
            raise ClientError(exc.code if exc.code != "internal_error" else UNAUTHORIZED,
                              exc.message) from None
        if (identity.user_id, identity.tenant_id) != (session.user_id, session.tenant_id):
            raise ClientError(UNAUTHORIZED, "token is for another user or tenant")
        old_role = session.role
        session.identity = identity
        left: list[str] = []
        if identity.role != old_role:
            left = await self.recheck_rooms(session)
            if left:
                log.info("session %s left %s after its role changed to %r", session.id,
                         ", ".join(left), session.role)
        return {"expires_at": identity.expires_at, "left": left}

    # -- rooms -------------------------------------------------------------

    async def join(self, session: Session, room: object) -> str:
        """Put ``session`` in ``room`` if :meth:`authorize_join` allows it; return
        the room name. Raises :class:`ClientError`: ``invalid_room`` for a
        name that is not one, ``forbidden`` when refused or past
        ``rooms.max_rooms_per_connection`` (or a policy's own error)."""
        name = check_room_name(room)
        if name in session.rooms:
            return name
        if len(session.rooms) >= self.config.rooms.max_rooms_per_connection:
            raise ClientError(FORBIDDEN, "too many rooms for one connection", room=name)
        if not await self.authorize_join(session, name):
            raise ClientError(FORBIDDEN, f"not allowed to join {name!r}", room=name)
        self.hub.rooms.add(session, name)
        return name

    async def leave(self, session: Session, room: object) -> str:
        """Take ``session`` out of ``room`` (nothing if it was not in it) and call
        ``switchboard_room_left``; return the room name."""
        name = check_room_name(room)
        if self.hub.rooms.discard(session, name):
            await self.notify("switchboard_room_left", session=session, room=name)
        return name

    async def recheck_rooms(self, session: Session, rooms: Iterable[str] | None = None
                            ) -> list[str]:
        """Authorize ``session`` again for ``rooms`` it is in (by default every
        room it is in), after something it was allowed by changed (its role, a
        conversation's participants); take it out of those it may no longer
        be in, calling ``switchboard_room_left`` for each, and return them.

        ``user:{id}`` and ``tenant:{id}`` always stay; ``tenant:{id}:agents``
        follows the session's role.
        """
        hub_rooms = self.hub.rooms
        agents = agents_room(session.tenant_id)
        canonical = {user_room(session.user_id), tenant_room(session.tenant_id), agents}
        wanted = set(session.rooms if rooms is None else rooms) & session.rooms
        left = []
        if rooms is None or agents in wanted:
            if self.hub.is_agent(session):
                hub_rooms.add(session, agents)
            elif hub_rooms.discard(session, agents):
                left.append(agents)
        for room in sorted(wanted - canonical):
            try:
                allowed = await self.authorize_join(session, room)
            except ClientError:  # a policy refusing with its own error
                allowed = False
            if not allowed:
                hub_rooms.discard(session, room)
                left.append(room)
        for room in left:
            await self.notify("switchboard_room_left", session=session, room=room)
        return left

    async def authorize_join(self, session: Session, room: str) -> bool:
        """Whether ``session`` may join ``room``: one plugin's
        ``switchboard_authorize_join`` (or ``rooms.public_patterns``) allows it
        and none refuses. A policy that raises refuses, except that a
        :class:`ClientError` it raises (``not_found``) is raised to the caller."""
        if any(fnmatch.fnmatchcase(room, p) for p in self.config.rooms.public_patterns):
            verdicts: list[Any] = [True]
        else:
            verdicts = []
        for plugin, caller in self.plugins.callers("switchboard_authorize_join"):
            try:
                verdict = caller(session=session, room=room)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except ClientError:
                raise
            except Exception as exc:
                # A failing policy refuses (fails closed) and is reported.
                self.hook_failed(plugin, "switchboard_authorize_join", exc)
                verdict = False
            verdicts.append(verdict)
        if any(v is False for v in verdicts):
            return False
        return any(v is True for v in verdicts)


def _plugin_of(task: str) -> str:
    """The plugin label of a task name (its class, for ``Plugin.method``)."""
    return task.split(".", 1)[0]
