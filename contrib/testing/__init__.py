"""Test harness for Switchboard and its plugins.

Registered as a pytest plugin (entry point ``pytest11``), it gives these
fixtures to any project that has Switchboard installed:

``switchboard``
    A server running in-process on ``trio.testing.MockClock`` (autojump), with
    in-memory transports: ``await switchboard.connect(user="u1")`` returns a
    :class:`TestClient` speaking the real WebSocket protocol over a memory
    stream. Time-based behaviour (heartbeats, grace periods, rate windows)
    runs instantly and deterministically.
``switchboard_live``
    The same server listening on an ephemeral 127.0.0.1 port (real clock),
    for tests over real sockets: ``switchboard_live.ws_url(token)``.
``switchboard_config`` / ``switchboard_plugins``
    Override these in your ``conftest.py`` to change the config (use
    :func:`make_config`) or to run your plugin without installing it::

        @pytest.fixture
        def switchboard_plugins():
            return {"my_plugin": MyPlugin}
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import jwt
import trio
import trio.testing
from switchboard.core.config import Config, merge, structure_config
from switchboard.core.server import Server
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

TEST_SECRET = "switchboard-test-secret-0123456789"
TEST_API_KEY = "test-api-key-0123456789"

__all__ = [
    "TEST_API_KEY",
    "TEST_SECRET",
    "ErrorReply",
    "HandshakeRejected",
    "Harness",
    "TestClient",
    "Timeout",
    "make_config",
]

#: Seconds (of the server's clock) that ``expect``, ``request`` and friends
#: wait by default; pass ``timeout=`` to wait for a longer timer.
DEFAULT_TIMEOUT = 30.0
REAL_CLOCK = "real time"
MOCK_CLOCK = ("mock time (trio.testing.MockClock with autojump: it leaps to the next "
              "deadline whenever every task waits, so a wait costs no real time)")


def make_config(overrides: Mapping[str, Any] | None = None) -> Config:
    """A config for tests: known secret and API key, an in-memory SQLite database.

    The database is a named one (``file:...?mode=memory``), so a
    :meth:`Harness.restart` finds what the server stored before it.
    """
    memory = f"sqlite:///file:switchboard-{uuid.uuid4().hex}?mode=memory&cache=shared&uri=true"
    base: dict[str, Any] = {
        "auth": {"secret": TEST_SECRET},
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"}],
        "store": {"url": memory},
        "server": {"port": 0},
    }
    return structure_config(merge(base, overrides or {}))


class Timeout(AssertionError):
    """What a test waited for did not come in time; says on which clock."""

    def __init__(self, what: str, seconds: float, clock: str,
                 unconsumed: list[dict[str, Any]]) -> None:
        super().__init__(
            f"waited {seconds:g} s of {clock} for {what}; pass timeout= to wait longer "
            f"(a longer timer of your plugin needs it); frames received and not "
            f"consumed: {unconsumed}")
        self.seconds = seconds
        self.clock = clock


class ErrorReply(Exception):
    """The server answered a request with an error frame."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(f"{data.get('code')}: {data.get('message')}")
        self.data = data
        self.code: str = data.get("code", "")
        self.field: str | None = data.get("field")


