"""Configuration: one TOML file plus ``SWITCHBOARD_*`` environment overrides.

The file is structured with cattrs into the frozen attrs classes below; an
unknown key or a value of the wrong type raises :class:`ConfigError` naming the
key. Every setting has a default, so ``switchboard serve`` runs with no file.

Environment overrides use ``__`` between levels and TOML syntax for values::

    SWITCHBOARD_SERVER__PORT=9000
    SWITCHBOARD_AUTH__SECRET=s3cret
    SWITCHBOARD_ROOMS__PUBLIC_PATTERNS='["lobby:*"]'
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from .origins import entry_problem
from .structure import first_error, make_converter

ENV_PREFIX = "SWITCHBOARD_"


class ConfigError(Exception):
    """A configuration problem; ``key`` is the dotted name of the offending setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


@attrs.frozen
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Path of the plain WebSocket (JSON envelope) endpoint.
    ws_path: str = "/ws"
    #: Largest incoming message, in bytes; a bigger one closes with 1009.
    max_payload: int = 65536
    #: Outgoing bytes a connection may have queued; past it the client is a
    #: slow consumer and is disconnected (close code 4503).
    outbox_max_bytes: int = 1_048_576
    #: Time to read a request head and finish a WebSocket handshake.
    handshake_timeout: float = 10.0
    #: On SIGINT/SIGTERM: time allowed to flush queues and close sockets.
    drain_timeout: float = 5.0
    #: Browser origins allowed to connect, on every transport (plain WebSocket,
    #: Socket.IO WebSocket and long-polling, whose CORS headers follow it):
    #: exact origins or glob patterns (``https://*.example.com``); ``*`` allows
    #: any. A request without an ``Origin`` header (not a browser) is always
    #: allowed, so an empty list allows no browser and every other client.
    allowed_origins: list[str] = attrs.Factory(lambda: ["*"])
    #: Seconds a connection's writer waits after its first queued frame for
    #: more, so that events arriving one by one share a write (0: write at once).
    write_linger: float = 0.0
    #: Compatibility profile of the plain WebSocket endpoint (empty: none).
    ws_profile: str = ""
    #: ``gc.set_threshold`` of the serving process (empty keeps Python's);
    #: fewer cyclic collections means fewer pauses in delivery.
    gc_thresholds: list[int] = attrs.Factory(lambda: [100_000, 50, 50])


@attrs.frozen
class HttpConfig:
    """The HTTP API's limits; every phase of an exchange is bounded."""

    #: Seconds a kept-alive connection may wait for its next request.
    keep_alive_timeout: float = 5.0
    #: Seconds a request body may take to arrive, after its head (the head
    #: itself has ``server.handshake_timeout``).
    body_timeout: float = 30.0
    #: Largest request body, in bytes; a bigger one is answered 413.
    max_body: int = 4_194_304
    #: Events one ``POST /api/v1/emit`` may publish, at most.
    max_emit_items: int = 1000


@attrs.frozen
class HeartbeatConfig:
    #: Seconds between server pings; told to the client in the first frame.
    interval: float = 25.0
    #: Seconds of silence after a ping before the connection is dropped.
    timeout: float = 20.0


@attrs.frozen
class AuthConfig:
    #: HS256 shared secret. Empty in development mode: a random secret is
    #: generated once and kept in ``data_dir``. Required in production mode
    #: unless a public key is given.
    secret: str = ""
    #: PEM public key (RS256/ES256), inline or from a file.
    public_key: str = ""
    public_key_file: str = ""
    algorithms: list[str] = attrs.Factory(lambda: ["HS256"])
    user_claim: str = "sub"
    tenant_claim: str = "tenant_id"
    role_claim: str = "role"
    audience: str = ""
    issuer: str = ""
    #: Seconds of clock skew tolerated on ``exp`` and ``nbf``.
    leeway: float = 0.0
    #: Tenant given to tokens without a tenant claim; empty rejects them.
    default_tenant: str = ""
    #: Refuse tokens without ``exp``. Unset: required in production mode only.
    require_exp: bool | None = None
    #: JSON Web Key Set URL of an identity provider (Keycloak, Auth0...): tokens
    #: are verified with its keys (``kid``), instead of a secret or public key.
    jwks_url: str = ""
    #: Seconds the key set is kept before it is fetched again.
    jwks_max_age: float = 300.0
    #: Seconds a fetch of the key set may take.
    jwks_timeout: float = 5.0


@attrs.frozen
class ApiKey:
    """A configured API key (``[[api_keys]]``): the secret, the tenant it may
    use (``*``: all) and a name for logs."""

    key: str
    #: Tenant this key may publish to; ``*`` for every tenant.
    tenant: str = "*"
    name: str = ""


