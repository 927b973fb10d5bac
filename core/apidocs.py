"""The API documents: OpenAPI 3.1 of the HTTP routes, AsyncAPI 3.0 of the socket
events, both generated from what the server runs.

- Request bodies, query strings and event payloads are described by JSON
  Schema made from the same attrs classes (and their validators) that
  :func:`~switchboard.core.structure_body` and the event dispatch structure
  them with: a field without a default is required, an unknown key is
  refused (``additionalProperties: false``), :func:`identifier`,
  :func:`max_length`, :func:`row_id` and attrs' ``in_``, ``ge``... become
  ``minLength``, ``maxLength``, ``minimum``, ``enum``...
- A route says what it takes and answers with :func:`documented`; whether it
  needs an API key is seen from :func:`~switchboard.core.require_api_key`.
  Every route of the app (core, plugins' blueprints) is in the document; one
  without a declaration is marked ``x-undeclared: true``.
- A field whose type says little (``Any``, checked by the class) may say
  more with ``attrs.field(metadata={"json_schema": {...}})``.
- An event says its payload with its payload class, or with ``schema=`` (a
  JSON Schema) for events whose payload has no class; ``ack=`` the answer of
  an incoming event; ``rooms=`` where an outgoing one is published.

Served at ``/api/openapi.json``, ``/api/asyncapi.json`` and, as a page,
``/api/docs``; printed by ``switchboard openapi`` / ``switchboard asyncapi``.
"""

from __future__ import annotations

import html
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from .validators import MAX_ID_LENGTH, MAX_ROW_ID

if TYPE_CHECKING:
    from quart import Quart

    from .app import App
    from .events import EventSpec
    from .profiles import Profile

__all__ = [
    "ERROR_SCHEMA",
    "IDENTIFIER",
    "RouteDoc",
    "SchemaRegistry",
    "asyncapi_document",
    "documented",
    "object_schema",
    "openapi_document",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Name of the attribute :func:`documented` sets on a view.
DOC_ATTRIBUTE = "__switchboard_api__"
#: Name of the attribute :func:`~switchboard.core.require_api_key` sets on a view.
AUTH_ATTRIBUTE = "__switchboard_auth__"

#: Every error answer (HTTP) and error event (sockets): ``{code, message, field?}``.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "Stable machine-readable code "
                                                  "(invalid_payload, not_found...)."},
        "message": {"type": "string", "description": "What went wrong, for a person."},
        "field": {"type": "string", "description": "Dotted path of the refused field."},
    },
}

#: A JSON Schema, or a Python type (an attrs class...) to make one from.
SchemaLike = Any


# -- JSON Schema from attrs classes ----------------------------------------------------


def object_schema(*required: str, optional: Iterable[str] = (), **typed: SchemaLike
                  ) -> dict[str, Any]:
    """A JSON object schema for a payload without an attrs class: ``required``
    and ``optional`` names (any JSON value), ``typed`` names with a type or
    schema (required unless also in ``optional``)::

        object_schema("leadId", "pipelineId", version=int, optional=["by"])
    """
    optional = set(optional)
    names = [*required, *optional, *typed]
    properties: dict[str, Any] = {name: {} for name in names}
    properties.update({name: {"x-type": tp} for name, tp in typed.items()})
    needed = [n for n in dict.fromkeys([*required, *typed]) if n not in optional]
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if needed:
        schema["required"] = needed
    return schema


