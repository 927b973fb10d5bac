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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from .forwarded import parse_network
from .origins import entry_problem
from .redis_location import parse_url
from .structure import all_errors, make_converter

ENV_PREFIX = "SWITCHBOARD_"


@attrs.frozen
class Problem:
    """One bad setting: its dotted ``key``, what is wrong, and where the value
    came from (``source``: the environment variable that set it, or empty)."""

    key: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        if self.source:
            if self.message == "unknown key":
                return f"{self.source}: unknown key {self.key}"
            return f"{self.source}: {self.key}: {self.message}" if self.key else \
                f"{self.source}: {self.message}"
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(Exception):
    """A configuration problem; ``key`` is the dotted name of the offending setting.

    A file with several problems raises one error holding them all
    (``problems``); ``key`` and ``message`` are the first one's.
    """

    def __init__(self, key: str, message: str, *, source: str = "",
                 problems: Sequence[Problem] = (), readable: Config | None = None) -> None:
        self.problems = list(problems) or [Problem(key, message, source)]
        #: The config without the sections that could not be read, when the
        #: rest could: what is left to check further (the plugin sections).
        self.readable = readable
        first = self.problems[0]
        super().__init__("\n".join(str(problem) for problem in self.problems))
        self.key = first.key
        self.message = first.message

    @classmethod
    def of(cls, problems: Sequence[Problem], readable: Config | None = None) -> ConfigError:
        """One error for several problems (at least one)."""
        return cls(problems[0].key, problems[0].message, problems=problems, readable=readable)

    def naming_sources(self, environ: Mapping[str, str]) -> ConfigError:
        """The same problems, each naming the ``SWITCHBOARD_*`` variable of
        ``environ`` its value came from (when it came from one)."""
        sources = env_sources(environ)
        return ConfigError.of([
            problem if problem.source else attrs.evolve(problem, source=_source_of(
                problem.key, sources)) for problem in self.problems], self.readable)


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
    #: Connections whose request head and handshake (authentication included)
    #: are served at once; the others wait for a turn in arrival order. Raise it
    #: when authentication waits on a slow service (the connect proxy, a JWKS
    #: fetch): the handshake rate is at most this many per authentication time.
    handshakes_in_flight: int = 64
    #: On SIGINT/SIGTERM: time allowed to flush queues and close sockets.
    drain_timeout: float = 5.0
    #: Browser origins allowed to connect, on every transport (plain WebSocket,
    #: Socket.IO WebSocket and long-polling, whose CORS headers follow it):
    #: exact origins or glob patterns (``https://*.example.com``); ``*`` allows
    #: any. A request without an ``Origin`` header (not a browser) is always
    #: allowed, so an empty list allows no browser and every other client.
    allowed_origins: list[str] = attrs.Factory(lambda: ["*"])
    #: Reverse proxies and load balancers (addresses or networks, ``10.0.0.0/8``)
    #: whose ``X-Forwarded-For`` names the client: a connection or request from
    #: one of them counts as coming from the client's address (per-address
    #: limits, logs, the backend bridge). Empty: the header is ignored.
    trusted_proxies: list[str] = attrs.Factory(list)
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
    #: Connections of one user (all devices; a Socket.IO namespace is one) at
    #: most, on every node together; past it a new one is refused with
    #: ``too_many_connections`` (429). 0: no limit.
    max_connections_per_user: int = 0


@attrs.frozen
class AdminConfig:
    """The admin console: a web page of live connections, rooms, presence,
    plugins and errors, off unless ``path`` is set (see docs/admin-console.md)."""

    #: URL path of the console, e.g. ``/admin``; empty: no console.
    path: str = ""
    #: The password of the console's login (at least 12 characters).
    password: str = ""
    #: Also log in with an API key of ``[[api_keys]]`` for every tenant (``*``).
    api_keys: bool = False
    #: Key signing the console's session cookie (at least 32 characters); empty:
    #: a random one per start (logins end with a restart). Give every node
    #: behind one address the same.
    secret: str = ""
    #: Seconds a login lasts.
    session_ttl: float = 28_800.0
    #: Login attempts per client address: a burst, then ``rate`` per second.
    login_rate: Rate = Rate(rate=0.1, burst=5.0)
    #: Mark the cookie ``Secure`` (served over HTTPS by a proxy in front).
    secure_cookie: bool = False
    #: Warnings and errors kept for the "last errors" panel.
    max_errors: int = 100
    #: Seconds between two refreshes of the live panels.
    refresh: float = 1.0
    #: Events of the tailed room the console keeps on screen.
    tail_size: int = 200


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
    #: Sessions opened and no namespace connected yet, at most (a client that
    #: never authenticates holds one for ``connect_timeout``, long-polling
    #: without a connection): per client address, past which a new session
    #: is refused with 429, and in all (503).
    max_unconnected_per_address: int = 5_000
    max_unconnected: int = 50_000
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
    #: Seconds a publication is kept in the Redis stream, at most (0: as many
    #: as ``history_size``, whatever their age); at least the recovery window.
    history_ttl: float = 0.0


