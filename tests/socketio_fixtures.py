"""Shared pieces of the Socket.IO client tests: a test plugin, config, helpers and
the driver of real socket.io-client (npm) sockets in a Node process.

Test modules import what they use from here; the fixtures are imported under
their own names so pytest finds them in the importing module.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import shutil
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from filelock import FileLock
from switchboard.core import App, Args, Session, hookimpl, incoming, user_room
from switchboard.core.config import Config, merge
from switchboard.core.transport.engineio import EngineSocket
from switchboard.testing import TEST_API_KEY, HandshakeRejected, Harness, make_config
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

#: Upper bound for anything that should happen at once over loopback: generous, as the
#: suite runs on parallel workers of a busy machine and only a failure waits it out.
TIMEOUT = 60.0
SOCKETIO_DIR = Path(__file__).parent / "socketio"
DRIVER = SOCKETIO_DIR / "driver.mjs"
NAMESPACES = ["/", "/atendimento"]


# -- a plugin with handlers that exercise the protocol ----------------------


class EchoPlugin:
    """Test-only events: ``echo`` acks its payload (binary included),
    ``echo:event`` sends it back as an ``echoed`` event, ``ask:me`` asks the
    client a ``question`` (a server-to-client call) and acks the client's answer.

    With every argument (``args=True``): ``echo:args`` acks them all back;
    ``emit:args`` sends them back as the arguments of a ``multi`` event to this
    session and, through the hub, of a ``multi:user`` event to every session of
    the user; ``ask:args`` asks a ``question`` with them and acks
    ``{"first": ..., "all": [...]}`` of the client's answer."""

    app: App

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [
            incoming("echo", None, self.echo),
            incoming("echo:event", None, self.echo_event),
            incoming("ask:me", None, self.ask),
            incoming("echo:args", None, self.echo_args, args=True),
            incoming("emit:args", None, self.emit_args, args=True),
            incoming("ask:args", None, self.ask_args, args=True),
        ]

    async def echo_args(self, session: Session, args: list[Any]) -> Args:
        return Args(*args)

    async def emit_args(self, session: Session, args: list[Any]) -> dict[str, Any]:
        session.emit("multi", Args(*args))
        await self.app.publish(session.tenant_id, user_room(session.user_id), "multi:user",
                               Args(*args))
        return {"sent": len(args)}

    async def ask_args(self, session: Session, args: list[Any]) -> dict[str, Any]:
        answer = await session.call("question", Args(*args), timeout=5, args=True)
        first = await session.call("question", Args(*args), timeout=5)
        return {"first": first, "all": answer}

    async def echo(self, session: Session, data: Any) -> Any:
        return data

    async def echo_event(self, session: Session, data: Any) -> dict[str, Any]:
        session.emit("echoed", data)
        return {"sent": True}

    async def ask(self, session: Session, data: Any) -> Any:
        answer = await session.call("question", data, timeout=5)
        return {"client_said": answer}


def socketio_config(overrides: Mapping[str, Any] | None = None) -> Config:
    """The test config with both namespaces and short, test-friendly limits."""
    base: dict[str, Any] = {
        "socketio": {"namespaces": NAMESPACES},
        # customers may join these rooms (agents may join any room of their tenant)
        "rooms": {"public_patterns": ["lobby:*"]},
    }
    return make_config(merge(base, overrides or {}))


# -- helpers ----------------------------------------------------------------


