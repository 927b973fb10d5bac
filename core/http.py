"""The HTTP API (quart-trio, served by hypercorn on the same port).

``GET /health``, ``GET /ready``, ``GET /metrics`` (Prometheus),
``GET /api/v1/stats`` and ``POST /api/v1/emit`` (API key), plus the routes of
the plugins' blueprints. Errors are JSON ``{"code", "message", "field"?}``.

For plugins' routes (also exported from :mod:`switchboard.core`):
:func:`require_api_key`, :func:`request_api_key`, :func:`api_key_tenant`,
:func:`api_key_tenant_allowed`, :func:`read_json`, :func:`structure_body`,
:func:`error_response` and :func:`switchboard` (the :class:`App`). A
:class:`ClientError` raised in a route is answered as JSON with the status of
its code (:data:`ERROR_STATUS`; 400 for any other), a database that cannot
be reached 503 ``store_unavailable``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import attrs
from quart import Blueprint, Response, current_app, g, jsonify, request
from quart.routing import QuartRule
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .apidocs import AUTH_ATTRIBUTE, asyncapi_document, docs_page, documented, openapi_document
from .broker import BrokerUnavailable, Publication
from .config import ApiKey
from .errors import INVALID_PAYLOAD, ClientError, server_failure
from .events import structure_payload
from .hub import cluster_stats
from .profiles import Profile
from .protocol import jsontext
from .rooms import ALL_TENANTS, check_room_name, tenant_room, user_room
from .store import StoreUnavailable
from .validators import check_identifier

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "ERROR_STATUS",
    "api_key_tenant",
    "api_key_tenant_allowed",
    "error_response",
    "read_json",
    "request_api_key",
    "require_api_key",
    "structure_body",
    "switchboard",
]

#: HTTP status of a :class:`ClientError` raised in a route, by code (else 400).
ERROR_STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
                "payload_too_large": 413}
P = ParamSpec("P")
R = TypeVar("R")


def switchboard() -> App:
    """The :class:`App` behind the current request."""
    app: App = current_app.extensions["switchboard"]
    return app


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    """A JSON error answer ``{"code", "message", **extra}`` with ``status``
    (raising :class:`ClientError` does the same with the status of its code)."""
    response = jsonify({"code": code, "message": message, **extra})
    response.status_code = status
    return response


def find_api_key(keys: Iterable[ApiKey], presented: str) -> ApiKey | None:
    """The configured key equal to ``presented`` (compared in constant time)."""
    found = None
    for key in keys:
        if hmac.compare_digest(key.key.encode(), presented.encode()):
            found = key
    return found


def presented_key(x_api_key: str, authorization: str) -> str:
    """The API key of a request: ``X-API-Key``, else ``Authorization: Bearer``."""
    if x_api_key:
        return x_api_key
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return ""


def _find_key(presented: str) -> ApiKey | None:
    return find_api_key(switchboard().config.api_keys, presented)


def request_api_key() -> ApiKey:
    """The configured API key the current request presented (in a view behind
    :func:`require_api_key`): its ``name`` and the ``tenant`` it may use."""
    key: ApiKey = g.api_key
    return key


def api_key_tenant_allowed(tenant: str) -> bool:
    """Whether the current request's API key may act on ``tenant`` (a key for
    every tenant, ``*``, or for that one)."""
    return request_api_key().tenant in ("*", tenant)


def api_key_tenant(given: str | None) -> str:
    """The tenant a request acts on: ``given`` (from its body or query), else
    the tenant of a tenant-scoped API key. Raises :class:`ClientError`:
    ``invalid_payload`` (field ``tenant``) when there is none or it is not an
    identifier (an empty ``?tenant=`` too), ``forbidden`` when the key may not
    use it."""
    return tenant_for_key(request_api_key(), given)


def tenant_for_key(key: ApiKey, given: str | None) -> str:
    """:func:`api_key_tenant` for a request that presented ``key``."""
    tenant = given if given is not None else (key.tenant if key.tenant != "*" else None)
    if tenant is None:
        raise ClientError(INVALID_PAYLOAD, "tenant: required", field="tenant")
    if (problem := check_identifier(tenant)) is not None:
        raise ClientError(INVALID_PAYLOAD, f"tenant: {problem}", field="tenant")
    if key.tenant not in ("*", tenant):
        raise ClientError("forbidden", f"this API key may not use tenant {tenant!r}")
    return tenant


def require_api_key(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Response]]:
    """Allow a view only with a configured API key (``Authorization: Bearer`` or
    ``X-API-Key``); the key is in ``quart.g.api_key``."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        presented = presented_key(request.headers.get("X-API-Key", ""),
                                  request.headers.get("Authorization", ""))
        key = _find_key(presented) if presented else None
        if key is None:
            return error_response(401, "unauthorized", "a valid API key is required")
        g.api_key = key
        return await view(*args, **kwargs)

    setattr(wrapper, AUTH_ATTRIBUTE, "api_key")  # (for the OpenAPI document)
    return wrapper