class SchemaRegistry:
    """Turns Python types into JSON Schema, keeping each attrs class once under
    ``components`` and referring to it (``{"$ref": prefix + name}``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.schemas: dict[str, dict[str, Any]] = {}
        self._names: dict[type, str] = {}

    def of(self, tp: SchemaLike) -> dict[str, Any]:
        """The schema of ``tp``: a type, or a JSON Schema (a mapping) as it is
        (its ``x-type`` members are types to describe)."""
        if isinstance(tp, Mapping):
            return self._resolve(dict(tp))
        return self._type(tp)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "x-type" in schema:
            extra = {k: v for k, v in schema.items() if k != "x-type"}
            return {**self._type(schema["x-type"]), **extra}
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "properties" and isinstance(value, Mapping):
                out[key] = {name: self.of(sub) for name, sub in value.items()}
            elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
                out[key] = self.of(value)
            elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
                out[key] = [self.of(sub) for sub in value]
            else:
                out[key] = value
        return out

    def _type(self, tp: Any) -> dict[str, Any]:
        if tp is Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if isinstance(tp, type) and attrs.has(tp):
            return {"$ref": self.prefix + self._register(tp)}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Literal:
            schema: dict[str, Any] = {"enum": list(args)}
            kinds = {type(a) for a in args}
            if len(kinds) == 1:
                schema.update(self._type(kinds.pop()))
            return schema
        if origin is typing.Union or origin is types.UnionType:
            options = [a for a in args if a is not type(None)]
            inner = self._type(options[0]) if len(options) == 1 else {
                "anyOf": [self._type(a) for a in options]}
            if len(options) < len(args):
                return {"anyOf": [inner, {"type": "null"}]}
            return inner
        if origin in (list, tuple, set, frozenset) or origin is Sequence \
                or (isinstance(origin, type) and issubclass(origin, Sequence)
                    and origin is not str):
            if origin is tuple and args and args[-1] is not Ellipsis:
                return {"type": "array", "prefixItems": [self._type(a) for a in args],
                        "minItems": len(args), "maxItems": len(args)}
            return {"type": "array", **({"items": self._type(args[0])} if args else {})}
        if origin in (dict, Mapping) or (isinstance(origin, type)
                                         and issubclass(origin, Mapping)):
            return {"type": "object",
                    **({"additionalProperties": self._type(args[1])} if len(args) == 2 else {})}
        if tp in (list, tuple):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        return {}

    def _register(self, cls: type) -> str:
        if cls in self._names:
            return self._names[cls]
        name = cls.__name__
        if name in self.schemas:  # another class of that name: qualify it
            module = cls.__module__.rsplit(".", 2)
            name = f"{module[-2] if module[-1] in ('payloads', 'http') else module[-1]}." \
                   f"{cls.__name__}"
            base, n = name, 2
            while name in self.schemas:
                name, n = f"{base}{n}", n + 1
        self._names[cls] = name
        self.schemas[name] = {}  # (a class that refers to itself)
        self.schemas[name] = self._class(cls)
        return name

    def _class(self, cls: type) -> dict[str, Any]:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # a name only known to the type checker
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            if not field.init:
                continue
            name = field.alias or field.name
            schema = self._type(hints.get(field.name, field.type if not isinstance(
                field.type, str) else Any))
            schema = _constrain(schema, field.validator)
            schema.update(field.metadata.get("json_schema", {}))
            if field.default is attrs.NOTHING:
                required.append(name)
            elif not isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                default = field.default
                if isinstance(default, str | int | float | bool) or default is None:
                    schema = {**schema, "default": default}
            properties[name] = schema
        out: dict[str, Any] = {"type": "object", "properties": properties,
                               "additionalProperties": False}
        if required:
            out["required"] = required
        doc = inspect.getdoc(cls)
        if doc and not doc.startswith(f"{cls.__name__}("):
            out["description"] = doc
        return out


def _constrain(schema: dict[str, Any], validator: Any) -> dict[str, Any]:
    """``schema`` narrowed by what an attrs validator checks (the ones it can say)."""
    if validator is None:
        return schema
    if isinstance(validator, list | tuple):
        for one in validator:
            schema = _constrain(schema, one)
        return schema
    kind = type(validator).__name__
    if kind == "_AndValidator":
        return _constrain(schema, list(validator._validators))
    if kind == "_OptionalValidator":
        options = schema.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            inner = rest[0] if len(rest) == 1 else {"anyOf": rest}
            return {"anyOf": [_constrain(inner, validator.validator), {"type": "null"}],
                    **{k: v for k, v in schema.items() if k != "anyOf"}}
        return _constrain(schema, validator.validator)
    extra: dict[str, Any] = dict(getattr(validator, "json_schema", None) or {})
    if kind == "_InValidator":
        extra["enum"] = list(validator.options)
    elif kind == "_NumberValidator":
        key = {">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum",
               "<": "exclusiveMaximum"}.get(validator.compare_op)
        if key:
            extra[key] = validator.bound
    elif kind == "_MaxLengthValidator":
        extra[_length_key(schema, "max")] = validator.max_length
    elif kind == "_MinLengthValidator":
        extra[_length_key(schema, "min")] = validator.min_length
    return {**schema, **extra}


def _length_key(schema: dict[str, Any], which: str) -> str:
    kind = schema.get("type")
    if kind == "array":
        return f"{which}Items"
    if kind == "object":
        return f"{which}Properties"
    return f"{which}Length"


#: An identifier (:func:`~switchboard.core.identifier`): a tenant, user,
#: conversation... as a query or path parameter.
IDENTIFIER: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                              "pattern": "^[^\\x00-\\x1f\\x7f]*$"}


# the validators of switchboard.core.validators say what they check
def _describe_validators() -> None:
    from . import validators

    validators.identifier.json_schema = {  # type: ignore[attr-defined]
        k: v for k, v in IDENTIFIER.items() if k != "type"}
    validators.text.json_schema = {"pattern": "^[^\\x00]*$"}  # type: ignore[attr-defined]
    validators.row_id.json_schema = {  # type: ignore[attr-defined]
        "minimum": 0, "maximum": MAX_ROW_ID}


_describe_validators()


# -- routes ---------------------------------------------------------------------------


@attrs.frozen
class RouteDoc:
    """What :func:`documented` says of a route."""

    summary: str = ""
    description: str = ""
    #: The request body: an attrs class or a JSON Schema.
    body: SchemaLike = None
    #: Media type of a body that is not JSON (a provider's raw webhook).
    body_media_type: str = "application/json"
    body_required: bool = True
    #: Query parameters: name -> type or JSON Schema (all optional, unless in
    #: ``required_query``).
    query: Mapping[str, SchemaLike] = attrs.Factory(dict)
    required_query: tuple[str, ...] = ()
    #: Answers: status -> description, or (description, schema); a schema of
    #: ``str`` is a text answer, of ``bytes`` a binary one, a string is the
    #: media type of a text answer (``"text/html"``); errors are added (``default``: an error body).
    responses: Mapping[int, str | tuple[str, SchemaLike]] = attrs.Factory(dict)
    #: How a caller authenticates, when not with an API key (a provider's
    #: signature): said in words. ``None``: by :func:`require_api_key` or none.
    auth: str | None = None
    tags: tuple[str, ...] = ()


def documented(summary: str = "", *, description: str = "", body: SchemaLike = None,
               body_media_type: str = "application/json", body_required: bool = True,
               query: Mapping[str, SchemaLike] | None = None,
               required_query: Iterable[str] = (),
               responses: Mapping[int, str | tuple[str, SchemaLike]] | None = None,
               auth: str | None = None, tags: Iterable[str] = ()) -> Callable[[F], F]:
    """Declare what a route takes and answers, for the OpenAPI document::

        @bp.post("/api/v1/things")
        @documented("Create a thing", body=CreateThing,
                    responses={201: ("the thing", Thing), 409: "it exists"})
        @require_api_key
        async def create() -> Any: ...

    ``body`` is the attrs class the route gives :func:`structure_body` (or a
    JSON Schema); ``query`` its query parameters. Error answers
    (``{code, message, field?}``) need not be listed: 400 is added for a
    route with a body or query, 401 for one behind an API key, and every
    other status falls under ``default``. The summary defaults to the first
    line of the view's docstring.
    """
    doc = RouteDoc(summary, description, body, body_media_type, body_required,
                   dict(query or {}), tuple(required_query), dict(responses or {}), auth,
                   tuple(tags))

    def mark(view: F) -> F:
        setattr(view, DOC_ATTRIBUTE, doc)
        return view

    return mark


_CONVERTER_SCHEMAS = {"IntegerConverter": {"type": "integer", "minimum": 0},
                      "FloatConverter": {"type": "number", "minimum": 0}}
_AUTOMATIC = {"HEAD", "OPTIONS"}


def route_operations(http: Quart) -> list[tuple[str, Any, Any]]:
    """``(method, rule, view)`` of every route of the app, without the
    methods the router adds on its own (HEAD, OPTIONS) unless declared."""
    out: list[tuple[str, Any, Any]] = []
    for rule in http.url_map.iter_rules():
        view = http.view_functions.get(rule.endpoint)
        if rule.endpoint == "static" or view is None:
            continue
        explicit = {m.upper() for m in getattr(view, "methods", None) or ()}
        for method in sorted(rule.methods or ()):
            if method in _AUTOMATIC and method not in explicit:
                continue
            out.append((method, rule, view))
    return out


def openapi_path(rule: Any) -> str:
    """``/a/<int:b>/<c>`` as OpenAPI writes it: ``/a/{b}/{c}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def openapi_document(http: Quart, app: App) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route of ``http``."""
    registry = SchemaRegistry("#/components/schemas/")
    registry.schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for method, rule, view in route_operations(http):
        doc: RouteDoc = getattr(view, DOC_ATTRIBUTE, None) or RouteDoc()
        tag = rule.endpoint.split(".", 1)[0] if "." in rule.endpoint else "core"
        tags.setdefault(tag, _tag_description(tag, app))
        path = openapi_path(rule)
        operation: dict[str, Any] = {
            "operationId": f"{rule.endpoint}.{method.lower()}",
            "tags": list(doc.tags or (tag,)),
            "summary": doc.summary or _first_line(view),
        }
        if getattr(view, DOC_ATTRIBUTE, None) is None:
            operation["x-undeclared"] = True
        if doc.description:
            operation["description"] = doc.description
        parameters = []
        converters = getattr(rule, "_converters", {})
        for name in _path_names(rule.rule):
            converter = type(converters.get(name)).__name__
            parameters.append({"name": name, "in": "path", "required": True,
                               "schema": _CONVERTER_SCHEMAS.get(converter, {"type": "string"})})
        for name, tp in doc.query.items():
            parameters.append({"name": name, "in": "query",
                               "required": name in doc.required_query,
                               "schema": registry.of(tp)})
        if parameters:
            operation["parameters"] = parameters
        if doc.body is not None and method in ("POST", "PUT", "PATCH", "DELETE"):
            operation["requestBody"] = {
                "required": doc.body_required,
                "content": {doc.body_media_type: {"schema": registry.of(doc.body)}}}
        api_key = getattr(view, AUTH_ATTRIBUTE, None) == "api_key"
        if api_key:
            operation["security"] = [{"apiKey": []}, {"bearer": []}]
        elif doc.auth:
            operation["description"] = (operation.get("description", "") +
                                        f"\n\nAuthentication: {doc.auth}").strip()
        operation["responses"] = _responses(doc, registry, api_key=api_key,
                                            takes_input=bool(parameters or doc.body))
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchboard HTTP API", "version": _version(),
                 "description": "Every HTTP route of this server, core and plugins. "
                                "Errors are JSON `{code, message, field?}`."},
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": text} for name, text in sorted(tags.items())],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(registry.schemas.items())),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "A key of `api_keys` in config."},
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "The same API key as `Authorization: Bearer KEY`."},
            },
        },
    }


def _responses(doc: RouteDoc, registry: SchemaRegistry, *, api_key: bool,
               takes_input: bool) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    out: dict[str, Any] = {}
    for status, answer in sorted(doc.responses.items()):
        description, schema = answer if isinstance(answer, tuple) else (answer, None)
        response: dict[str, Any] = {"description": description}
        if schema is str:
            response["content"] = {"text/plain": {"schema": {"type": "string"}}}
        elif isinstance(schema, str):  # a media type
            response["content"] = {schema: {"schema": {"type": "string"}}}
        elif schema is bytes:
            response["content"] = {"application/octet-stream": {
                "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}
        elif schema is not None:
            response["content"] = {"application/json": {"schema": registry.of(schema)}}
        elif status >= 400:
            response["content"] = error
        out[str(status)] = response
    if not any(200 <= s < 300 for s in doc.responses):
        out["200"] = {"description": "done", "content": {"application/json": {"schema": {}}}}
    if takes_input and "400" not in out:
        out["400"] = {"description": "a bad body or query (`invalid_json`, "
                                     "`invalid_payload` naming the `field`)", "content": error}
    if api_key and "401" not in out:
        out["401"] = {"description": "no valid API key (`unauthorized`)", "content": error}
    out["default"] = {"description": "an error (`forbidden`, `not_found`, `conflict`, "
                                     "`payload_too_large`, `store_unavailable`...)",
                      "content": error}
    return dict(sorted(out.items()))


def _path_names(rule: str) -> list[str]:
    return re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)


def _first_line(view: Any) -> str:
    doc = inspect.getdoc(view) or ""
    return doc.split("\n", 1)[0]


def _tag_description(tag: str, app: App) -> str:
    if tag == "core":
        return "The server itself: health, metrics, stats, publishing, these documents."
    if tag == "engineio":
        return "Socket.IO's Engine.IO long-polling transport."
    info = next((i for i in app.plugins.infos if i.name == tag), None)
    return f"The {tag} plugin." if info is None else f"The {tag} plugin ({info.source})."


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("switchboard")
    except Exception:
        return "0"


# -- events ---------------------------------------------------------------------------


def _key(name: str) -> str:
    """An event name as a component key (``^[a-zA-Z0-9.\\-_]+$``)."""
    return re.sub(r"[^a-zA-Z0-9.\-_]", "_", re.sub(r"[{}]", "", name.replace(":", ".")))


def _room_address(room: str) -> tuple[str, list[str]]:
    """``conversation:{id}`` and its parameters."""
    return room, re.findall(r"\{([^{}]+)\}", room)


#: Rooms every session is in, whoever published to them.
_ROOM_DOCS = {
    "user:{userId}": "Every session of one user.",
    "tenant:{tenantId}": "Every session of a tenant.",
    "tenant:{tenantId}:agents": "The sessions of a tenant's agents (roles in "
                                "`rooms.agent_roles`).",
    "session": "The one session the event answers or greets.",
}


def asyncapi_document(app: App) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every declared event, its rooms and acks,
    with the compatibility profiles that rename them."""
    registry = SchemaRegistry("#/components/schemas/")
    registry.schemas["Error"] = ERROR_SCHEMA
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    profiles = app.plugins.profiles
    connection: dict[str, Any] = {
        "address": None,
        "title": "A client's connection",
        "description": "The events a client sends, and the answers (acks) it gets: over "
                       f"the plain WebSocket at `{app.config.server.ws_path}` (JSON "
                       "envelopes `{type, data, id?}`; an `id` is answered by an `ack` "
                       "frame) or a Socket.IO namespace (an event with an ack callback).",
        "messages": {},
    }
    channels["connection"] = connection
    for _, spec in sorted(app.plugins.events.items()):
        message_key = f"{spec.direction}.{_key(spec.name)}"
        message = _message(spec, registry, profiles)
        messages[message_key] = message
        ref = {"$ref": f"#/components/messages/{message_key}"}
        if spec.direction == "in":
            connection["messages"][message_key] = ref
            operation: dict[str, Any] = {
                "action": "receive",
                "channel": {"$ref": "#/channels/connection"},
                "title": spec.name,
                "summary": spec.doc or spec.name,
                "messages": [{"$ref": f"#/channels/connection/messages/{message_key}"}],
                "tags": [{"name": spec.plugin}],
                "x-plugin": spec.plugin,
            }
            if spec.rate is not None:
                operation["x-rate-limit"] = {"rate": spec.rate.rate, "burst": spec.rate.burst}
            ack_key = f"ack.{_key(spec.name)}"
            messages[ack_key] = {
                "name": f"{spec.name} (ack)",
                "title": f"Answer to {spec.name}",
                "summary": "The ack: the handler's answer, or an error "
                           "`{code, message, field?}`.",
                "contentType": "application/json",
                "payload": {"anyOf": [_schema(spec.ack, registry),
                                      {"type": "object", "required": ["error"],
                                       "properties": {"error": {
                                           "$ref": "#/components/schemas/Error"}}}]},
            }
            connection["messages"][ack_key] = {"$ref": f"#/components/messages/{ack_key}"}
            operation["reply"] = {
                "channel": {"$ref": "#/channels/connection"},
                "messages": [{"$ref": f"#/channels/connection/messages/{ack_key}"}]}
            operations[f"receive.{_key(spec.name)}"] = operation
            continue
        for room in spec.rooms or ("session",):
            channel_key = "room." + _key(room)
            if channel_key not in channels:
                address, params = _room_address(room)
                channels[channel_key] = {
                    "address": address,
                    "title": f"Room {room}",
                    "description": _ROOM_DOCS.get(room, f"The sessions in rooms {room}."),
                    "messages": {},
                    **({"parameters": {p: {"description": f"The {p} of the room."}
                                       for p in params}} if params else {}),
                }
            channels[channel_key]["messages"][message_key] = ref
            suffix = "" if len(spec.rooms) <= 1 else "." + _key(room)
            operations[f"send.{_key(spec.name)}{suffix}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel_key}"},
                "title": spec.name,
                "summary": spec.doc or spec.name,
                "messages": [{"$ref": f"#/channels/{channel_key}/messages/{message_key}"}],
                "tags": [{"name": spec.plugin}],
                "x-plugin": spec.plugin,
            }
    ws_path = app.config.server.ws_path
    servers: dict[str, Any] = {
        "websocket": {"host": f"{app.config.server.host}:{app.config.server.port}",
                      "protocol": "ws", "pathname": ws_path,
                      "description": "Plain WebSocket, JSON envelopes `{type, data, id?}`"
                                     + _bound(app.config.server.ws_profile)},
    }
    if app.config.socketio.enabled:
        servers["socketio"] = {
            "host": f"{app.config.server.host}:{app.config.server.port}",
            "protocol": "ws", "pathname": app.config.socketio.path,
            "description": "Socket.IO v5 (Engine.IO v4: WebSocket or long-polling) for "
                           "`socket.io-client` v4; namespaces bound to profiles: " + (
                               ", ".join(f"`{ns}` → {p}" for ns, p in sorted(
                                   app.config.socketio.profiles.items())) or "none")}
    plugins = sorted({spec.plugin for spec in app.plugins.events.values()})
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Switchboard socket events",
            "version": _version(),
            "description": "Every event of this server's enabled plugins: what a client "
                           "sends (with the ack it gets) and what it receives, in which "
                           "room. `x-profiles` lists the compatibility profiles that "
                           "rename an event for an existing frontend.",
            "tags": [{"name": name, "description": f"The {name} plugin."}
                     for name in plugins],
        },
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": dict(sorted(registry.schemas.items())),
        },
        "x-profiles": {name: _profile(profile) for name, profile in sorted(profiles.items())},
    }