@attrs.frozen
class RoomsConfig:
    #: Roles that join ``tenant:{id}:agents`` and may join any room of their tenant.
    agent_roles: list[str] = attrs.Factory(lambda: ["agent", "supervisor", "admin"])
    #: Glob patterns of free rooms any member of the tenant may join.
    public_patterns: list[str] = attrs.Factory(list)
    max_rooms_per_connection: int = 200


@attrs.frozen
class Rate:
    """A token-bucket rate limit: ``rate`` events per second, bursts of ``burst``."""

    #: Tokens added per second.
    rate: float
    #: Bucket size: the burst allowed at once.
    burst: float


@attrs.frozen
class LimitsConfig:
    connection: Rate = Rate(rate=30.0, burst=60.0)
    user: Rate = Rate(rate=60.0, burst=120.0)
    #: Per event name, per connection; overrides the plugin's default.
    events: dict[str, Rate] = attrs.Factory(dict)
    #: Limit breaches within ``violation_window`` seconds after which the
    #: connection is cut with close code 4429.
    max_violations: int = 20
    violation_window: float = 10.0


@attrs.frozen
class SocketIOConfig:
    """Socket.IO v5 over Engine.IO v4; ping interval and timeout are ``[heartbeat]``'s."""

    enabled: bool = True
    #: Path of the Engine.IO endpoint (polling and websocket).
    path: str = "/socket.io/"
    #: Namespaces clients may connect to; ``/`` is the default namespace.
    namespaces: list[str] = attrs.Factory(lambda: ["/"])
    #: Largest Engine.IO message or polling request body, in bytes.
    max_payload: int = 1_000_000
    #: Seconds an Engine.IO session may stay open without a connected
    #: namespace (as the reference server's ``connectTimeout``): at that time,
    #: one with no namespace connected is closed.
    connect_timeout: float = 45.0
    #: Seconds a disconnected client may come back and get the events it
    #: missed (connection state recovery, as in socket.io 4.6+); 0 disables it.
    #: When on, every room event carries its offset as an extra last argument
    #: (socket.io-client remembers it for the reconnect, and handlers see it),
    #: so it is opt-in, as on the reference server.
    recovery_window: float = 0.0
    #: Events kept for recovery, at most.
    recovery_max_events: int = 10_000
    #: Compatibility profile per namespace, e.g. ``{"/" = "pytake"}``.
    profiles: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class BrokerConfig:
    #: ``memory://`` (one node) or ``redis://[user:password@]host:port/db``
    #: (``rediss://`` for TLS): every node of a cluster names the same Redis.
    url: str = "memory://"
    #: Prefix of every Redis key of this cluster (two clusters can share a Redis).
    prefix: str = "switchboard"
    #: Seconds between a node's heartbeats (presence, stats) in Redis.
    heartbeat: float = 2.0
    #: Seconds after its last heartbeat a node counts as gone (killed, cut off):
    #: its users' devices stop counting as online.
    node_ttl: float = 6.0
    #: Publications kept in the Redis stream, at most (history for recovery).
    history_size: int = 10_000


@attrs.frozen
class StoreConfig:
    #: SQLAlchemy URL; empty means ``sqlite:///{data_dir}/switchboard.db``.
    url: str = ""
    pool_size: int = 8
    #: SQLite: seconds a write waits for the database lock (another process
    #: writing) before it fails with ``store_unavailable``.
    busy_timeout: float = 10.0


@attrs.frozen
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@attrs.frozen
class Config:
    """The whole configuration (``app.config``): one attribute per section of
    the file (``server``, ``http``, ``heartbeat``, ``auth``, ``api_keys``,
    ``rooms``, ``limits``, ``socketio``, ``broker``, ``store``, ``log``,
    ``plugins``), each documented in ``config/switchboard.toml``."""

    mode: Literal["development", "production"] = "development"
    data_dir: str = "data"
    server: ServerConfig = ServerConfig()
    http: HttpConfig = HttpConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    auth: AuthConfig = AuthConfig()
    api_keys: list[ApiKey] = attrs.Factory(list)
    rooms: RoomsConfig = RoomsConfig()
    limits: LimitsConfig = LimitsConfig()
    socketio: SocketIOConfig = SocketIOConfig()
    broker: BrokerConfig = BrokerConfig()
    store: StoreConfig = StoreConfig()
    log: LogConfig = LogConfig()
    #: Per plugin: ``[plugins.NAME]`` with ``enabled`` (default true) and the
    #: plugin's own settings, checked against the plugin's config class.
    plugins: dict[str, dict[str, Any]] = attrs.Factory(dict)

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{Path(self.data_dir) / 'switchboard.db'}"

    def plugin_enabled(self, name: str) -> bool:
        """Whether ``[plugins.NAME] enabled`` is true (the default)."""
        return bool(self.plugins.get(name, {}).get("enabled", True))

    def plugin_settings(self, name: str) -> dict[str, Any]:
        return {k: v for k, v in self.plugins.get(name, {}).items() if k != "enabled"}