@attrs.frozen
class EmitRequest:
    """One event to publish: to ``user`` (their every session), to ``room``,
    or, with neither, to every session of ``tenant`` (``*``: of every tenant)."""

    event: str
    tenant: str
    data: Any = None
    user: str | None = None
    room: str | None = None


#: ``POST /api/v1/emit`` takes one event or a list of them.
EMIT_BODY = {"anyOf": [{"x-type": EmitRequest},
                       {"type": "array", "items": {"x-type": EmitRequest}}]}


async def read_json() -> Any:
    """The current request's body as JSON; ``invalid_json`` (400) if it is not."""
    try:
        return jsontext.loads(await request.get_data(as_text=False))
    except (ValueError, UnicodeDecodeError):
        raise ClientError("invalid_json", "request body must be JSON") from None


def structure_body(data: Any, cls: type[R], prefix: str = "") -> R:
    """A request body (a JSON object) as an instance of the attrs class ``cls``,
    or :class:`ClientError` ``invalid_payload`` (400) naming the first bad
    field; the same as :func:`~switchboard.core.structure_payload`."""
    return structure_payload(data, cls, prefix)


def bound_profiles(app: App) -> list[Profile]:
    """The compatibility profiles config binds to a namespace or the WebSocket path."""
    names = {*app.config.socketio.profiles.values(), app.config.server.ws_profile}
    return [app.plugins.profiles[name] for name in sorted(names) if name]


def check_profile_payload(profile: Profile, req: EmitRequest, prefix: str) -> None:
    """An emit's data must be translatable by every bound profile (a frontend
    would get nothing otherwise): ``invalid_payload`` naming ``data.FIELD``."""
    try:
        profile.check_out(req.event, req.data)
    except ClientError as exc:
        field = f"{prefix}data" + (f".{exc.field}" if exc.field else "")
        message = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
        raise ClientError(INVALID_PAYLOAD, f"{field}: {message} "
                          f"(for the {profile.name} profile)", field=field,
                          profile=profile.name) from None


async def publish_emits(app: App, key: ApiKey, body: Any) -> int:
    """``POST /api/v1/emit``: validate every emit, then publish them in order.

    Raises :class:`ClientError` (``forbidden`` for another tenant than the
    key's); nothing is published unless all are valid.
    """
    items = body if isinstance(body, list) else [body]
    limit = app.config.http.max_emit_items
    if len(items) > limit:
        raise ClientError("too_many_events", f"at most {limit} events per request",
                          max=limit)
    requests = [structure_body(item, EmitRequest, f"{i}" if isinstance(body, list) else "")
                for i, item in enumerate(items)]
    for req in requests:
        if key.tenant not in ("*", req.tenant):
            raise ClientError("forbidden",
                              f"this API key may not publish to tenant {req.tenant!r}")
        if req.user is not None and req.room is not None:
            raise ClientError(INVALID_PAYLOAD, "give 'user' or 'room', not both", field="room")
        if req.tenant == ALL_TENANTS and (req.user is not None or req.room is not None):
            raise ClientError(INVALID_PAYLOAD, "a publish to every tenant (tenant '*') goes "
                              "to each tenant's room: no 'user' or 'room'",
                              field="user" if req.user is not None else "room")
        if req.room is not None:
            check_room_name(req.room)
    profiles = bound_profiles(app)
    for i, req in enumerate(requests):
        for profile in profiles:
            check_profile_payload(profile, req, f"{i}." if isinstance(body, list) else "")
    publications = [
        Publication(req.tenant, user_room(req.user) if req.user is not None
                    else req.room if req.room is not None
                    else ALL_TENANTS if req.tenant == ALL_TENANTS else tenant_room(req.tenant),
                    req.event, req.data)
        for req in requests]
    if len(publications) == 1:
        p = publications[0]
        await app.hub.publish(p.tenant, p.room, p.event, p.data)
    else:  # in order, in one go (one round trip to Redis)
        await app.hub.publish_many(publications)
    return len(requests)


class _Rule(QuartRule):
    """A route whose URL builders are made when a URL is first built.

    werkzeug generates and compiles Python source for two builder functions per
    route as the route is added, which is most of the cost of starting a server
    (the test harness starts hundreds); the server itself never builds URLs.
    """

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        built: Callable[..., tuple[str, str]] | None = None

        def build(rule: _Rule, *args: Any, **kwargs: Any) -> tuple[str, str]:
            nonlocal built
            if built is None:
                built = QuartRule._compile_builder(rule, append_unknown).__get__(rule, None)
            return built(*args, **kwargs)

        return build


