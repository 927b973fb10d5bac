"""Frontends in a real browser: socket.io-client's browser bundle and the
native ``WebSocket`` in a page of another origin, in Debian's chromium driven
by Playwright (its sync API, in a worker thread of the trio test).

The page is served by a small HTTP server of the test on its own port, so the
browser treats the Switchboard server as another origin, as a deployed
frontend's browser does: long-polling goes through the browser's CORS checks
(with and without credentials), the WebSocket handshake carries the page's
``Origin``, binary data arrives as an ``ArrayBuffer``. Fails, never skips,
when chromium is missing (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pytest
import trio
from socketio_fixtures import (  # noqa: F401  (fixtures are found by name)
    EchoPlugin,
    node_modules_fixture,
    socketio_config,
)
from switchboard.testing import Harness

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Milliseconds the browser waits for what a step expects.
WAIT_MS = 15_000

#: What the page knows how to do, called with ``page.evaluate``: clients are
#: kept by name in ``window.clients`` with every event they received (binary
#: data as ``{"bytes": [...]}``).
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>frontend</title>
<script src="/socket.io.min.js"></script>
<script>
window.clients = {};
window.plain = null;
const encode = (value) => value instanceof ArrayBuffer
  ? {bytes: Array.from(new Uint8Array(value))} : value;
window.openClient = (name, url, token, options) => new Promise((resolve) => {
  const socket = io(url, Object.assign(
    token ? {auth: {token}, reconnection: false, timeout: 10000}
      : {reconnection: false, timeout: 10000}, options));
  const client = {socket, events: []};
  window.clients[name] = client;
  socket.onAny((event, ...args) => client.events.push([event, args.map(encode)]));
  socket.on("connect", () => resolve(
    {connected: true, transport: socket.io.engine.transport.name}));
  socket.on("connect_error", (error) => resolve(
    {connected: false, error: String(error && error.message)}));
});
window.call = async (name, event, data, asBytes) => encode(
  await window.clients[name].socket.timeout(10000).emitWithAck(
    event, asBytes ? new Uint8Array(data) : data));
window.transportOf = (name) => window.clients[name].socket.io.engine.transport.name;
window.openPlain = (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  window.plain = {ws, frames: [], closed: null};
  ws.onmessage = (message) => {
    window.plain.frames.push(JSON.parse(message.data));
    if (window.plain.frames.length === 1) resolve(window.plain.frames[0]);
  };
  ws.onclose = (event) => {
    window.plain.closed = event.code;
    resolve({closed: event.code});
  };
});
</script></head><body>frontend</body></html>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium: the test fails (not skips) without it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium "
                    "(apt-get install -y chromium; .ci/run does it)")
    return CHROMIUM


async def serve_files(files: Mapping[str, tuple[str, bytes]], nursery: trio.Nursery) -> str:
    """Serve ``files`` (path: (content type, body)) on a port of 127.0.0.1 of
    their own; the origin they are served from."""

    async def answer(stream: trio.SocketStream) -> None:
        head = b""
        with trio.move_on_after(10):
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                head += chunk
            else:
                path = head.split(b" ", 2)[1].decode().split("?")[0]
                kind, body = files.get(path, ("text/plain", b"not found"))
                status = "200 OK" if path in files else "404 Not Found"
                await stream.send_all(
                    f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                    f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


def in_browser(chromium: str, page_url: str,
               flow: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Open ``page_url`` in chromium and run ``flow(page)`` (in a worker thread);
    what it returns, plus the page's uncaught errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_url)
            seen = flow(page)
            seen["page_errors"] = errors
            return seen
        finally:
            browser.close()


def wait_for_event(page: Any, name: str, event: str) -> Any:
    """The arguments of the first ``event`` client ``name`` received."""
    page.wait_for_function("([name, event]) => window.clients[name].events.some("
                           "(e) => e[0] === event)", arg=[name, event])
    return page.evaluate("([name, event]) => window.clients[name].events.find("
                         "(e) => e[0] === event)[1]", [name, event])


@pytest.fixture
async def frontend(nursery: trio.Nursery, node_modules: Any) -> str:
    """The origin of the frontend's page (``/``, with socket.io-client's
    browser bundle at ``/socket.io.min.js``)."""
    bundle = (node_modules / "socket.io-client" / "dist" / "socket.io.min.js").read_bytes()
    return await serve_files({"/": ("text/html; charset=utf-8", PAGE),
                              "/socket.io.min.js": ("text/javascript", bundle)}, nursery)


#: socket.io-client's options for each client of the page: every transport a
#: frontend may use, and cookies sent along (``withCredentials``).
CLIENTS = {
    "polling": {"transports": ["polling"]},
    "websocket": {"transports": ["websocket"]},
    "upgrade": {},
    "credentials": {"transports": ["polling"], "withCredentials": True},
}
#: The token in an ``Authorization`` header instead of ``auth`` (seed 004's
#: second way): a browser sends it on long-polling's requests (after a CORS
#: preflight), not on the WebSocket's handshake, so the client starts on
#: long-polling and upgrades with its session id.
HEADER = "header"


async def test_socketio_clients_in_a_page_of_another_origin(
        chromium: str, frontend: str, nursery: trio.Nursery) -> None:
    """On every transport: connect with a token in ``auth``, join a room with
    an ack, receive what a backend publishes to it, send binary data and get
    it back as an ``ArrayBuffer`` (ack and event)."""
    config = socketio_config({"server": {"allowed_origins": [frontend]}})
    harness = await Harness.start(config, nursery, plugins={"echo": EchoPlugin}, listen=True)
    server = f"http://127.0.0.1:{harness.server.port}"
    token = harness.token("alice", "acme")

    async def publish() -> None:
        await harness.app.publish("acme", "lead:1", "lead:changed", {"leadId": "1"})

    def flow(page: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for name, options in CLIENTS.items():
            connected = page.evaluate("([n, u, t, o]) => window.openClient(n, u, t, o)",
                                      [name, server, token, options])
            joined = page.evaluate("([n]) => window.call(n, 'room:join', {room: 'lead:1'})",
                                   [name])
            echoed = page.evaluate("([n]) => window.call(n, 'echo', [1, 2, 255], true)",
                                   [name])
            sent = page.evaluate("([n]) => window.call(n, 'echo:event', [0, 7], true)", [name])
            seen[name] = {"connected": connected, "joined": joined, "echoed": echoed,
                          "sent": sent, "event": wait_for_event(page, name, "echoed")}
        seen[HEADER] = {"connected": page.evaluate(
            "([n, u, o]) => window.openClient(n, u, null, o)",
            [HEADER, server, {"extraHeaders": {"authorization": f"Bearer {token}"}}])}
        seen[HEADER]["joined"] = page.evaluate(
            "([n]) => window.call(n, 'room:join', {room: 'lead:1'})", [HEADER])
        for name in ("upgrade", HEADER):
            page.wait_for_function("(n) => window.transportOf(n) === 'websocket'", arg=name)
        trio.from_thread.run(publish)
        for name in [*CLIENTS, HEADER]:
            seen[name]["published"] = wait_for_event(page, name, "lead:changed")
        return seen

    try:
        seen = await trio.to_thread.run_sync(in_browser, chromium, frontend + "/", flow)
    finally:
        await harness.stop()
    assert seen.pop("page_errors") == []
    for name, options in CLIENTS.items():
        got = seen[name]
        # (an upgrading client may be on either when its namespace is connected)
        transports = options.get("transports", ["polling", "websocket"])
        assert got["connected"]["connected"] is True, name
        assert got["connected"]["transport"] in transports, name
        assert got["joined"] == {"room": "lead:1"}, name
        assert got["echoed"] == {"bytes": [1, 2, 255]}, name
        assert got["sent"] == {"sent": True}, name
        assert got["event"] == [{"bytes": [0, 7]}], name
        assert got["published"] == [{"leadId": "1"}], name
    assert seen[HEADER]["connected"]["connected"] is True
    assert seen[HEADER]["joined"] == {"room": "lead:1"}
    assert seen[HEADER]["published"] == [{"leadId": "1"}]


async def test_a_page_of_an_origin_not_allowed_cannot_connect(
        chromium: str, frontend: str, nursery: trio.Nursery) -> None:
    """``server.allowed_origins`` names another origin: the browser's
    long-polling fails its CORS check and the WebSocket handshake is refused,
    for socket.io-client and the plain WebSocket alike."""
    config = socketio_config({"server": {"allowed_origins": ["https://app.example.com"]}})
    harness = await Harness.start(config, nursery, plugins={"echo": EchoPlugin}, listen=True)
    server = f"http://127.0.0.1:{harness.server.port}"
    token = harness.token("alice", "acme")

    def flow(page: Any) -> dict[str, Any]:
        seen = {name: page.evaluate("([n, u, t, o]) => window.openClient(n, u, t, o)",
                                    [name, server, token, options])
                for name, options in CLIENTS.items()}
        seen["plain"] = page.evaluate("(u) => window.openPlain(u)", harness.ws_url(token))
        return seen

    try:
        seen = await trio.to_thread.run_sync(in_browser, chromium, frontend + "/", flow)
    finally:
        await harness.stop()
    # (the page sees the failures, not their reasons: the browser hides them)
    assert {name: got["connected"] for name, got in seen.items() if name in CLIENTS} == {
        name: False for name in CLIENTS}
    assert seen["polling"]["error"] == "xhr poll error"
    assert seen["websocket"]["error"] == "websocket error"
    assert seen["plain"] == {"closed": 1006}
    assert len(seen["page_errors"]) == 0


async def test_the_plain_websocket_from_a_page_of_another_origin(
        chromium: str, frontend: str, nursery: trio.Nursery) -> None:
    """The browser's own ``WebSocket`` on the plain protocol: the session
    first, an acked join, then what a backend publishes to the room."""
    config = socketio_config({"server": {"allowed_origins": [frontend]}})
    harness = await Harness.start(config, nursery, listen=True)
    token = harness.token("alice", "acme")

    async def publish() -> None:
        await harness.app.publish("acme", "lead:1", "lead:changed", {"leadId": "1"})

    def flow(page: Any) -> dict[str, Any]:
        session = page.evaluate("(u) => window.openPlain(u)", harness.ws_url(token))
        page.evaluate("() => window.plain.ws.send(JSON.stringify("
                      "{type: 'room:join', data: {room: 'lead:1'}, id: 1}))")
        page.wait_for_function("() => window.plain.frames.some((f) => f.id === 1)")
        trio.from_thread.run(publish)
        page.wait_for_function(
            "() => window.plain.frames.some((f) => f.type === 'lead:changed')")
        return {"session": session, "frames": page.evaluate("() => window.plain.frames")}

    try:
        seen = await trio.to_thread.run_sync(in_browser, chromium, frontend + "/", flow)
    finally:
        await harness.stop()
    assert seen["page_errors"] == []
    assert seen["session"]["type"] == "session"
    assert seen["session"]["data"]["user_id"] == "alice"
    frames = seen["frames"]
    assert {"type": "ack", "id": 1, "data": {"room": "lead:1"}} in frames
    assert {"type": "lead:changed", "data": {"leadId": "1"}} in frames
