"""What a client sent when it connected: the input of authentication.

Every transport builds a :class:`Handshake` and hands it to the
``switchboard_authenticate`` hook: the plain WebSocket from its upgrade
request, Socket.IO from the Engine.IO session's first request plus the
namespace's CONNECT ``auth`` object, re-authentication from the ``auth``
event's data. Sans-IO: built from header pairs and a request target.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import attrs

from .forwarded import TrustedProxies

Transport = Literal["websocket", "socket.io", "reauth"]

#: The headers (and the query, when it held only the token) of every slim
#: handshake: one empty mapping, not one per session.
_NOTHING: Mapping[str, str] = MappingProxyType({})


@attrs.frozen
class Handshake:
    """A connection attempt, as the authenticate hooks see it.

    ``headers`` (names in lower case, repeated ones joined with ``", "``) are
    only kept for authentication: a session keeps :meth:`slim`, without them.
    """

    transport: Transport
    #: Path of the request (``/ws``, ``/socket.io/``).
    path: str
    #: Socket.IO namespace (``None`` on the plain WebSocket).
    namespace: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    #: Query parameters (the first value of each).
    query: Mapping[str, str] = attrs.field(factory=dict)
    #: Socket.IO's CONNECT ``auth`` object, or the ``auth`` event's data.
    auth: Mapping[str, Any] | None = None
    #: The peer's IP address, when the connection has one.
    remote_addr: str | None = None

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header's cookies, ``name=value; ...`` as browsers send
        them (pairs without a name are left out; the first of a repeated name
        is kept)."""
        cookies: dict[str, str] = {}
        for part in self.headers.get("cookie", "").split(";"):
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name:
                continue
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies.setdefault(name, value)
        return cookies

    def token(self) -> str | None:
        """A bearer token, wherever the client put it: the ``auth`` object's
        ``token``, an ``Authorization: Bearer`` header or a ``token`` query
        parameter (in that order)."""
        if self.auth is not None:
            token = self.auth.get("token")
            if isinstance(token, str) and token:
                return token
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return self.query.get("token") or None

    def for_namespace(self, namespace: str, auth: Mapping[str, Any] | None) -> Handshake:
        """This (Engine.IO session's) handshake for a Socket.IO namespace CONNECT."""
        return attrs.evolve(self, namespace=namespace, auth=auth)

    def slim(self) -> Handshake:
        """What a session keeps for plugins (auth, query...): without the
        headers, and without the query's ``token``, which has done its work
        (a re-authentication brings a new token, and finds no other to fall
        back on). The ``auth`` object stays as the client sent it: plugins
        read it (its ``token`` is not taken again: a re-authentication
        replaces the whole object)."""
        changes: dict[str, Any] = {}
        if self.headers:
            changes["headers"] = _NOTHING
        if "token" in self.query:
            query = {k: v for k, v in self.query.items() if k != "token"}
            changes["query"] = query or _NOTHING
        return attrs.evolve(self, **changes) if changes else self


def from_request(transport: Transport, target: str,
                 headers: Iterable[tuple[bytes | str, bytes | str]], *,
                 remote_addr: str | None = None,
                 proxies: TrustedProxies | None = None) -> Handshake:
    """A handshake from an HTTP request's target and header pairs; with
    ``proxies``, ``remote_addr`` (the peer's) becomes the client's address when
    the peer is a trusted proxy (see :mod:`.forwarded`)."""
    joined: dict[str, str] = {}
    for name, value in headers:
        key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        joined[key] = f"{joined[key]}, {text}" if key in joined else text
    if proxies:
        remote_addr = proxies.client(remote_addr, joined.get("x-forwarded-for"))
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(sys.intern(key), value)  # (a session keeps its query: names shared)
    # (the path is the same for every client of a transport: one string)
    return Handshake(transport=transport, path=sys.intern(parts.path or "/"), headers=joined,
                     query=query, remote_addr=remote_addr)


def peer_address(stream: object) -> str | None:
    """The IP address of a stream's peer, if it is a socket."""
    socket = getattr(stream, "socket", None)
    try:
        peer = socket.getpeername() if socket is not None else None
    except OSError:
        return None
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


__all__ = ["Handshake", "Transport", "from_request", "peer_address"]
