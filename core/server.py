"""The server: wires config, plugins, store, broker, hub and transports, and
owns the task tree (server -> connection -> reader, and a writer while there
is something to write; heartbeats on the shared timers)."""

from __future__ import annotations

import contextvars
import errno
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HyperConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from .admin import AdminConsole
from .app import App
from .auth import make_verifier
from .broker import make_broker
from .config import Config, ConfigError
from .forwarded import forwarded_asgi
from .http import create_http_app
from .hub import Hub
from .jsonroutes import JsonRoutes
from .metrics import Metrics
from .pluginmanager import Plugins
from .store import Store
from .supervise import keep_running, log_failure, task_name
from .transport.engineio_server import EngineIOServer
from .transport.exchange import TIMER_KEY, ExchangeTimer, timed_asgi
from .transport.front import (
    Handler,
    PrefixedStream,
    RequestHead,
    close_stream,
    peer_gone,
    route,
)
from .transport.publish import serve_publish
from .transport.ws import EnvelopeCodec, WebSocketConnection, serve_websocket
from .transport.wschannel import written_here

log = logging.getLogger("switchboard")
#: Seconds of waiting for a turn after which a connection is checked for a
#: client that has given up (closed) before it is served.
GAVE_UP_CHECK = 1.0
#: Connections taken from a listener's backlog in one go (then other tasks run).
ACCEPT_BATCH = 256
#: Errors of ``accept`` that mean "out of descriptors or memory": wait, go on.
_ACCEPT_RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every address) or a host name


def check_exposure(config: Config) -> None:
    """Refuse to listen beyond loopback while tokens are checked with the
    generated development secret, unless ``allow_dev_on_all`` says to: such a
    server is reachable by others, and its secret sits in a local file."""
    host = config.server.host
    if config.generates_secret and not is_loopback(host) and not config.allow_dev_on_all:
        raise ConfigError(
            "server.host", f"development mode (no auth.secret) listens on loopback only, "
            f"not on {host or 'every address'}: set auth.secret (SWITCHBOARD_AUTH__SECRET), "
            "or allow_dev_on_all = true (SWITCHBOARD_ALLOW_DEV_ON_ALL=true) to expose a "
            "development server on purpose")


