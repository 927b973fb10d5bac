"""What each panel of the console shows, read from the running server.

Each function returns plain data (dicts and lists) for a template; nothing
here writes. Long lists are cut at :data:`MAX_ROWS` with the number left out.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..args import Args
from ..rooms import ALL_TENANTS
from .recent import RecentErrors
from .redact import redact, redact_url

if TYPE_CHECKING:
    from ..app import App
    from ..session import Session

#: Rows of a table shown at most (connections, rooms, users).
MAX_ROWS = 500
#: Members named per room at most.
MAX_MEMBERS_NAMED = 20
#: Characters of an event's data shown in the tail at most.
MAX_DATA = 2000


def utc(at: float) -> str:
    """A UNIX time as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def duration(seconds: float) -> str:
    """``3h 02m``, ``5m 07s``, ``12s``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def namespace_of(session: Session) -> str:
    """The Socket.IO namespace of a session (``-`` on the plain WebSocket)."""
    handshake = session.handshake
    return handshake.namespace if handshake is not None and handshake.namespace else "-"


def overview(app: App, started: float) -> dict[str, Any]:
    hub = app.hub
    users = {(s.tenant_id, s.user_id) for s in hub.sessions.values()}
    broker = app.config.broker.url.partition("://")[0]
    return {
        "node": app.node_id,
        "mode": app.config.mode,
        "broker": redact_url(app.config.broker.url) if broker != "memory" else "memory://",
        "broker_available": hub.broker.available,
        "connections": len(hub.sessions),
        "rooms": len(hub.rooms),
        "users": len(users),
        "tenants": len({tenant for tenant, _ in users}),
        "uptime": duration(trio.current_time() - started),
        "shutting_down": app.shutting_down,
    }


def connections(app: App) -> dict[str, Any]:
    """The summary per (tenant, transport, namespace) and one row per session."""
    sessions = sorted(app.hub.sessions.values(),
                      key=lambda s: (s.tenant_id, s.user_id, s.connected_at))
    groups: Counter[tuple[str, str, str]] = Counter()
    group_users: dict[tuple[str, str, str], set[str]] = {}
    for session in sessions:
        key = (session.tenant_id, session.transport.protocol, namespace_of(session))
        groups[key] += 1
        group_users.setdefault(key, set()).add(session.user_id)
    now = trio.current_time()
    rows = [{
        "id": session.id,
        "tenant": session.tenant_id,
        "user": session.user_id,
        "role": session.role,
        "transport": session.transport.protocol,
        "namespace": namespace_of(session),
        "address": (session.handshake.remote_addr if session.handshake is not None else None)
        or "-",
        "rooms": len(session.rooms),
        "connected": duration(now - session.connected_at),
    } for session in sessions[:MAX_ROWS]]
    return {
        "total": len(sessions),
        "groups": [{"tenant": t, "transport": p, "namespace": n, "connections": count,
                    "users": len(group_users[(t, p, n)])}
                   for (t, p, n), count in sorted(groups.items())],
        "rows": rows,
        "more": max(0, len(sessions) - MAX_ROWS),
    }


def rooms(app: App) -> dict[str, Any]:
    """Each room of this node with its members (their users)."""
    keys = sorted(app.hub.rooms)
    rows = []
    for tenant, room in keys[:MAX_ROWS]:
        members = app.hub.rooms.members(tenant, room)
        users = sorted({session.user_id for session in members})
        rows.append({"tenant": tenant, "room": room, "connections": len(members),
                     "users": users[:MAX_MEMBERS_NAMED],
                     "more_users": max(0, len(users) - MAX_MEMBERS_NAMED)})
    return {"total": len(keys), "rows": rows, "more": max(0, len(keys) - MAX_ROWS)}


def presence(app: App) -> dict[str, Any]:
    """Who is online per tenant: the presence plugin's statuses when it is on,
    else the users with a connection to this node."""
    tenants = sorted({session.tenant_id for session in app.hub.sessions.values()})
    plugin = "presence" in app.plugins.services
    rows: list[dict[str, Any]] = []
    if plugin:
        service = app.service("presence")
        for tenant in tenants:
            for info in service.online(tenant):
                rows.append({"tenant": tenant, "user": info.user_id, "status": info.status,
                             "devices": info.devices, "role": info.role or "-"})
    else:
        devices: Counter[tuple[str, str]] = Counter(
            (s.tenant_id, s.user_id) for s in app.hub.sessions.values())
        roles = {(s.tenant_id, s.user_id): s.role for s in app.hub.sessions.values()}
        rows = [{"tenant": t, "user": u, "status": "online", "devices": n,
                 "role": roles[(t, u)]} for (t, u), n in sorted(devices.items())]
    return {"plugin": plugin, "total": len(rows), "rows": rows[:MAX_ROWS],
            "more": max(0, len(rows) - MAX_ROWS)}


def plugins(app: App) -> list[dict[str, Any]]:
    """Every installed plugin: enabled or not, its events and its settings
    (secrets hidden)."""
    out = []
    for info in app.plugins.infos:
        events = sorted((spec for spec in app.plugins.events.values()
                         if spec.plugin == info.name), key=lambda s: (s.direction, s.name))
        if info.enabled and info.name in app.plugins.settings:
            settings = redact(app.plugins.settings[info.name])
        else:
            settings = redact(app.config.plugin_settings(info.name))
        out.append({
            "name": info.name,
            "source": info.source or "-",
            "enabled": info.enabled,
            "events": [{"name": spec.name, "direction": spec.direction,
                        "doc": spec.doc.strip().split("\n")[0] if spec.doc else ""}
                       for spec in events],
            "settings": json.dumps(settings, indent=2, sort_keys=True),
        })
    return out


def errors(recent: RecentErrors) -> dict[str, Any]:
    return {"total": len(recent),
            "rows": [{**attrs.asdict(e), "at": utc(e.at)} for e in recent]}


def tail_entry(tenant: str, room: str, event: str, data: Any) -> dict[str, Any]:
    """One publication as a line of the tail."""
    if isinstance(data, Args):
        data = list(data.values)
    try:
        text = json.dumps(data, ensure_ascii=False, default=repr)
    except ValueError:  # a circular structure
        text = repr(data)
    if len(text) > MAX_DATA:
        text = text[:MAX_DATA] + "…"
    return {"at": utc(time.time()), "tenant": tenant if tenant != ALL_TENANTS else "*",
            "room": room, "event": event, "data": text}