_converter = make_converter()


#: Settings that no longer exist: (section, key) -> what to do instead.
_REMOVED = {
    ("socketio", "cors_origins"): (
        "removed: use server.allowed_origins, one list of allowed browser origins for "
        "the plain WebSocket, Socket.IO's WebSocket and its long-polling (CORS)"),
}


def structure_config(data: Mapping[str, Any]) -> Config:
    for (section, key), advice in _REMOVED.items():
        table = data.get(section)
        if isinstance(table, Mapping) and key in table:
            raise ConfigError(f"{section}.{key}", advice)
    try:
        config = _converter.structure(dict(data), Config)
    except Exception as exc:  # cattrs raises exception groups
        err = first_error(exc, data=data)
        raise ConfigError(err.field, err.message) from None
    _validate(config)
    return config


def _validate_broker(broker: BrokerConfig) -> None:
    if not broker.url.startswith("memory://"):
        from .redis_broker import parse_url  # (coredis is imported only for Redis)

        try:
            parse_url(broker.url)
        except ValueError as exc:
            raise ConfigError("broker.url", f"expected memory:// or a Redis URL: {exc}") \
                from None
    for setting in ("heartbeat", "node_ttl", "history_size"):
        if getattr(broker, setting) <= 0:
            raise ConfigError(f"broker.{setting}", "must be positive")
    if broker.node_ttl <= broker.heartbeat:
        raise ConfigError("broker.node_ttl", "must be longer than broker.heartbeat")
    if not broker.prefix or any(c in broker.prefix for c in " {}"):
        raise ConfigError("broker.prefix", "must be a non-empty name without spaces or braces")


def _validate(config: Config) -> None:
    for name, section in config.plugins.items():
        if not isinstance(section, dict):
            raise ConfigError(f"plugins.{name}", "expected a table")
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"plugins.{name}.enabled", "expected bool")
    if config.server.port < 0 or config.server.port > 65535:
        raise ConfigError("server.port", "must be between 0 and 65535")
    for i, entry in enumerate(config.server.allowed_origins):
        if problem := entry_problem(entry):
            raise ConfigError(f"server.allowed_origins.{i}", problem)
    for i, namespace in enumerate(config.socketio.namespaces):
        if not namespace.startswith("/"):
            raise ConfigError(f"socketio.namespaces.{i}", "must start with '/'")
    for namespace in config.socketio.profiles:
        if namespace not in config.socketio.namespaces:
            raise ConfigError(f"socketio.profiles.{namespace}",
                              "not a namespace listed in socketio.namespaces")
    if not (config.socketio.path.startswith("/") and config.socketio.path.endswith("/")):
        raise ConfigError("socketio.path", "must start and end with '/'")
    for setting in ("keep_alive_timeout", "body_timeout", "max_body", "max_emit_items"):
        if getattr(config.http, setting) <= 0:
            raise ConfigError(f"http.{setting}", "must be positive")
    if config.socketio.connect_timeout <= 0:
        raise ConfigError("socketio.connect_timeout", "must be positive")
    if config.heartbeat.interval <= 0:
        raise ConfigError("heartbeat.interval", "must be positive")
    _validate_broker(config.broker)
    if config.heartbeat.timeout <= 0:
        raise ConfigError("heartbeat.timeout", "must be positive")
    for i, key in enumerate(config.api_keys):
        if len(key.key) < 16:
            raise ConfigError(f"api_keys.{i}.key", "must be at least 16 characters")
    if config.mode == "production" and not (
        config.auth.secret or config.auth.public_key or config.auth.public_key_file
        or config.auth.jwks_url
    ):
        raise ConfigError("auth.secret", "required in production mode (or auth.public_key, "
                          "or auth.jwks_url)")
    if config.auth.secret and any(not a.startswith("HS") for a in config.auth.algorithms):
        if not (config.auth.public_key or config.auth.public_key_file or config.auth.jwks_url):
            raise ConfigError("auth.algorithms", "RS/ES algorithms need auth.public_key "
                              "or auth.jwks_url")
    if config.auth.jwks_url and not config.auth.jwks_url.startswith(("https://", "http://")):
        raise ConfigError("auth.jwks_url", "must be an http(s) URL")


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SWITCHBOARD_A__B=v`` -> ``{"a": {"b": v}}``."""
    out: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(name, "conflicts with another override")
        node[path[-1]] = _env_value(raw)
    return out


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def load_config(path: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (optional), apply environment overrides, structure and check."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("", f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    return structure_config(merge(data, env_overrides(environ)))