class Server:
    def __init__(self, config: Config, *, plugins: Mapping[str, object] | None = None,
                 use_entry_points: bool = True) -> None:
        check_exposure(config)
        self.config = config
        self.metrics = Metrics()
        self.plugins = Plugins(config, plugins, use_entry_points=use_entry_points)
        verifier, self.development_secret = make_verifier(config)
        broker = config.broker
        self.broker = make_broker(broker.url, prefix=broker.prefix, heartbeat=broker.heartbeat,
                                  node_ttl=broker.node_ttl, history_size=broker.history_size,
                                  history_ttl=broker.history_ttl)
        self.hub = Hub(self.broker, self.metrics, agent_roles=config.rooms.agent_roles)
        self.store = Store(config.store_url, pool_size=config.store.pool_size,
                           busy_timeout=config.store.busy_timeout)
        self.app = App(config, self.plugins, self.hub, self.store, self.metrics, verifier)
        # (what the heartbeats of one wake queue is written by the timer task)
        self.app.timers.around = written_here
        self.engineio: EngineIOServer | None = None
        if config.socketio.enabled:
            self.engineio = EngineIOServer(self.app, self._spawn, self._signal_closed)
        #: The admin console, when ``[admin] path`` is set.
        self.console = AdminConsole(self.app) if config.admin.path else None
        blueprints = [self.engineio.blueprint()] if self.engineio else []
        if self.console is not None:
            blueprints.append(self.console.blueprint())
        self.http_app = create_http_app(self.app, blueprints)
        self._hyper_config = HyperConfig()
        self._hyper_config.accesslog = None
        self._hyper_config.graceful_timeout = config.server.drain_timeout
        http_app: Any = self.http_app
        if self.app.proxies:  # requests of trusted proxies: the client's address
            http_app = forwarded_asgi(http_app, self.app.proxies)
        self._asgi = ASGIWrapper(timed_asgi(http_app))
        self._lifespan_state: dict[str, Any] = {}
        self._hyper_context = WorkerContext(None)
        self._ws_connections: set[WebSocketConnection] = set()
        ws_profile = config.server.ws_profile
        self._ws_codec = EnvelopeCodec(self.plugins.profiles[ws_profile] if ws_profile else None)
        self._ws_paths: dict[str, Handler] = {config.server.ws_path: self._serve_ws}
        if self.engineio is not None:
            self._ws_paths[config.socketio.path] = self._serve_engineio
        if self.console is not None:  # served by the HTTP app (quart's websocket)
            self._ws_paths[self.console.socket_path] = self._serve_http
        self._http_paths: dict[tuple[str, str], Handler] = {
            ("POST", "/api/v1/emit"): self._serve_publish}
        json_routes = JsonRoutes(self.app, self.plugins.json_routes(), self._serve_http_rest)
        self._http_paths.update(dict.fromkeys(json_routes.routes, json_routes.serve))
        self._connections: trio.Nursery | None = None
        #: Turns to serve a head and handshake, first come first served.
        self._handshakes = trio.Semaphore(config.server.handshakes_in_flight)
        self._shutdown = trio.Event()
        self._connection_closed = trio.Event()
        self._stopped = trio.Event()
        #: Addresses listened on, as (host, port), once :meth:`run` has started.
        self.addresses: list[tuple[str, int]] = []
        #: The accept tasks' cancel scope and the listening sockets, while listening.
        self._listening: tuple[trio.CancelScope, list[socket.socket]] | None = None

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    # -- lifecycle ---------------------------------------------------------

    async def run(self, *, listen: bool = True,
                  task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, serve until :meth:`shutdown`, then drain and stop."""
        schema = self.plugins.declare_tables(self.store.metadata)
        auto = self.config.store.auto_migrate
        upgrade = auto == "always" or (auto == "sqlite" and self.store.dialect == "sqlite")

        def prepare(conn: sa.Connection) -> None:
            for step in schema.prepare(conn, upgrade=upgrade):
                if step.state in ("behind", "unversioned"):
                    log.info("database schema: %s", step.describe())

        await self.store.open(prepare)
        try:
            async with trio.open_nursery() as nursery:
                self.app.attach_nursery(nursery)
                await nursery.start(self.broker.run, self.hub.deliver, self.hub.stats)
                if self.console is not None:
                    await nursery.start(self.console.run)
                lifespan = Lifespan(self._asgi, self._hyper_config, self._lifespan_state)
                await nursery.start(lifespan.handle_lifespan)
                await lifespan.wait_for_startup()
                await self.plugins.acall("switchboard_startup", app=self.app)
                for plugin, tasks in await self.plugins.acall("switchboard_background_tasks",
                                                              app=self.app):
                    for task in tasks or ():
                        what = f"{plugin}: background task {task_name(task)}"
                        nursery.start_soon(keep_running, task, what,
                                           self._background_failed(plugin))
                async with trio.open_nursery() as connections:
                    self._connections = connections
                    if listen:
                        await connections.start(self._listen)
                    task_status.started(self)
                    await self._shutdown.wait()
                    stop_by = trio.current_time() + self.config.server.drain_timeout
                    await self._drain(connections, stop_by)
                # domain-event hooks of what was stored before the stop still run,
                # within the same drain timeout
                with trio.move_on_at(stop_by):
                    await self.app.notifications_done()
                await self.plugins.notify("switchboard_shutdown", self.app.hook_failed,
                                          app=self.app)
                await lifespan.wait_for_shutdown()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.store.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Ask the server to stop: stop accepting, close sockets with 1001, drain."""
        self.app.shutting_down = True
        self._shutdown.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _listen(self, *, task_status: trio.TaskStatus[None]) -> None:
        cfg = self.config.server
        listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
        # (the backlog is the system's largest: trio asks for 65535, the kernel
        # caps it at net.core.somaxconn)
        sockets = [socket.socket(fileno=listener.socket.detach()) for listener in listeners]
        for sock in sockets:
            sock.setblocking(False)
            sockname = sock.getsockname()
            self.addresses.append((sockname[0], sockname[1]))
        log.info("listening on %s", ", ".join(f"http://{h}:{p}" for h, p in self.addresses))
        with trio.CancelScope() as scope:
            self._listening = (scope, sockets)
            task_status.started()
            try:
                async with trio.open_nursery() as nursery:
                    for sock in sockets:
                        nursery.start_soon(self._accept, sock)
            finally:
                self._stop_listening()

    def _stop_listening(self) -> None:
        """Close the listening sockets now: from here on a connection attempt is
        refused by the system at once (a client or a load balancer tries
        elsewhere) instead of waiting in the backlog to be reset at the exit."""
        if self._listening is None:
            return
        scope, sockets = self._listening
        self._listening = None
        # (cancelling first takes the accept tasks off the sockets synchronously)
        scope.cancel()
        for sock in sockets:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _accept(self, listener: socket.socket) -> None:
        """Take connections from ``listener`` as fast as they come: everything
        its backlog holds at each wake-up (so that the backlog does not fill
        and the kernel does not drop connection attempts), each served by a
        task of its own (which waits for its turn: see ``handle_stream``)."""
        assert self._connections is not None
        connections = self._connections
        while True:
            await trio.lowlevel.wait_readable(listener)
            for _ in range(ACCEPT_BATCH):
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                        log.error("accept: %s: waiting before the next connection",
                                  exc.strerror or exc)
                        await trio.sleep(0.1)
                        break
                    continue  # (a connection aborted before it was taken)
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
                connections.start_soon(self.handle_stream, stream)
            await trio.lowlevel.checkpoint()

    async def _drain(self, connections: trio.Nursery, stop_by: float) -> None:
        """Stop listening and close every connection: each idle one at once, the
        others once the answers they owe are out; what is still open at
        ``stop_by`` (the drain timeout) is cut."""
        log.info("shutting down: closing %d connections", self._open_connections())
        self._stop_listening()
        for connection in list(self._ws_connections):
            connection.shut_down()
        if self.engineio is not None:
            self.engineio.close_all()
        await self._hyper_context.terminated.set()
        with trio.move_on_at(stop_by):
            while self._open_connections():
                self._connection_closed = trio.Event()
                await self._connection_closed.wait()
        if left := self._open_connections():
            log.warning("drain timeout: %d connections cut (%d of them not closing yet)",
                        left, self._unclosed())
        connections.cancel_scope.cancel()

    def _unclosed(self) -> int:
        """Connections whose close has not even begun (the others are closed,
        or closing with their close frame queued, and only end their tasks)."""
        engines = sum(not engine.ending for engine in self.engineio.engines.values()
                      ) if self.engineio is not None else 0
        return sum(not c.channel.closing for c in self._ws_connections) + engines

    # -- connections -------------------------------------------------------

    def _open_connections(self) -> int:
        engines = len(self.engineio.engines) if self.engineio is not None else 0
        return len(self._ws_connections) + engines

    def _signal_closed(self) -> None:
        self._connection_closed.set()

    def _background_failed(self, plugin: str) -> Callable[[str, Exception], None]:
        def report(what: str, exc: Exception) -> None:
            self.metrics.plugin_failures.labels(plugin, "background_task").inc()
            log_failure(what, exc)
        return report

    def _spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` (one client's work) in the connections nursery, guarded,
        in a context of its own: a task inherits the context of the task that
        starts it, and one started while an HTTP request is handled (a
        long-polling handshake) would keep that request (the framework's
        request, its headers, the server's stream) for the session's life."""
        if self._connections is None:
            raise RuntimeError("the server is not running")
        contextvars.Context().run(self._connections.start_soon, self._guard, fn)

    async def _guard(self, fn: Callable[[], Awaitable[None]]) -> None:
        """One client's work: an exception in it is logged and counted, and ends
        only that work (never the connections nursery, the listener or the server)."""
        try:
            await fn()
        except Exception as exc:
            self.metrics.connection_failures.inc()
            log_failure(f"connection task {task_name(fn)}", exc)

    def _serve_engineio(self, stream: trio.abc.Stream, head: RequestHead) -> Awaitable[Any]:
        assert self.engineio is not None
        if self.shutting_down:
            return stream.aclose()
        return self.engineio.serve_websocket(stream, head)

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted connection (a socket, or an in-memory stream in tests).

        Its request head and handshake wait for a turn (at most
        ``server.handshakes_in_flight`` at once, in the order the connections came):
        under a reconnect storm each handshake is then served quickly, in
        turn, instead of all of them slowly together until clients give up.
        Whatever goes wrong while serving it ends this connection only: the
        failure is logged once and counted, the stream is closed, and the
        listener and every other connection go on.
        """
        try:
            queued_at = trio.current_time()
            async with self._handshakes:
                if trio.current_time() - queued_at > GAVE_UP_CHECK and peer_gone(stream):
                    # its client gave up while it waited: nothing to serve
                    self.metrics.handshake_rejected("client_gave_up")
                    return
                # route() hands back the server of the connection to await here,
                # so that its frame is not kept for the connection's life; for a
                # WebSocket, its first step is the handshake (the rest of the
                # connection's work is handed back in turn)
                serving, upgrade = await route(
                    stream, timeout=self.config.server.handshake_timeout,
                    ws_paths=self._ws_paths, http=self._serve_http,
                    http_paths=self._http_paths)
                if upgrade and serving is not None:
                    serving = await serving
            while serving is not None:  # (a server may hand back the rest of its work)
                serving = await serving
        except Exception as exc:
            self.metrics.connection_failures.inc()
            log_failure("connection", exc)
        finally:
            await close_stream(stream)

    def _serve_ws(self, stream: trio.abc.Stream, head: RequestHead) -> Awaitable[Any]:
        # (not a coroutine of its own: one frame less kept per connection)
        if self.shutting_down:
            return stream.aclose()
        return serve_websocket(self.app, stream, head, self._ws_connections,
                               self._ws_codec, self._signal_closed)

    async def _serve_publish(self, stream: trio.abc.Stream, head: RequestHead) -> None:
        try:
            await serve_publish(self.app, stream, head, self._serve_http_rest)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _serve_http_rest(self, stream: trio.abc.Stream, head: RequestHead) -> None:
        """Hypercorn on a stream whose next bytes are exactly what the client sent."""
        await self._run_hypercorn(stream, b"")

    async def _serve_http(self, stream: trio.abc.Stream, head: RequestHead) -> None:
        await self._run_hypercorn(stream, head.raw)

    async def _run_hypercorn(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        """Serve HTTP on ``stream`` (after ``prefix``, bytes already read) with
        hypercorn, each phase of each exchange bounded (see ``exchange``)."""
        limits = self.config.http
        with trio.CancelScope() as scope:
            timer = ExchangeTimer(scope, head=self.config.server.handshake_timeout,
                                  body=limits.body_timeout, keep_alive=limits.keep_alive_timeout)
            state = ConnectionState({**self._lifespan_state, TIMER_KEY: timer})
            http_stream = PrefixedStream(stream, prefix, on_data=timer.data_received)
            server = TCPServer(self._asgi, self._hyper_config, self._hyper_context, state,
                               http_stream)  # type: ignore[arg-type]
            await server.run()
        if overran := timer.overran:
            log.info("HTTP connection closed: %s not done within its time", overran)

    def start_connection(self, stream: trio.abc.Stream) -> None:
        """Serve ``stream`` in the connections nursery (in-memory transports)."""
        if self._connections is None:
            raise RuntimeError("the server is not running")
        self._connections.start_soon(self.handle_stream, stream)