@attrs.frozen
class StoreConfig:
    #: SQLAlchemy URL; empty means ``sqlite:///{data_dir}/switchboard.db``.
    url: str = ""
    pool_size: int = 8
    #: SQLite: seconds a write waits for the database lock (another process
    #: writing) before it fails with ``store_unavailable``.
    busy_timeout: float = 10.0
    #: Upgrade an older database schema at start-up: ``"sqlite"`` (only a
    #: SQLite database; PostgreSQL needs ``switchboard migrate``), ``"always"``
    #: or ``"never"``. Missing tables are always created.
    auto_migrate: Literal["sqlite", "always", "never"] = "sqlite"


@attrs.frozen
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: Records of one kind (logger and message) logged per ``repeat_window``
    #: seconds, at most; the next one after says how many were left out.
    #: Errors always are. 0: every record.
    repeat_limit: int = 20
    repeat_window: float = 10.0
    #: ``text`` (one line per record) or ``json`` (one JSON object per line:
    #: ``time``, ``level``, ``logger``, ``message``, ``exception``).
    format: Literal["text", "json"] = "text"


@attrs.frozen
class Config:
    """The whole configuration (``app.config``): one attribute per section of
    the file (``server``, ``http``, ``heartbeat``, ``auth``, ``api_keys``,
    ``rooms``, ``limits``, ``socketio``, ``broker``, ``store``, ``log``,
    ``admin``, ``plugins``), each documented in ``config/switchboard.toml``."""

    mode: Literal["development", "production"] = "development"
    data_dir: str = "data"
    #: Let a server without an auth secret (signing tokens with the generated
    #: development secret) listen on an address other than loopback, such as
    #: ``0.0.0.0`` in a container. Off: such a server refuses to start.
    allow_dev_on_all: bool = False
    #: Directories of third-party plugins installed with ``pip install --target
    #: DIR``, searched for entry points besides the Python environment (for the
    #: single-file executable, which has no environment of its own to install into).
    plugin_path: list[str] = attrs.Factory(list)
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
    admin: AdminConfig = AdminConfig()
    #: Per plugin: ``[plugins.NAME]`` with ``enabled`` (default true) and the
    #: plugin's own settings, checked against the plugin's config class.
    plugins: dict[str, dict[str, Any]] = attrs.Factory(dict)

    @property
    def generates_secret(self) -> bool:
        """Whether tokens are checked with the generated development secret (no
        ``auth.secret``, public key or JWKS URL is configured)."""
        auth = self.auth
        return not (auth.secret or auth.public_key or auth.public_key_file or auth.jwks_url)

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
    """``data`` (a parsed file with its overrides) as a checked :class:`Config`;
    :class:`ConfigError` lists every problem found, not only the first."""
    problems: list[Problem] = []
    for (section, key), advice in _REMOVED.items():
        table = data.get(section)
        if isinstance(table, Mapping) and key in table:
            problems.append(Problem(f"{section}.{key}", advice))
    refused: set[str] = set()  # top-level keys that could not be structured
    try:
        config = _converter.structure(dict(data), Config)
    except Exception as exc:  # cattrs raises exception groups
        for error in all_errors(exc, data=data):
            problems.append(Problem(error.field, error.message))
            refused.add(error.field.partition(".")[0])
        # Check what could be read, to report the other problems too; the checks
        # of a section that could not be read (or that depend on it) are left out.
        try:
            config = _converter.structure({k: v for k, v in data.items()
                                           if k not in refused}, Config)
        except Exception:
            raise ConfigError.of(problems) from None
    problems += [problem for problem in _check(config)
                 if problem.key.partition(".")[0] not in refused]
    if problems:
        raise ConfigError.of(problems, config if "plugins" not in refused else None)
    return config


#: Settings a zero or negative value would break (sizes, counts, timeouts).
_POSITIVE = ("server.max_payload", "server.outbox_max_bytes", "server.handshake_timeout",
             "http.keep_alive_timeout", "http.body_timeout", "http.max_body",
             "http.max_emit_items", "heartbeat.interval", "heartbeat.timeout",
             "socketio.connect_timeout", "socketio.max_unconnected_per_address",
             "socketio.max_unconnected", "auth.jwks_timeout", "rooms.max_rooms_per_connection",
             "limits.violation_window", "admin.session_ttl", "admin.refresh",
             "admin.max_errors", "admin.tail_size", "socketio.max_payload", "store.pool_size",
             "log.repeat_window")
