"""The backend bridge: an existing backend decides, over HTTP, in any language.

- Connect proxy (``connect_url``): a connection without a token is POSTed
  there (headers and cookies of an allow-list, query, Socket.IO ``auth``,
  transport, namespace); the answer says who it is (user, tenant, role,
  expiry, rooms to join, data for plugins) or refuses it with a code.
- Join proxy (``join_url``, ``join_rooms`` patterns): the backend says whether
  this user may join that room.
- Event proxy (``event_url``, ``events`` patterns): client events no plugin
  handles are forwarded; the answer is the client's ack and may list events
  to publish in the client's tenant.

Every call is bounded: ``timeout`` seconds (waiting for one of the
``max_in_flight`` slots included), and a backend that is down, slow, or
answers anything but the documented JSON gives the client a clear error
(``backend_unavailable``, ``backend_error``), never a hang. Connect and join
answers can be kept ``cache_seconds`` per credential. See
docs/backend-bridge.md for the request and answer shapes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from typing import Any

import attrs
import httpx
import trio
from switchboard.core import (
    App,
    Args,
    AuthError,
    ClientError,
    Handshake,
    Identity,
    Session,
    check_identifier,
    hookimpl,
    is_room_name,
    tenant_room,
    user_room,
)
from switchboard.core.protocol import jsontext

log = logging.getLogger("switchboard.proxy")
#: Answers kept at most, per kind (connect, join).
CACHE_SIZE = 10_000


@attrs.frozen
class ProxySettings:
    #: Where connections without a token are POSTed to learn who they are.
    connect_url: str = ""
    #: Where joins of rooms matching ``join_rooms`` are POSTed for a verdict.
    join_url: str = ""
    join_rooms: list[str] = attrs.Factory(list)
    #: Where client events matching ``events`` that no plugin handles go.
    event_url: str = ""
    events: list[str] = attrs.Factory(list)
    #: Handshake headers forwarded to the connect proxy (names, any case).
    forward_headers: list[str] = attrs.Factory(
        lambda: ["authorization", "origin", "user-agent", "x-forwarded-for"])
    #: Cookies forwarded to the connect proxy (``["*"]``: all of them).
    forward_cookies: list[str] = attrs.Factory(list)
    #: Headers sent with every call (an API key the backend checks, say).
    headers: dict[str, str] = attrs.Factory(dict)
    #: Seconds a call may take, waiting for a free slot included.
    timeout: float = 3.0
    #: Calls to the backend at once, at most.
    max_in_flight: int = 64
    #: Seconds a connect or join answer is kept for the same request (0: none).
    cache_seconds: float = 0.0

    def __attrs_post_init__(self) -> None:
        for name in ("connect_url", "join_url", "event_url"):
            url = getattr(self, name)
            if url and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name}: must be an http(s) URL")
        if self.timeout <= 0 or self.max_in_flight < 1 or self.cache_seconds < 0:
            raise ValueError("timeout must be positive, max_in_flight at least 1, "
                             "cache_seconds not negative")
        if self.join_rooms and not self.join_url:
            raise ValueError("join_rooms: set join_url too")
        if self.events and not self.event_url:
            raise ValueError("events: set event_url too")


class BackendDown(Exception):
    """The backend could not be asked, or did not answer in time."""


class BackendError(Exception):
    """The backend answered something that is not the documented JSON."""


class _Cache:
    """Answers by key, each kept ``ttl`` seconds (Trio's clock), at most CACHE_SIZE."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] <= trio.current_time():
            del self._items[key]
            return None
        return found[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (trio.current_time() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > CACHE_SIZE:
            self._items.popitem(last=False)


def _key(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _binary_at(value: Any, path: str = "") -> str | None:
    """Where ``value`` (a client event's data) holds bytes, as a field path
    (``""`` for the whole of it), or None when it holds none."""
    if isinstance(value, bytes | bytearray | memoryview):
        return path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple | Args):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _binary_at(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class ProxyPlugin:
    app: App
    settings: ProxySettings

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._slots: trio.CapacityLimiter | None = None
        self._connects = _Cache(0)
        self._joins = _Cache(0)
        #: The HTTP transport of the backend client (None: httpx's own; tests
        #: answer in-process so that the mock clock rules their timeouts).
        self.transport: httpx.AsyncBaseTransport | None = None

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return ProxySettings

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        s = self.settings
        self._connects = _Cache(s.cache_seconds)
        self._joins = _Cache(s.cache_seconds)
        if s.connect_url or s.join_url or s.event_url:
            self._slots = trio.CapacityLimiter(s.max_in_flight)
            self._client = httpx.AsyncClient(
                timeout=s.timeout, headers=s.headers, transport=self.transport,
                limits=httpx.Limits(max_connections=s.max_in_flight))

    @hookimpl
    async def switchboard_shutdown(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # -- calling the backend -----------------------------------------------

    async def _call(self, url: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST ``body``; the answer's JSON object. :class:`BackendDown` when the
        backend cannot be asked in time, :class:`BackendError` for anything
        but a JSON object with ``result`` or ``error``."""
        assert self._client is not None and self._slots is not None
        try:
            with trio.fail_after(self.settings.timeout):
                async with self._slots:
                    response = await self._client.post(url, json=body)
        except trio.TooSlowError:
            raise BackendDown(f"{url} did not answer within {self.settings.timeout} s") \
                from None
        except httpx.HTTPError as exc:
            raise BackendDown(f"{url}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise BackendDown(f"{url} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise BackendError(f"{url} answered HTTP {response.status_code}")
        try:
            answer = jsontext.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise BackendError(f"{url} answered something that is not JSON") from None
        if not isinstance(answer, dict) or not ({"result", "error"} & answer.keys()):
            raise BackendError(f"{url} answered JSON without 'result' or 'error'")
        return answer

    @staticmethod
    def _refusal(answer: Mapping[str, Any], url: str) -> tuple[str, str, int]:
        """``(code, message, status)`` of an answer's ``error``."""
        error = answer.get("error")
        if not isinstance(error, dict):
            raise BackendError(f"{url}: 'error' must be an object")
        code, message = error.get("code", "forbidden"), error.get("message", "refused")
        status = error.get("status", 403)
        if not (isinstance(code, str) and isinstance(message, str) and code
                and isinstance(status, int) and 400 <= status <= 499):
            raise BackendError(f"{url}: 'error' needs a string code and message "
                               "(and a 4xx status)")
        return code[:100], message[:500], status

    # -- connect -----------------------------------------------------------

    @hookimpl
    async def switchboard_authenticate(self, handshake: Handshake) -> Identity | None:
        s = self.settings
        if not s.connect_url:
            return None
        body = self._connect_request(handshake)
        key = _key(body)
        cached = self._connects.get(key)
        if cached is not None:
            return self._identity(cached, s.connect_url)
        try:
            answer = await self._call(s.connect_url, body)
            if answer.get("error") is not None:
                code, message, status = self._refusal(answer, s.connect_url)
                raise AuthError(message, code=code, status=status)
            result = answer.get("result")
            if result is None:
                return None
            identity = self._identity(result, s.connect_url)
        except BackendDown as exc:
            log.warning("connect proxy: %s", exc)
            raise AuthError("the backend did not answer; try again later",
                            code="backend_unavailable", status=503) from None
        except BackendError as exc:
            log.warning("connect proxy: %s", exc)
            raise AuthError("the backend's answer could not be understood",
                            code="backend_error", status=502) from None
        self._connects.put(key, result)
        return identity

    def _connect_request(self, handshake: Handshake) -> dict[str, Any]:
        s = self.settings
        wanted = {name.lower() for name in s.forward_headers} - {"cookie"}
        cookies = handshake.cookies
        if "*" not in s.forward_cookies:
            cookies = {k: v for k, v in cookies.items() if k in s.forward_cookies}
        return {
            "transport": handshake.transport,
            "path": handshake.path,
            "namespace": handshake.namespace,
            "headers": {k: v for k, v in handshake.headers.items() if k in wanted},
            "cookies": cookies,
            "query": dict(handshake.query),
            "auth": dict(handshake.auth) if handshake.auth is not None else None,
            "remote_addr": handshake.remote_addr,
        }

    def _identity(self, result: Any, url: str) -> Identity:
        """The identity a connect answer's ``result`` describes (checked)."""
        if not isinstance(result, dict):
            raise BackendError(f"{url}: 'result' must be an object or null")
        default_tenant = self.app.config.auth.default_tenant or None
        fields: dict[str, str] = {}
        for name, default in (("user", None), ("tenant", default_tenant), ("role", "")):
            value = result.get(name, default)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or (name != "role" and not value):
                raise BackendError(f"{url}: 'result.{name}' must be a string")
            if value and (problem := check_identifier(value)) is not None:
                raise BackendError(f"{url}: 'result.{name}' {problem}")
            fields[name] = value
        expires_at = result.get("expires_at")
        if expires_at is not None and (isinstance(expires_at, bool)
                                       or not isinstance(expires_at, int | float)):
            raise BackendError(f"{url}: 'result.expires_at' must be a number")
        rooms = result.get("rooms", [])
        if not isinstance(rooms, list) or not all(is_room_name(r) for r in rooms):
            raise BackendError(f"{url}: 'result.rooms' must be a list of room names")
        data = result.get("data", {})
        if not isinstance(data, dict):
            raise BackendError(f"{url}: 'result.data' must be an object")
        return Identity(fields["user"], fields["tenant"], fields["role"],
                        float(expires_at) if expires_at is not None else None,
                        rooms=tuple(rooms), data=data)

    # -- join --------------------------------------------------------------

    @hookimpl
    async def switchboard_authorize_join(self, session: Session, room: str) -> bool | None:
        s = self.settings
        if not s.join_url or not _matches(room, s.join_rooms):
            return None
        body = {"room": room, **self._who(session)}
        key = _key(body)
        cached = self._joins.get(key)
        if cached is not None:
            return bool(cached)
        try:
            answer = await self._call(s.join_url, body)
            if answer.get("error") is not None:
                code, message, _ = self._refusal(answer, s.join_url)
                raise ClientError(code, message, room=room)
            result = answer.get("result")
            allow = result.get("allow") if isinstance(result, dict) else None
            if not isinstance(allow, bool):
                raise BackendError(f"{s.join_url}: 'result.allow' must be true or false")
        except BackendDown as exc:
            log.warning("join proxy: %s", exc)
            raise ClientError("backend_unavailable", "the backend did not answer; try again "
                              "later", room=room, retry_after=1) from None
        except BackendError as exc:
            log.warning("join proxy: %s", exc)
            raise ClientError("backend_error", "the backend's answer could not be "
                              "understood", room=room) from None
        self._joins.put(key, allow)
        return allow

    @staticmethod
    def _who(session: Session) -> dict[str, Any]:
        return {"user": session.user_id, "tenant": session.tenant_id, "role": session.role,
                "session": session.id, "data": session.identity.data}

    # -- events ------------------------------------------------------------

    @hookimpl
    def switchboard_unhandled_event(self, session: Session, event: str,
                                    data: Any) -> Awaitable[Any] | None:
        s = self.settings
        if not s.event_url or not _matches(event, s.events):
            return None
        return self._forward(session, event, data)

    async def _forward(self, session: Session, event: str, data: Any) -> Any:
        url = self.settings.event_url
        binary = _binary_at(data)
        if binary is not None:  # (Socket.IO attachments: JSON cannot carry them)
            raise ClientError("invalid_payload", f"{binary or 'data'}: binary data cannot be "
                              "forwarded to the backend (send it as base64 text)",
                              field=binary or "data", event=event)
        try:
            answer = await self._call(url, {"event": event, "payload": data,
                                            **self._who(session)})
            if answer.get("error") is not None:
                code, message, _ = self._refusal(answer, url)
                raise ClientError(code, message, event=event)
            publications = self._publications(answer.get("publish", []), session, url)
        except BackendDown as exc:
            log.warning("event proxy: %s", exc)
            raise ClientError("backend_unavailable", "the backend did not answer; try again "
                              "later", event=event, retry_after=1) from None
        except BackendError as exc:
            log.warning("event proxy: %s", exc)
            raise ClientError("backend_error", "the backend's answer could not be "
                              "understood", event=event) from None
        for room, name, payload in publications:
            await self.app.publish(session.tenant_id, room, name, payload)
        return answer.get("result")

    @staticmethod
    def _publications(items: Any, session: Session,
                      url: str) -> list[tuple[str, str, Any]]:
        """``(room, event, data)`` of an answer's ``publish`` list, all within the
        session's tenant (checked before anything is published)."""
        if not isinstance(items, list):
            raise BackendError(f"{url}: 'publish' must be a list")
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                raise BackendError(f"{url}: each of 'publish' needs a string 'event'")
            tenant = item.get("tenant", session.tenant_id)
            if tenant != session.tenant_id:
                raise BackendError(f"{url}: 'publish' may not leave the session's tenant")
            if "room" in item and "user" in item:
                raise BackendError(f"{url}: 'publish' takes 'room' or 'user', not both")
            if "user" in item:
                user = item["user"]
                if not isinstance(user, str) or check_identifier(user) is not None:
                    raise BackendError(f"{url}: 'publish.user' must be a user id")
                room = user_room(user)
            elif "room" in item:
                room = item["room"]
                if not is_room_name(room):
                    raise BackendError(f"{url}: 'publish.room' must be a room name")
            else:
                room = tenant_room(session.tenant_id)
            out.append((room, item["event"], item.get("data")))
        return out
