"""The hook specifications of Switchboard plugins.

Every feature, first-party or third-party, is a plugin implementing some of
these hooks; there is no other way in. A plugin is an object (or a class,
instantiated without arguments) registered under a name through the
``switchboard.plugins`` entry-point group, and enabled or disabled with
``[plugins.NAME] enabled = ...`` in config.

Hooks may be plain functions or ``async def``: the server awaits whatever a
hook returns when it is awaitable. Hook arguments are passed by name, so an
implementation may accept only the arguments it needs.

Hooks are called through pluggy, one implementation at a time, in pluggy's
order (``@hookimpl(tryfirst=True)`` / ``trylast``; otherwise the plugin
registered last first): an async implementation is awaited before the next
one is called. Hook wrappers (``@hookimpl(wrapper=True)``) wrap the call of
each implementation (for an async one they see the awaitable it returns).

At start-up a method whose name starts with ``switchboard_`` must be one of
the hooks below, marked with ``@hookimpl``, taking only arguments the hook
has: anything else (a misspelled hook, a forgotten marker) is a config error
naming the plugin, never silently ignored.

Failures are contained: an exception in a notification hook (the session
hooks, ``switchboard_shutdown`` and the domain events of the first-party
plugins) is logged and counted
(``switchboard_plugin_failures_total{plugin,hook}``) and the other plugins'
implementations still run; one in ``switchboard_authorize_join`` refuses the
join; one in ``switchboard_startup`` or a declaration hook stops the start-up
with an error naming the plugin.

The hooks are grouped below: declaration, lifecycle, authentication,
sessions, domain events of the first-party plugins, and the one service hook
kept from before services (see :mod:`switchboard.core.services`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import os

    import sqlalchemy as sa
    from quart import Blueprint

    from .app import App
    from .auth import Identity
    from .events import EventSpec
    from .handshake import Handshake
    from .jsonroutes import JsonHandler
    from .profiles import Profile
    from .services import (
        ChatMessage,
        ChatStatusChange,
        HandoverChange,
        LeadChange,
        MessageSource,
        Notification,
        TicketChange,
    )
    from .session import Session

PROJECT = "switchboard"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------
# Declaration: called once per plugin at start-up (and by `switchboard
# plugins` / `switchboard check-config`, without a running server).
# -------------------------------------------------------------------------


@hookspec
def switchboard_config_class() -> type | None:
    """Return the attrs class of this plugin's ``[plugins.NAME]`` config section.

    The section (minus ``enabled``) is structured into it with the same strict
    rules as the rest of the config: an unknown key or a wrong type stops the
    server with an error naming ``plugins.NAME.KEY``. Return ``None`` (or do not
    implement the hook) for a plugin without settings.
    """


@hookspec
def switchboard_events() -> Iterable[EventSpec]:
    """Return the events this plugin declares.

    Incoming events (client to server) carry a handler and a payload class;
    outgoing events (server to client) are declared for documentation and
    ``switchboard plugins``. Build them with :func:`switchboard.core.incoming`
    and :func:`switchboard.core.outgoing` (their ``ack``, ``schema`` and
    ``rooms`` go into the AsyncAPI document). Two plugins declaring the same
    incoming event is a start-up error.
    """


@hookspec
def switchboard_profiles() -> Iterable[Profile]:
    """Return compatibility profiles (see :mod:`switchboard.core.profiles`).

    A deployment binds a profile by name to a Socket.IO namespace
    (``socketio.profiles``) or to the plain WebSocket path
    (``server.ws_profile``), so an existing frontend keeps its event names.
    """


@hookspec
def switchboard_tables(metadata: sa.MetaData) -> None:
    """Add this plugin's ``sqlalchemy.Table`` objects to ``metadata``.

    Tables are created (if missing) when the store opens, before
    :func:`switchboard_startup`. Prefix table names with the plugin name.
    To change them once released, ship migrations
    (:func:`switchboard_migrations`).
    """


@hookspec
def switchboard_migrations() -> str | os.PathLike[str] | None:
    """Return the directory of this plugin's Alembic revision scripts.

    The scripts are this plugin's own history, versioned in the table
    ``{plugin}_alembic_version``: its first revision creates the tables as
    the plugin first shipped them, each later one changes them, and the
    tables of :func:`switchboard_tables` are always what the newest revision
    makes. A fresh database gets those tables and the newest version directly;
    an older one is upgraded by ``switchboard migrate`` (or at start-up, see
    ``store.auto_migrate``). Ship the directory as package data. See
    ``docs/migrations.md``.
    """


@hookspec
def switchboard_blueprints() -> Iterable[Blueprint] | Blueprint | None:
    """Return quart Blueprints with this plugin's HTTP routes.

    Routes are served on the same port as everything else; use
    :func:`switchboard.core.require_api_key` for server-to-server routes, and
    :func:`switchboard.core.documented` to say what a route takes and answers
    in the OpenAPI document.
    """


@hookspec
def switchboard_json_routes() -> Mapping[tuple[str, str], JsonHandler] | None:
    """Return JSON routes served without the web framework, by ``(method,
    path)`` (an exact path): ``{("POST", "/api/v1/tickets"): handler}``.

    For a route backends call many times a second: the server reads such a
    request itself, checks its API key and JSON body, awaits
    ``handler(request)`` (a :class:`~switchboard.core.jsonroutes.JsonRequest`:
    ``api_key``, ``data``, ``tenant(given)``) for ``(answer, status)`` and
    writes the answer in one send (a :class:`ClientError` raised is answered
    as the HTTP API answers it). Keep the same route in the plugin's
    blueprint, calling the same handler: it documents the route and serves
    what this path hands over (chunked bodies, ``Expect``, a connection whose
    next request is for another route).
    """


@hookspec
def switchboard_services() -> Mapping[str, object] | None:
    """Return the services this plugin offers other plugins, by name
    (``{"chat": self.service}``).

    Called once at start-up, before any ``switchboard_startup``, so every
    service exists whatever order the plugins start in; other plugins obtain
    one with ``app.service(NAME)``. Two plugins offering the same name is a
    start-up error. The first-party services and the values they pass are
    specified in :mod:`switchboard.core.services`.
    """


# -------------------------------------------------------------------------
# Lifecycle of the server.
# -------------------------------------------------------------------------


@hookspec
def switchboard_startup(app: App) -> Awaitable[None] | None:
    """Called once when the server starts, after the store is open and before
    it accepts connections. ``app`` is the plugin's handle on the server: the
    hub (rooms, emit), the store, config and this plugin's settings
    (``app.settings(self)``). Keep it: the other hooks do not pass it again.
    """


@hookspec
def switchboard_background_tasks(app: App) -> Iterable[Callable[[], Awaitable[None]]]:
    """Return async callables to run in the server's nursery for its lifetime.

    They are cancelled at shutdown. One that raises is logged, counted
    (``switchboard_plugin_failures_total{plugin,hook="background_task"}``) and
    started again after a back-off (1 s, doubling up to 60 s); it never stops
    the server. One that returns is not started again.
    """


@hookspec
def switchboard_shutdown(app: App) -> Awaitable[None] | None:
    """Called once when the server stops, after every connection is closed."""


# -------------------------------------------------------------------------
# Authentication: who is connecting.
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def switchboard_authenticate(handshake: Handshake) -> Awaitable[Identity | None] | Identity | None:
    """Who is this connection? Called for every WebSocket handshake, every
    Socket.IO namespace CONNECT and every ``auth`` event (re-authentication,
    ``handshake.transport == "reauth"``), one plugin at a time.

    ``handshake`` has the transport, path, namespace, headers (and
    ``cookies``), query, remote address and Socket.IO ``auth`` object (see
    :class:`switchboard.core.Handshake`). Return an :class:`Identity` to
    accept, raise :class:`switchboard.core.AuthError` (its code, message and
    status reach the client) to refuse, or return ``None`` to let the next
    plugin decide. The first identity wins; when no plugin returns one, the
    connection is refused ``unauthorized``. A plugin that fails otherwise
    refuses (``internal_error``), logged and counted. The ``jwt`` plugin
    (tokens, ``[auth]``) implements it first (``tryfirst``); the ``proxy``
    plugin asks a backend.
    """


# -------------------------------------------------------------------------
# Sessions: one per connected client (per namespace, for Socket.IO).
# -------------------------------------------------------------------------


@hookspec
def switchboard_session_opened(session: Session) -> Awaitable[None] | None:
    """A client has connected and authenticated. It is already in its rooms
    ``user:{id}``, ``tenant:{id}`` (and ``tenant:{id}:agents`` for agent roles).
    """


@hookspec
def switchboard_session_closed(session: Session, reason: str) -> Awaitable[None] | None:
    """A client has gone (``reason`` says why: ``client``, ``heartbeat_timeout``,
    ``slow_consumer``, ``token_expired``, ``shutdown``, ...). It has already left
    its rooms; deliveries to it are dropped.
    """


@hookspec
def switchboard_room_left(session: Session, room: str) -> Awaitable[None] | None:
    """``session`` has left ``room`` on its own (not by disconnecting: that is
    :func:`switchboard_session_closed`)."""


@hookspec
def switchboard_authorize_join(session: Session, room: str) -> bool | Any | None:
    """May ``session`` join ``room`` (a name within the session's tenant)?

    Return ``True`` to allow, ``False`` (or raise ``ClientError``) to refuse,
    ``None`` for no opinion. The join succeeds when at least one plugin allows
    it and none refuses; a refused join answers the client an error with code
    ``forbidden``.
    """
    return None


@hookspec(firstresult=True)
def switchboard_unhandled_event(session: Session, event: str,
                                data: Any) -> Awaitable[Any] | None:
    """A client sent ``event``, which no plugin declared. Return an awaitable
    whose result is the answer (the ack; raise ``ClientError`` to answer an
    error), or ``None`` if this plugin does not take it either: when none
    does, the client gets ``unknown_event``. The connection's and user's rate
    limits apply before, and ``[limits.events]`` by the event's name. The
    ``proxy`` plugin forwards events of configured patterns to a backend.
    """


# -------------------------------------------------------------------------
# Domain events of the first-party plugins. Called in the background, in the
# order the events happened, one implementation at a time, after what they
# report is stored (and broadcast): they never hold up the client or the
# batch that caused them, and nothing is done for them when no plugin
# implements them. An implementation that takes long delays the next of
# these calls (start long work with ``app.nursery.start_soon``); one that
# raises is logged and counted. Calls still queued when the server stops run
# before ``switchboard_shutdown``, for up to ``server.drain_timeout``.
# -------------------------------------------------------------------------


@hookspec
def switchboard_chat_message_stored(message: ChatMessage,
                                    source: MessageSource) -> Awaitable[None] | None:
    """The ``chat`` plugin stored a new message (a resend of a ``clientId``
    stored before is not new), whatever its ``source``: a client's
    ``message:send`` (``"socket"``), the HTTP API (``"http"``, e.g. a WhatsApp
    webhook), or another plugin (``"plugin"``, including a message posted by
    an implementation of this hook). ``message`` is as stored, with its id;
    it has already been broadcast as ``message:new``. The return value is
    ignored.
    """


@hookspec
def switchboard_chat_status_changed(change: ChatStatusChange) -> Awaitable[None] | None:
    """A participant's ``message:delivered`` / ``message:read`` receipt moved
    their watermark (a receipt that moves nothing is not reported); the change
    has been stored and broadcast as ``message:status``. The return value is
    ignored.
    """


@hookspec
def switchboard_notification_created(notification: Notification) -> Awaitable[None] | None:
    """The ``notifications`` plugin stored a notification (created over HTTP or
    by a plugin) and pushed it to the user's devices. The return value is
    ignored.
    """


@hookspec
def switchboard_pipeline_lead_changed(change: LeadChange) -> Awaitable[None] | None:
    """The ``pipeline`` plugin stored a change of a lead (``change.action``:
    ``created``, ``updated``, ``moved``, ``assigned`` or ``deleted``), made
    over the socket, the HTTP API or by a plugin through the ``pipeline``
    service; it has been broadcast to ``pipeline:{id}`` and ``lead:{id}``.
    ``change.changes`` holds the changed fields (their new values). The
    return value is ignored.
    """


@hookspec
def switchboard_handover_changed(change: HandoverChange) -> Awaitable[None] | None:
    """The ``handover`` plugin changed a request for a human agent: requested,
    accepted, transferred, escalated, cancelled, resolved or expired
    (``change.action``), from a socket event, the HTTP API, the ``handover``
    service or its escalation timer (``change.source``). The change has been
    stored and announced to clients; ``change.request`` is the request as it
    is now. The return value is ignored.
    """


@hookspec
def switchboard_ticket_changed(change: TicketChange) -> Awaitable[None] | None:
    """The ``desk`` plugin stored a change of a ticket (``change.kind``:
    ``created``, ``updated``, ``assigned``, ``transferred``, ``status``,
    ``closed``, ``reopened``), made by an agent's socket event, the HTTP API,
    another plugin through ``app.service("tickets")`` or the desk itself
    (auto-assignment, an assignee gone offline: ``change.reason``). It has
    already been announced as ``ticket:{kind}``. The return value is ignored.
    """


# -------------------------------------------------------------------------
# Called by a plugin rather than by the server (with
# ``await app.call_hook("NAME", ...)``): kept from before services.
# -------------------------------------------------------------------------


@hookspec
def switchboard_create_notification(
    tenant_id: str, user_id: str, notification: dict[str, Any]
) -> Awaitable[Any] | None:
    """Create a notification for a user (``title``, ``message``, ``type``,
    ``link``, ``data``). Implemented by the ``notifications`` plugin, which
    stores it and pushes it to every device of the user. Returns the stored
    notification as the HTTP API shows it. New code uses
    ``app.service("notifications").create(...)``, which is typed.
    """