#: Settings where 0 means none (no wait, no leeway, off) and less means nothing.
_NOT_NEGATIVE = ("server.drain_timeout", "server.write_linger", "auth.leeway",
                 "limits.max_connections_per_user", "auth.jwks_max_age",
                 "limits.max_violations", "socketio.recovery_window",
                 "socketio.recovery_max_events", "store.busy_timeout", "broker.history_ttl",
                 "log.repeat_limit")


def _numbers(config: Config, keys: Iterable[str]) -> list[tuple[str, float]]:
    """``(key, value)`` of the dotted ``keys`` of ``config``."""
    out = []
    for key in keys:
        section, _, name = key.partition(".")
        out.append((key, getattr(getattr(config, section), name)))
    return out


#: The longest ``broker.history_ttl``: about 31 years, less than the age of
#: Redis's clock (stream ids are its milliseconds since 1970).
MAX_HISTORY_TTL = 1e9


def _check_broker(broker: BrokerConfig, recovery_window: float) -> list[Problem]:
    problems = []
    if not broker.url.startswith("memory://"):
        try:
            parse_url(broker.url)
        except ValueError as exc:
            problems.append(Problem("broker.url",
                                    f"expected memory:// or a Redis URL: {exc}"))
    for setting in ("heartbeat", "node_ttl", "history_size"):
        if getattr(broker, setting) <= 0:
            problems.append(Problem(f"broker.{setting}", "must be positive"))
    if broker.history_size > 2**63 - 1:  # (Redis's MAXLEN is a signed 64-bit number)
        problems.append(Problem("broker.history_size", "must be at most 2**63-1"))
    if broker.history_ttl > MAX_HISTORY_TTL:
        problems.append(Problem("broker.history_ttl", f"must be at most {MAX_HISTORY_TTL:g}"))
    elif 0 < broker.history_ttl < recovery_window:
        problems.append(Problem(
            "broker.history_ttl", "must be 0 or at least socketio.recovery_window (a client "
            "coming back within the window needs what it missed)"))
    if 0 < broker.node_ttl <= broker.heartbeat:
        problems.append(Problem("broker.node_ttl", "must be longer than broker.heartbeat"))
    if not broker.prefix or any(c in broker.prefix for c in " {}"):
        problems.append(Problem("broker.prefix",
                                "must be a non-empty name without spaces or braces"))
    return problems


def _check_admin(config: Config) -> list[Problem]:
    """The console must be safe when it is on (``admin.path`` set)."""
    admin = config.admin
    if not admin.path:
        return []
    problems: list[Problem] = []

    def bad(key: str, message: str) -> None:
        problems.append(Problem(key, message))

    path = admin.path
    if not path.startswith("/") or path.endswith("/") or not all(
            c.isalnum() or c in "-_./" for c in path) or "//" in path:
        bad("admin.path", "must start with '/', not end with '/', and hold only letters, "
            "digits and -_./ (e.g. \"/admin\")")
    taken = {"/api", "/health", "/ready", "/metrics", config.server.ws_path.rstrip("/"),
             config.socketio.path.rstrip("/")}
    for other in sorted(taken):
        if other and (path == other or path.startswith(other + "/")
                      or other.startswith(path + "/")):
            bad("admin.path", f"overlaps {other!r}, served by something else")
    if not admin.password and not admin.api_keys:
        bad("admin.password", "the console needs a password (or admin.api_keys = true); "
            "leave admin.path empty to turn it off")
    if admin.password and len(admin.password) < 12:
        bad("admin.password", "must be at least 12 characters")
    if admin.api_keys and not any(key.tenant == "*" for key in config.api_keys):
        bad("admin.api_keys", "no API key for every tenant (tenant \"*\") is configured "
            "to log in with")
    if admin.secret and len(admin.secret) < 32:
        bad("admin.secret", "must be at least 32 characters")
    for setting in ("session_ttl", "refresh", "max_errors", "tail_size"):
        if getattr(admin, setting) <= 0:
            bad(f"admin.{setting}", "must be positive")
    if admin.login_rate.rate <= 0 or admin.login_rate.burst < 1:
        bad("admin.login_rate", "rate must be positive and burst at least 1")
    return problems