class _QuartTrio(QuartTrio):
    url_rule_class = _Rule  # type: ignore[assignment]  # quart does the same


def create_http_app(app: App, blueprints: Iterable[Blueprint] = ()) -> QuartTrio:
    http = _QuartTrio("switchboard.core.http")
    http.extensions["switchboard"] = app
    http.config["MAX_CONTENT_LENGTH"] = app.config.http.max_body

    @http.get("/health")
    @documented("Liveness: the process answers", responses={200: "`{status: ok}`"})
    async def health() -> Any:
        return {"status": "ok"}

    @http.get("/ready")
    @documented("Readiness: accepting connections, the broker answering", responses={
        200: "`{status: ready}`", 503: "`shutting_down`, or `degraded` (broker down)"})
    async def ready() -> Any:
        if switchboard().shutting_down:
            return error_response(503, "shutting_down", "the server is shutting down")
        if not switchboard().hub.broker.available:
            return error_response(503, "degraded", "the broker (Redis) is not answering: "
                                  "this node serves its own connections only")
        return {"status": "ready"}

    @http.get("/metrics")
    @documented("Prometheus metrics", responses={200: ("the metrics, text format 0.0.4",
                                                       str)})
    async def metrics() -> Response:
        return Response(switchboard().metrics.render(),
                        content_type="text/plain; version=0.0.4; charset=utf-8")

    @http.get("/api/v1/stats")
    @documented("Connections, rooms and users online, per tenant and node (a tenant's "
                "key sees its tenant)", responses={200: "`{tenants, nodes}`"})
    @require_api_key
    async def stats() -> Any:
        data = await cluster_stats(switchboard().hub)
        key: ApiKey = g.api_key
        if key.tenant != "*":
            tenants = data["tenants"]
            empty = {"connections": 0, "rooms": 0, "users_online": 0}
            data = {"tenants": {key.tenant: tenants.get(key.tenant, empty)},
                    "nodes": {node: {"tenants": {key.tenant: report.get("tenants", {}).get(
                        key.tenant, empty)}} for node, report in data["nodes"].items()}}
        return data

    @http.post("/api/v1/emit")
    @documented(body=EMIT_BODY, responses={
        202: ("published (all of them, or none when one is refused)",
              {"type": "object", "required": ["published"],
               "properties": {"published": {"type": "integer"}}}),
        403: "the key may not publish to that tenant",
        413: "`payload_too_large`"})
    @require_api_key
    async def emit() -> Any:
        """Publish one event, or a JSON list of them, to a user, a room or a tenant."""
        published = await publish_emits(switchboard(), g.api_key, await read_json())
        return {"published": published}, 202

    @http.errorhandler(ClientError)
    async def client_error(exc: ClientError) -> Response:
        app.metrics.client_error(exc.code)
        status = ERROR_STATUS.get(exc.code, 400)
        return error_response(status, exc.code, exc.message,
                              **({"field": exc.field} if exc.field else {}), **exc.extra)

    @http.errorhandler(StoreUnavailable)
    @http.errorhandler(BrokerUnavailable)
    async def store_unavailable(exc: StoreUnavailable | BrokerUnavailable) -> Response:
        error = server_failure(exc, f"{request.method} {request.path}")
        app.metrics.client_error(error.code)
        response = error_response(503, error.code, error.message)
        response.headers["Retry-After"] = "1"
        return response

    @http.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or code)

    documents: dict[str, Any] = {}

    def document(name: str) -> Any:
        if not documents:  # made once, when first asked for: every route is there
            documents["openapi"] = openapi_document(http, app)
            documents["asyncapi"] = asyncapi_document(app)
            documents["page"] = docs_page(documents["openapi"], documents["asyncapi"])
        return documents[name]

    @http.get("/api/openapi.json")
    @documented("This document: OpenAPI 3.1 of every HTTP route",
                responses={200: "the OpenAPI document"})
    async def openapi() -> Any:
        return document("openapi")

    @http.get("/api/asyncapi.json")
    @documented("AsyncAPI 3.0 of every socket event: payloads, acks, rooms, plugins "
                "and profiles", responses={200: "the AsyncAPI document"})
    async def asyncapi() -> Any:
        return document("asyncapi")

    @http.get("/api/docs")
    @documented("Both documents as a page", responses={200: ("an HTML page", "text/html")})
    async def api_docs() -> Response:
        return Response(document("page"), content_type="text/html; charset=utf-8")

    for blueprint in [*blueprints, *app.plugins.blueprints()]:
        http.register_blueprint(blueprint)
    return http