def _bound(profile: str) -> str:
    return f" (bound to the {profile} profile)." if profile else "."


def _schema(tp: SchemaLike, registry: SchemaRegistry) -> dict[str, Any]:
    return {} if tp is None else registry.of(tp)


def _message(spec: EventSpec, registry: SchemaRegistry,
             profiles: Mapping[str, Profile]) -> dict[str, Any]:
    if spec.args:
        payload: dict[str, Any] = {"type": "array", "description": "Every argument of the "
                                   "event (a JSON array in `data` over plain WebSocket)."}
    elif spec.payload is not None:
        payload = registry.of(spec.payload)
    elif spec.schema is not None:
        payload = registry.of(spec.schema)
    elif spec.direction == "in":
        payload = {"description": "No payload (any value is ignored)."}
    else:
        payload = {}
    message: dict[str, Any] = {
        "name": spec.name,
        "title": spec.name,
        "summary": spec.doc or spec.name,
        "contentType": "application/json",
        "payload": payload,
        "tags": [{"name": spec.plugin}],
        "x-plugin": spec.plugin,
    }
    used: dict[str, Any] = {}
    for name, profile in sorted(profiles.items()):
        if spec.direction == "in":
            names = [front for front, rule in profile.inbound.items()
                     if rule.event == spec.name]
            if names:
                used[name] = {"frontendEvents": sorted(names)}
        elif spec.name in profile.outbound:
            used[name] = {"translated": True}
    if used:
        message["x-profiles"] = used
    return message


