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

import itertools
import json
import time
from collections.abc import Mapping
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
    "make_config",
]


def make_config(overrides: Mapping[str, Any] | None = None) -> Config:
    """A config for tests: known secret and API key, in-memory SQLite."""
    base: dict[str, Any] = {
        "auth": {"secret": TEST_SECRET},
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"}],
        "store": {"url": "sqlite://"},
        "server": {"port": 0},
    }
    return structure_config(merge(base, overrides or {}))


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
                 answer_pings: bool = True) -> None:
        self._stream = stream
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
            host="switchboard.test", target=path, extra_headers=headers)))
        body = b""
        status = 0
        while True:
            data = await self._stream.receive_some(65536)
            if not data:
                raise HandshakeRejected(status or 0, {"message": "connection closed"})
            self._ws.receive_data(data)
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
                self._ws.receive_data(data)
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

    async def request(self, type: str, data: Any = None, *, timeout: float = 30) -> Any:
        """Emit with an id and wait for its ack; raise :class:`ErrorReply` on an error."""
        ident = next(self._ids)
        await self.emit(type, data, id=ident)
        frame = await self._wait(lambda f: f.get("id") == ident, timeout)
        if frame["type"] == "error":
            raise ErrorReply(frame["data"])
        return frame["data"]

    # -- receiving ---------------------------------------------------------

    async def _wait(self, match: Any, timeout: float) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                for i, frame in enumerate(self.frames):
                    if match(frame):
                        return self.frames.pop(i)
                if self._closed.is_set():
                    raise AssertionError(
                        f"connection closed ({self.close_code} {self.close_reason}) "
                        f"while waiting; unconsumed frames: {self.frames}")
                await self._arrived.wait()

    async def expect(self, type: str, *, timeout: float = 30) -> Any:
        """Wait for the next frame of ``type`` and return its data (others are kept)."""
        return (await self._wait(lambda f: f.get("type") == type, timeout))["data"]

    async def expect_request(self, type: str, *, timeout: float = 30) -> tuple[str, Any]:
        """Wait for a server event of ``type`` that asks for an answer: ``(id, data)``."""
        frame = await self._wait(lambda f: f.get("type") == type and "id" in f, timeout)
        return frame["id"], frame["data"]

    async def ack(self, ident: str, data: Any = None) -> None:
        """Answer a server request (see :meth:`expect_request`)."""
        await self.send_text(json.dumps({"type": "ack", "id": ident, "data": data}))

    async def expect_error(self, code: str | None = None, *, timeout: float = 30) -> dict[str, Any]:
        data: dict[str, Any] = await self.expect("error", timeout=timeout)
        if code is not None:
            assert data["code"] == code, data
        return data

    async def expect_closed(self, *, timeout: float = 60) -> tuple[int | None, str | None]:
        with trio.fail_after(timeout):
            await self._closed.wait()
        return self.close_code, self.close_reason

    def received(self, type: str) -> list[Any]:
        """Data of the frames of ``type`` received and not yet consumed."""
        return [f["data"] for f in self.frames if f.get("type") == type]

    async def settle(self, seconds: float = 0.001) -> None:
        """Let the server run ``seconds`` of (mock) time."""
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


class Harness:
    """A running server plus helpers to mint tokens and connect clients."""

    def __init__(self, server: Server, nursery: trio.Nursery, *,
                 plugins: Mapping[str, object] | None = None, listen: bool = False,
                 prepare: Any = None) -> None:
        self.server = server
        self.config = server.config
        self.nursery = nursery
        self._plugins = plugins
        self._listen = listen
        self._prepare = prepare

    @property
    def app(self) -> Any:
        return self.server.app

    def token(self, user: str = "u1", tenant: str = "t1", role: str = "agent", *,
              ttl: float | None = 3600, secret: str | None = None, **claims: Any) -> str:
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
        client = TestClient(client_stream, self.nursery, answer_pings=answer_pings)
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

    async def stop(self) -> None:
        self.server.shutdown()
        await self.server.wait_stopped()

    async def restart(self) -> None:
        """Stop the server and start a new one with the same config and plugins
        (so on the same database, which must then be a file or PostgreSQL, not
        ``sqlite://``): what survives a restart is what was stored. Clients of
        the old server are disconnected; connect new ones."""
        await self.stop()
        server = Server(self.config, plugins=self._plugins)
        if self._prepare is not None:
            self._prepare(server)
        listen = self._listen
        await self.nursery.start(
            lambda task_status: server.run(listen=listen, task_status=task_status))
        self.server = server