def _check(config: Config) -> list[Problem]:
    """Every problem of a structured config that its types do not catch."""
    problems: list[Problem] = []

    def bad(key: str, message: str) -> None:
        problems.append(Problem(key, message))

    for name, section in config.plugins.items():
        if not isinstance(section, dict):
            bad(f"plugins.{name}", "expected a table")
        elif not isinstance(section.get("enabled", True), bool):
            bad(f"plugins.{name}.enabled", "expected bool")
    if config.server.port < 0 or config.server.port > 65535:
        bad("server.port", "must be between 0 and 65535")
    if config.server.handshakes_in_flight < 1:
        bad("server.handshakes_in_flight", "must be at least 1")
    for i, entry in enumerate(config.server.allowed_origins):
        if problem := entry_problem(entry):
            bad(f"server.allowed_origins.{i}", problem)
    for i, entry in enumerate(config.server.trusted_proxies):
        try:
            parse_network(entry)
        except ValueError:
            bad(f"server.trusted_proxies.{i}",
                f"{entry!r} is not an IP address or network (10.0.0.0/8, 2001:db8::/32)")
    for i, namespace in enumerate(config.socketio.namespaces):
        if not namespace.startswith("/"):
            bad(f"socketio.namespaces.{i}", "must start with '/'")
    for namespace in config.socketio.profiles:
        if namespace not in config.socketio.namespaces:
            bad(f"socketio.profiles.{namespace}",
                "not a namespace listed in socketio.namespaces")
    if not (config.socketio.path.startswith("/") and config.socketio.path.endswith("/")):
        bad("socketio.path", "must start and end with '/'")
    for setting, value in _numbers(config, _POSITIVE):
        if value <= 0:
            bad(setting, "must be positive")
    for setting, value in _numbers(config, _NOT_NEGATIVE):
        if value < 0:
            bad(setting, "must not be negative")
    problems += _check_broker(config.broker, config.socketio.recovery_window)
    problems += _check_admin(config)
    for i, key in enumerate(config.api_keys):
        if len(key.key) < 16:
            bad(f"api_keys.{i}.key", "must be at least 16 characters")
    auth = config.auth
    if config.mode == "production" and not (
        auth.secret or auth.public_key or auth.public_key_file or auth.jwks_url
    ):
        bad("auth.secret", "required in production mode (or auth.public_key, or auth.jwks_url)")
    if auth.secret and any(not a.startswith("HS") for a in auth.algorithms):
        if not (auth.public_key or auth.public_key_file or auth.jwks_url):
            bad("auth.algorithms", "RS/ES algorithms need auth.public_key or auth.jwks_url")
    if auth.jwks_url and not auth.jwks_url.startswith(("https://", "http://")):
        bad("auth.jwks_url", "must be an http(s) URL")
    return problems


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return raw


def env_sources(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings ``SWITCHBOARD_*`` variables set: dotted key -> variable name."""
    return {".".join(_env_path(name)): name for name in environ
            if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG"}


def _env_path(name: str) -> list[str]:
    return name.removeprefix(ENV_PREFIX).lower().split("__")


def _source_of(key: str, sources: Mapping[str, str]) -> str:
    """The variable that set ``key``, a table holding it or a key under it."""
    if not key:
        return ""
    for path, name in sorted(sources.items()):
        if path == key or key.startswith(path + ".") or path.startswith(key + "."):
            return name
    return ""


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SWITCHBOARD_A__B=v`` -> ``{"a": {"b": v}}``."""
    out: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = _env_path(name)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(path), "conflicts with another override",
                                  source=name)
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
    """Read ``path`` (optional), apply environment overrides, structure and check.

    A relative ``data_dir`` or ``auth.public_key_file`` is made absolute: from
    the directory of the file when the file sets it (or, for ``data_dir``,
    leaves the default), from the working directory when an environment
    variable sets it or there is no file. So every command given the same file
    uses the same data directory (and development secret), wherever it is run.
    A problem with a value from the environment names its variable.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("", f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError("", f"config file is a directory: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError("", f"{path} is not valid TOML: not UTF-8 text (byte "
                                  f"{exc.start})") from None
        except RecursionError:
            raise ConfigError("", f"{path} is not valid TOML: arrays or tables nested "
                                  "too deeply") from None
        except OSError as exc:
            raise ConfigError("", f"config file cannot be read: {path}: "
                                  f"{exc.strerror or exc}") from None
    overrides = env_overrides(environ)
    try:
        config = structure_config(merge(data, overrides))
    except ConfigError as exc:
        raise exc.naming_sources(environ) from None
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    cwd = Path.cwd()
    data_dir = Path(config.data_dir).expanduser()
    key_file = Path(config.auth.public_key_file).expanduser()
    auth = config.auth
    if auth.public_key_file and not key_file.is_absolute():
        from_env = "public_key_file" in overrides.get("auth", {})
        auth = attrs.evolve(auth, public_key_file=os.path.normpath(
            (cwd if from_env else base) / key_file))
    if not data_dir.is_absolute():
        data_dir = (cwd if "data_dir" in overrides else base) / data_dir
    return attrs.evolve(config, data_dir=os.path.normpath(data_dir), auth=auth)