def _profile(profile: Profile) -> dict[str, Any]:
    inbound: dict[str, Any] = {}
    for front, rule in sorted(profile.inbound.items()):
        if isinstance(rule.event, str):
            inbound[front] = {"canonical": rule.event}
        else:
            inbound[front] = {"canonical": None, "description": "handled by the profile "
                              "(several canonical actions, or a name chosen by the payload)"}
    return {"description": profile.doc, "inbound": inbound,
            "outbound": sorted(profile.outbound),
            "greets": profile.on_connect is not None}


# -- the page -------------------------------------------------------------------------


def docs_page(openapi: Mapping[str, Any], asyncapi: Mapping[str, Any]) -> str:
    """A self-contained HTML page of both documents (no script, no CDN)."""
    esc = html.escape
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           "<title>Switchboard API</title><style>",
           "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;"
           "padding:0 1rem;color:#222}code,pre{font:13px ui-monospace,monospace}"
           "pre{background:#f5f5f5;padding:.5rem;overflow:auto}"
           ".m{display:inline-block;min-width:4.5em;font-weight:bold}"
           "details{margin:.2rem 0;border-bottom:1px solid #eee}"
           "summary{cursor:pointer;padding:.2rem 0}.tag{color:#777}"
           ".key{font-size:12px;background:#eef;border-radius:3px;padding:0 .3em}"
           "</style></head><body>",
           "<h1>Switchboard API</h1>",
           "<p>The machine-readable documents: <a href='/api/openapi.json'>OpenAPI 3.1</a> "
           "(HTTP routes) and <a href='/api/asyncapi.json'>AsyncAPI 3.0</a> (socket events)."
           "</p><h2 id='http'>HTTP routes</h2>"]
    for path, methods in openapi["paths"].items():
        for method, op in methods.items():
            auth = " <span class='key'>API key</span>" if op.get("security") else ""
            out.append(f"<details><summary><span class='m'>{esc(method.upper())}</span>"
                       f"<code>{esc(path)}</code> {esc(op.get('summary', ''))}{auth} "
                       f"<span class='tag'>{esc(', '.join(op.get('tags', [])))}</span>"
                       f"</summary><pre>{esc(json.dumps(op, indent=2))}</pre></details>")
    out.append("<h2 id='events'>Socket events</h2>")
    for key, message in asyncapi["components"]["messages"].items():
        direction = {"in": "client → server", "out": "server → client",
                     "ack": "ack"}[key.split(".", 1)[0]]
        out.append(f"<details><summary><span class='m'>{esc(direction)}</span> "
                   f"<code>{esc(message['name'])}</code> {esc(message.get('summary', ''))} "
                   f"<span class='tag'>{esc(message.get('x-plugin', ''))}</span></summary>"
                   f"<pre>{esc(json.dumps(message, indent=2))}</pre></details>")
    out.append("<h2 id='schemas'>Schemas</h2>")
    schemas = {**openapi["components"]["schemas"], **asyncapi["components"]["schemas"]}
    for name, schema in sorted(schemas.items()):
        out.append(f"<details id='{esc(name)}'><summary><code>{esc(name)}</code></summary>"
                   f"<pre>{esc(json.dumps(schema, indent=2))}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out)