async def publish(live: Harness, body: Any) -> dict[str, Any]:
    """POST /api/v1/emit as the backend does; expect 202."""
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            response = await http.post(live.http_url("/api/v1/emit"), json=body,
                                       headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


def engine(live: Harness, sid: str) -> EngineSocket:
    """The server side of the Engine.IO session ``sid``."""
    assert live.server.engineio is not None
    return live.server.engineio.engines[sid]


async def wait_until(predicate: Callable[[], bool], *, timeout: float = TIMEOUT,
                     step: float = 0.02) -> None:
    """Poll ``predicate`` (state of real processes or threads) until it holds."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  (nothing to wait on but the state)
            await trio.sleep(step)


# -- raw Engine.IO on the mock clock -------------------------------------------------


class EnginePolling:
    """Raw Engine.IO long-polling requests through the HTTP app (in-process, so
    on the ``switchboard`` fixture's mock clock), as the protocol's own test
    suite sends them."""

    def __init__(self, harness: Harness, path: str = "/socket.io/") -> None:
        self.http = harness.http()
        self.path = path

    def url(self, sid: str | None = None, query: str = "EIO=4&transport=polling") -> str:
        return f"{self.path}?{query}" + (f"&sid={sid}" if sid else "")

    async def request(self, method: str, sid: str | None = None, body: str | None = None,
                      *, query: str = "EIO=4&transport=polling",
                      headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """One request; its status and body text."""
        response = await self.http.open(self.url(sid, query), method=method,
                                        data=body, headers=dict(headers or {}))
        return response.status_code, (await response.get_data()).decode()

    async def handshake(self, token: str | None = None) -> str:
        """Open a session; its sid."""
        query = "EIO=4&transport=polling" + (f"&token={token}" if token else "")
        status, body = await self.request("GET", query=query)
        assert status == 200 and body.startswith("0{"), (status, body)
        sid: str = json.loads(body[1:])["sid"]
        return sid

    async def get(self, sid: str) -> tuple[int, str]:
        return await self.request("GET", sid)

    async def post(self, sid: str, body: str) -> tuple[int, str]:
        return await self.request("POST", sid, body)


class WebSocketClosed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class MemoryWebSocket:
    """A raw WebSocket client over an in-memory stream into the server (the
    ``switchboard`` fixture: mock clock, no port)."""

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.close_code: int | None = None
        self._messages: deque[str | bytes] = deque()
        self._parts: list[Any] = []

    @classmethod
    async def connect(cls, harness: Harness, target: str,
                      headers: Mapping[str, str] | None = None) -> MemoryWebSocket:
        """Open a WebSocket to ``target``; raise ``HandshakeRejected`` if refused."""
        client_stream, server_stream = trio.testing.memory_stream_pair()
        harness.server.start_connection(server_stream)
        ws = WSConnection(ConnectionType.CLIENT)
        await client_stream.send_all(ws.send(Request(
            host="switchboard.test", target=target, extra_headers=list((headers or {}).items()))))
        status, body = 0, b""
        while True:
            data = await client_stream.receive_some(65536)
            if not data:
                raise HandshakeRejected(status, {"message": "connection closed"})
            ws.receive_data(data)
            events = ws.events()
            for event in events:
                if isinstance(event, AcceptConnection):
                    socket = cls(client_stream, ws)
                    await socket._take(events)  # frames that came with the answer
                    return socket
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise HandshakeRejected(status, {})
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise HandshakeRejected(status, json.loads(body or b"{}"))

    async def send(self, message: str | bytes) -> None:
        await self.stream.send_all(self.ws.send(Message(data=message)))

    async def receive(self) -> str | bytes:
        """The next message; raise :class:`WebSocketClosed` once the server closed."""
        while not self._messages:
            if self.close_code is not None:
                raise WebSocketClosed(self.close_code)
            data = await self.stream.receive_some(65536)
            if not data:
                self.close_code = self.close_code or 1006
                continue
            self.ws.receive_data(data)
            await self._take(self.ws.events())
        return self._messages.popleft()

    async def _take(self, events: Iterator[Event]) -> None:
        """Handle what the server sent: messages are kept for ``receive``."""
        for event in events:
            if isinstance(event, TextMessage | BytesMessage):
                self._parts.append(event.data)
                if event.message_finished:
                    joined = ("" if isinstance(event, TextMessage) else b"").join(self._parts)
                    self._messages.append(joined)
                    self._parts = []
            elif isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                # (a server that stops does not wait for this answer)
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.stream.send_all(self.ws.send(event.response()))

    async def receive_until(self, wanted: str) -> list[str | bytes]:
        """Messages up to and including ``wanted``."""
        messages = [await self.receive()]
        while messages[-1] != wanted:
            messages.append(await self.receive())
        return messages

    async def receive_until_prefix(self, prefix: str) -> list[str | bytes]:
        """Messages up to and including the first that starts with ``prefix``."""
        messages = [await self.receive()]
        while not str(messages[-1]).startswith(prefix):
            messages.append(await self.receive())
        return messages

    async def closed(self) -> int | None:
        """Read until the server closes; its close code."""
        try:
            while True:
                await self.receive()
        except WebSocketClosed as exc:
            return exc.code

    async def aclose(self) -> None:
        await self.stream.aclose()


# -- socket.io-client (npm) in Node ---------------------------------------------


@pytest.fixture(scope="session", name="node_modules")
def node_modules_fixture() -> Path:
    """Install the Node client (``npm ci``) once, if it (or another package of
    ``package.json``) is not there yet.

    The npm tests are the judgment of the Socket.IO server by the reference
    client: without Node they must fail, not silently pass or skip.

    Test processes running side by side (pytest-xdist workers) take a file
    lock around the check and the install: ``npm ci`` first deletes
    ``node_modules``, so a second one running would pull the client from under
    the first's tests. A marker written after a successful install, holding a
    digest of the lock file, tells a complete install (of this lock file) from
    an interrupted one.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are required for the socket.io-client tests")
    modules = SOCKETIO_DIR / "node_modules"
    marker = modules / ".switchboard-installed"
    digest = hashlib.sha256((SOCKETIO_DIR / "package-lock.json").read_bytes()).hexdigest()
    with FileLock(SOCKETIO_DIR / ".npm-ci.lock", timeout=600):
        if not marker.is_file() or marker.read_text() != digest:
            result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SOCKETIO_DIR,
                                    capture_output=True, text=True, timeout=300, check=False)
            if result.returncode != 0:
                pytest.fail(f"npm ci failed:\n{result.stdout}\n{result.stderr}")
            marker.write_text(digest)
    return modules


class NodeClients:
    """socket.io-client sockets in one Node process, driven line by line."""

    def __init__(self, process: trio.Process, base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self.reports: list[dict[str, Any]] = []
        self.stderr = b""
        self._arrived = trio.Event()
        self._ended = trio.Event()
        self._refs = itertools.count(1)

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        try:
            while chunk := await self.process.stdout.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self.reports.append(json.loads(line))
                self._arrived.set()
                self._arrived = trio.Event()
        finally:
            self._ended.set()
            self._arrived.set()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self.stderr += chunk

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(command).encode() + b"\n")

    async def expect(self, client: str | None, type: str, *, timeout: float = TIMEOUT,
                     **fields: Any) -> dict[str, Any]:
        """Wait for (and consume) the first report of ``client`` of ``type`` whose
        ``fields`` have the given values."""

        def matches(report: dict[str, Any]) -> bool:
            return (report.get("client") == client and report.get("type") == type
                    and all(report.get(k) == v for k, v in fields.items()))

        try:
            with trio.fail_after(timeout):
                while True:
                    for i, report in enumerate(self.reports):
                        if matches(report):
                            return self.reports.pop(i)
                    errors = [r for r in self.reports if r.get("type") == "error"]
                    if errors or self._ended.is_set():
                        raise AssertionError(f"driver error or exit: {errors}")
                    await self._arrived.wait()
        except (trio.TooSlowError, AssertionError) as exc:
            raise AssertionError(
                f"no {type} report for {client} with {fields}; reports: {self.reports}; "
                f"stderr: {self.stderr.decode(errors='replace')}") from exc

    def received(self, client: str, type: str, **fields: Any) -> list[dict[str, Any]]:
        """Reports of ``client`` of ``type`` received and not consumed."""
        return [r for r in self.reports if r.get("client") == client and r.get("type") == type
                and all(r.get(k) == v for k, v in fields.items())]

    async def connect(self, client: str, token: str, *, namespace: str = "/",
                      answers: Mapping[str, Any] | None = None, page: str | None = None,
                      **opts: Any) -> None:
        """Open a socket with ``auth: {token}`` (and ``opts``); do not wait.

        With ``page`` (an origin), the socket acts as one of a browser page of
        that origin: it sends it as ``Origin`` and enforces CORS on polling.
        """
        url = self.base_url + ("" if namespace == "/" else namespace)
        await self.send(op="connect", client=client, url=url,
                        opts={"auth": {"token": token}, **opts}, answers=dict(answers or {}),
                        page=page)

    async def connected(self, client: str, token: str, **kwargs: Any) -> dict[str, Any]:
        """Open a socket and wait for its ``connect``; return the report."""
        await self.connect(client, token, **kwargs)
        return await self.expect(client, "connect")

    async def call(self, client: str, event: str, *args: Any,
                   timeout: float = TIMEOUT) -> dict[str, Any]:
        """Emit with an ack callback and wait for the ack report (``args``, ``error``)."""
        ref = next(self._refs)
        await self.send(op="emit", client=client, event=event, args=list(args), ack=True,
                        ref=ref, timeout=int(timeout * 1000))
        return await self.expect(client, "ack", ref=ref, timeout=timeout + 1)

    async def emit(self, client: str, event: str, *args: Any) -> None:
        await self.send(op="emit", client=client, event=event, args=list(args))

    async def state(self, client: str) -> dict[str, Any]:
        ref = next(self._refs)
        await self.send(op="state", client=client, ref=ref)
        return await self.expect(client, "state", ref=ref)

    async def close(self) -> None:
        try:
            await self.send(op="exit")
            assert self.process.stdin is not None
            await self.process.stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        with trio.move_on_after(5):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()


@pytest.fixture(name="node")
async def node_fixture(node_modules: Path,
                       switchboard_live: Harness) -> AsyncIterator[NodeClients]:
    """A Node process of socket.io-client sockets aimed at ``switchboard_live``."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(partial(
            trio.run_process, ["node", str(DRIVER)], cwd=SOCKETIO_DIR, check=False,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        clients = NodeClients(process, switchboard_live.http_url())
        nursery.start_soon(clients._read_stdout)
        nursery.start_soon(clients._read_stderr)
        await clients.expect(None, "ready")
        yield clients
        await clients.close()


def from_wire(value: Any) -> Any:
    """The driver's JSON with ``{"$bytes": ...}`` turned back into bytes."""
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        if "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        return {k: from_wire(v) for k, v in value.items()}
    return value


def to_wire(data: bytes) -> dict[str, str]:
    return {"$bytes": base64.b64encode(data).decode()}