class HandshakeRejected(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class TestClient:
    """A WebSocket client of the JSON-envelope protocol, for tests."""

    __test__ = False  # not a pytest test class

    def __init__(self, stream: trio.abc.Stream, nursery: trio.Nursery, *,
                 answer_pings: bool = True, clock: str = REAL_CLOCK) -> None:
        self._stream = stream
        #: The clock this client's timeouts count on, as said in a :class:`Timeout`.
        self.clock = clock
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._nursery = nursery
        self.answer_pings = answer_pings
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.session: dict[str, Any] = {}
        self._arrived = trio.Event()
        self._closed = trio.Event()
        self._ids = itertools.count(1)
        self._send_lock = trio.Lock()
        self._reading = trio.Event()
        self._reading.set()

    # -- connecting --------------------------------------------------------

    async def _handshake(self, path: str, headers: list[tuple[str, str]]) -> None:
        await self._stream.send_all(self._ws.send(Request(
            host="switchboard.test", target=path,
            extra_headers=[(k.encode(), v.encode()) for k, v in headers])))
        body = b""
        status = 0
        while True:
            data = await self._stream.receive_some(65536)
            if not data:
                raise HandshakeRejected(status or 0, {"message": "connection closed"})
            self._ws.receive_data(bytes(data))
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    self._nursery.start_soon(self._reader)
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise HandshakeRejected(status, {})
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise HandshakeRejected(status, json.loads(body or b"{}"))

    async def _reader(self) -> None:
        parts: list[str] = []
        try:
            while True:
                await self._reading.wait()
                data = await self._stream.receive_some(65536)
                if not data:
                    break
                self._ws.receive_data(bytes(data))
                for event in self._ws.events():
                    if isinstance(event, TextMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            self.frames.append(json.loads("".join(parts)))
                            parts = []
                            self._arrived.set()
                            self._arrived = trio.Event()
                    elif isinstance(event, Ping) and self.answer_pings:
                        await self._send_raw(self._ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        self.close_code = event.code
                        self.close_reason = event.reason
                        try:
                            await self._send_raw(self._ws.send(event.response()))
                        except Exception:
                            pass
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._closed.set()
            self._arrived.set()

    async def _send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    # -- sending -----------------------------------------------------------

    async def send_text(self, text: str) -> None:
        await self._send_raw(self._ws.send(Message(data=text)))

    async def send_bytes(self, data: bytes) -> None:
        await self._send_raw(self._ws.send(Message(data=data)))

    async def emit(self, type: str, data: Any = None, *, id: int | str | None = None) -> None:
        frame: dict[str, Any] = {"type": type, "data": data}
        if id is not None:
            frame["id"] = id
        await self.send_text(json.dumps(frame))

    async def request(self, type: str, data: Any = None, *,
                      timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Emit with an id and wait for its ack; raise :class:`ErrorReply` on an error."""
        ident = next(self._ids)
        await self.emit(type, data, id=ident)
        frame = await self._wait(lambda f: f.get("id") == ident, timeout,
                                 f"the answer to {type!r}")
        if frame["type"] == "error":
            raise ErrorReply(frame["data"])
        return frame["data"]

    # -- receiving ---------------------------------------------------------

    async def _wait(self, match: Any, timeout: float, what: str = "a frame") -> dict[str, Any]:
        with self._deadline(timeout, what):
            while True:
                for i, frame in enumerate(self.frames):
                    if match(frame):
                        return self.frames.pop(i)
                if self._closed.is_set():
                    raise AssertionError(
                        f"connection closed ({self.close_code} {self.close_reason}) "
                        f"while waiting; unconsumed frames: {self.frames}")
                await self._arrived.wait()

    @contextlib.contextmanager
    def _deadline(self, timeout: float, what: str) -> Iterator[None]:
        try:
            with trio.fail_after(timeout):
                yield
        except trio.TooSlowError:
            raise Timeout(what, timeout, self.clock, self.frames) from None

    async def expect(self, type: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Wait for the next frame of ``type`` and return its data (others are kept).

        ``timeout`` counts on the server's clock (the mock clock in the
        ``switchboard`` fixture): past it, :class:`Timeout` says which clock.
        """
        frame = await self._wait(lambda f: f.get("type") == type, timeout, f"event {type!r}")
        return frame["data"]

    async def expect_request(self, type: str, *, timeout: float = DEFAULT_TIMEOUT
                             ) -> tuple[str, Any]:
        """Wait for a server event of ``type`` that asks for an answer: ``(id, data)``."""
        frame = await self._wait(lambda f: f.get("type") == type and "id" in f, timeout,
                                 f"request {type!r}")
        return frame["id"], frame["data"]

    async def ack(self, ident: str, data: Any = None) -> None:
        """Answer a server request (see :meth:`expect_request`)."""
        await self.send_text(json.dumps({"type": "ack", "id": ident, "data": data}))

    async def expect_error(self, code: str | None = None, *,
                           timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        data: dict[str, Any] = await self.expect("error", timeout=timeout)
        if code is not None:
            assert data["code"] == code, data
        return data

    async def expect_closed(self, *, timeout: float = 60) -> tuple[int | None, str | None]:
        """Wait until the server closes the connection: ``(code, reason)``."""
        with self._deadline(timeout, "the connection to close"):
            await self._closed.wait()
        return self.close_code, self.close_reason

    def received(self, type: str) -> list[Any]:
        """Data of the frames of ``type`` received and not yet consumed."""
        return [f["data"] for f in self.frames if f.get("type") == type]

    async def settle(self, seconds: float = 0.001) -> None:
        """Let the server run ``seconds`` of its clock (mock time in ``switchboard``)."""
        await trio.sleep(seconds)

    # -- flow control ------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading from the socket (makes this client a slow consumer)."""
        self._reading = trio.Event()

    def resume_reading(self) -> None:
        self._reading.set()

    async def close(self, code: int = 1000) -> None:
        if not self._closed.is_set():
            try:
                await self._send_raw(self._ws.send(CloseConnection(code=code)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.move_on_after(5):
                await self._closed.wait()
        await self._stream.aclose()


class _ClockHold:
    """Keep an autojump clock still while at least one database call runs.

    Autojump advances time as soon as every task is blocked, and a task waiting
    for a worker thread counts as blocked: without this, a database call (or
    the store's opening and closing) would let the clock leap to the next
    deadline while the thread works, or spin the run loop against the thread
    until it is done.
    """

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self._clock = clock
        self._threshold = clock.autojump_threshold
        self._in_flight = 0

    @property
    def autojump(self) -> bool:
        """Whether the clock autojumps when no database call holds it."""
        threshold = self._threshold if self._in_flight else self._clock.autojump_threshold
        return threshold != math.inf

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self._in_flight == 0:
            self._threshold = self._clock.autojump_threshold
            self._clock.autojump_threshold = math.inf
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._clock.autojump_threshold = self._threshold


class _MemoryKeeper:
    """Keeps a named in-memory SQLite database alive between two servers
    (it lasts as long as one connection to it is open)."""

    def __init__(self, url: str) -> None:
        self._connection: sqlite3.Connection | None = None
        if url.startswith("sqlite:///file:") and "mode=memory" in url:
            uri = url.removeprefix("sqlite:///").replace("&uri=true", "")
            self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Harness:
    """A running server plus helpers to mint tokens, connect clients, move the
    clock and restart the server on the same database."""

    def __init__(self, server: Server, nursery: trio.Nursery, *,
                 clock: trio.testing.MockClock | None = None,
                 plugins: Mapping[str, object] | None = None, listen: bool = False) -> None:
        self.server = server
        self.config = server.config
        self.nursery = nursery
        #: The mock clock of the ``switchboard`` fixture (``None`` on real time).
        self.clock = clock
        #: One hold of the clock for every server this harness runs (restarts
        #: included), so it always knows whether the clock autojumps.
        self._hold = _ClockHold(clock) if clock is not None else None
        self._plugins = plugins
        self._listen = listen
        self._keeper: _MemoryKeeper | None = None

    @classmethod
    async def start(cls, config: Config, nursery: trio.Nursery, *,
                    plugins: Mapping[str, object] | None = None, listen: bool = False,
                    clock: trio.testing.MockClock | None = None) -> Harness:
        """Start a server in ``nursery``: on ``clock`` (a MockClock the test runs
        on) or real time, listening on 127.0.0.1 or only in memory."""
        keeper = _MemoryKeeper(config.store_url)
        hold = _ClockHold(clock) if clock is not None else None
        try:
            server = await cls._run_server(config, nursery, plugins, listen, hold)
        except BaseException:
            keeper.close()
            raise
        harness = cls(server, nursery, clock=clock, plugins=plugins, listen=listen)
        harness._hold = hold
        harness._keeper = keeper
        return harness

    @staticmethod
    async def _run_server(config: Config, nursery: trio.Nursery,
                          plugins: Mapping[str, object] | None, listen: bool,
                          hold: _ClockHold | None) -> Server:
        server = Server(config, plugins=plugins)
        if hold is not None:
            server.store.around_call = hold
        await nursery.start(
            lambda task_status: server.run(listen=listen, task_status=task_status))
        return server

    @property
    def app(self) -> Any:
        """The running server's :class:`switchboard.core.App`."""
        return self.server.app

    @property
    def clock_name(self) -> str:
        """The clock the server and the clients' timeouts run on, in words."""
        return MOCK_CLOCK if self.clock is not None else REAL_CLOCK

    def now(self) -> float:
        """The server's current time (``trio.current_time()``: mock time in the
        ``switchboard`` fixture)."""
        return trio.current_time()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of the server's time pass, running everything due in
        them (timers, heartbeats, expiries). On the mock clock this costs no
        real time."""
        if self.clock is not None and self._hold is not None and not self._hold.autojump:
            # a clock that moves only when told to
            self.clock.jump(seconds)
            await trio.testing.wait_all_tasks_blocked()
        else:
            # an autojump clock leaps to each deadline in turn, and stands still
            # while a database call holds it
            await trio.sleep(seconds)

    async def restart(self) -> None:
        """Stop the server (clients are closed with 1001, as in a deploy) and
        start a new one with the same config and plugins on the same database;
        ``self.server`` and ``self.app`` are the new ones afterwards."""
        await self._stop_server()
        self.server = await self._run_server(self.config, self.nursery, self._plugins,
                                             self._listen, self._hold)

    def token(self, user: str = "u1", tenant: str = "t1", role: str = "agent", *,
              ttl: float | None = 3600, secret: str | None = None, **claims: Any) -> str:
        """A signed token for ``user``; ``ttl`` seconds of wall-clock time (JWT ``exp``
        is wall-clock by definition; ``None`` for no ``exp``)."""
        auth = self.config.auth
        body: dict[str, Any] = {auth.user_claim: user, auth.tenant_claim: tenant,
                                auth.role_claim: role, **claims}
        if ttl is not None:
            body["exp"] = int(time.time() + ttl)
        return jwt.encode(body, secret or auth.secret or TEST_SECRET, algorithm="HS256")

    async def connect(self, user: str = "u1", tenant: str = "t1", role: str = "agent", *,
                      token: str | None = None, path: str | None = None,
                      headers: list[tuple[str, str]] | None = None,
                      answer_pings: bool = True, lockstep: bool = False,
                      query_token: bool = False) -> TestClient:
        """Connect a client over an in-memory stream; it has read its ``session`` frame."""
        token = token if token is not None else self.token(user, tenant, role)
        path = path or self.config.server.ws_path
        headers = list(headers or [])
        if query_token:
            path += f"?token={token}"
        elif token:
            headers.append(("Authorization", f"Bearer {token}"))
        pair = (trio.testing.lockstep_stream_pair if lockstep
                else trio.testing.memory_stream_pair)
        client_stream, server_stream = pair()
        self.server.start_connection(server_stream)
        client = TestClient(client_stream, self.nursery, answer_pings=answer_pings,
                            clock=self.clock_name)
        await client._handshake(path, headers)
        client.session = await client.expect("session")
        return client

    def http(self) -> Any:
        """A quart test client of the HTTP API (in-process)."""
        return self.server.http_app.test_client()

    def api_headers(self, key: str = TEST_API_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def ws_url(self, token: str, path: str | None = None) -> str:
        host, port = self.server.addresses[0]
        return f"ws://{host}:{port}{path or self.config.server.ws_path}?token={token}"

    def http_url(self, path: str = "") -> str:
        host, port = self.server.addresses[0]
        return f"http://{host}:{port}{path}"

    async def _stop_server(self) -> None:
        self.server.shutdown()
        await self.server.wait_stopped()

    async def stop(self) -> None:
        """Stop the server for good (an in-memory database goes with it)."""
        try:
            await self._stop_server()
        finally:
            if self._keeper is not None:
                self._keeper.close()
