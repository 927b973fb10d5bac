"""A deploy with many clients: the stop closes every idle connection at once
(close frame, no wait for the peer), the drain timeout bounds it, and after
the restart every client coming back gets its handshake served in turn,
none refused. Real sockets on the real listener, on the autojump mock clock."""

from __future__ import annotations

import base64
import contextlib
import os
import struct
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from switchboard.core import server as server_module
from switchboard.core.config import Config
from switchboard.testing import Harness, make_config

DRAIN_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 10.0


@pytest.fixture
def storm_config() -> Config:
    return make_config({"server": {"drain_timeout": DRAIN_TIMEOUT,
                                   "handshake_timeout": HANDSHAKE_TIMEOUT},
                        "socketio": {"enabled": True}})


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    """The mock clock, leaping to the next deadline only after 0.2 s of real
    time with nothing to run: bytes on their way through loopback sockets
    arrive before it leaps, even on a busy machine."""
    autojump_clock.autojump_threshold = 0.2
    return autojump_clock


@pytest.fixture
async def live(clock: trio.testing.MockClock, nursery: trio.Nursery,
               storm_config: Config) -> AsyncIterator[Harness]:
    harness = await Harness.start(storm_config, nursery, listen=True, clock=clock)
    yield harness
    if not harness.server.shutting_down:
        await harness.stop()


def upgrade_request(path: str, token: str | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{auth}\r\n").encode()


def masked_text(text: str) -> bytes:
    """A client's text frame (masked, as RFC 6455 requires)."""
    payload = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 65536
    size = (bytes([0x80 | len(payload)]) if len(payload) < 126
            else bytes([0x80 | 126]) + struct.pack("!H", len(payload)))
    return b"\x81" + size + mask + body


class RawClient:
    """A WebSocket client that never answers a close frame: it only reads."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = b""

    @classmethod
    async def connect(cls, harness: Harness, request: bytes) -> RawClient:
        host, port = harness.server.addresses[0]
        client = cls(await trio.open_tcp_stream(host, port))
        await client.stream.send_all(request)
        return client

    async def read_until(self, wanted: bytes) -> None:
        while wanted not in self.received:
            chunk = await self.stream.receive_some(65536)
            assert chunk, f"closed before {wanted!r}: {self.received!r}"
            self.received += chunk

    async def read_to_end(self) -> bytes:
        while chunk := await self.stream.receive_some(65536):
            self.received += chunk
        return self.received


async def plain_client(harness: Harness, user: str) -> RawClient:
    client = await RawClient.connect(harness, upgrade_request("/ws", harness.token(user)))
    await client.read_until(b'"session"')
    return client


async def socketio_client(harness: Harness, user: str) -> RawClient:
    client = await RawClient.connect(
        harness, upgrade_request("/socket.io/?EIO=4&transport=websocket"))
    await client.read_until(b"0{")  # the open packet, with the 101
    await client.stream.send_all(masked_text(f'40{{"token":"{harness.token(user)}"}}'))
    await client.read_until(b"40{")
    return client


def close_code(received: bytes) -> int | None:
    """The code of the close frame at the end of what a client received."""
    marker = received.rfind(b"\x88")
    if marker < 0 or marker + 4 > len(received):
        return None
    code: int = struct.unpack("!H", received[marker + 2:marker + 4])[0]
    return code


async def test_a_stop_closes_every_idle_connection_at_once_without_waiting_for_peers(
        live: Harness) -> None:
    plain = [await plain_client(live, f"p{i}") for i in range(60)]
    sio = [await socketio_client(live, f"s{i}") for i in range(40)]
    assert len(live.server.hub.sessions) == 100
    started = trio.current_time()
    await live.stop()
    # none of these clients answers a close frame: the server did not wait for them
    assert trio.current_time() - started < 0.5
    for client in plain + sio:
        assert close_code(await client.read_to_end()) == 1001
    assert live.server.hub.sessions == {}


async def test_the_drain_timeout_bounds_a_stop_with_many_connections_and_one_stuck(
        live: Harness) -> None:
    clients = [await plain_client(live, f"p{i}") for i in range(50)]
    stuck = await live.connect(user="stuck", lockstep=True)  # in memory, reads nothing
    stuck.pause_reading()
    await stuck.emit("ping")
    await stuck.settle(1)
    started = trio.current_time()
    await live.stop()
    assert trio.current_time() - started <= DRAIN_TIMEOUT + 0.01
    for client in clients:
        assert close_code(await client.read_to_end()) == 1001
    assert live.server.hub.sessions == {}


async def test_handshakes_past_the_limit_wait_their_turn_and_none_is_refused(
        clock: trio.testing.MockClock, nursery: trio.Nursery, storm_config: Config,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "HANDSHAKES_IN_FLIGHT", 4)
    harness = await Harness.start(storm_config, nursery, listen=True, clock=clock)
    host, port = harness.server.addresses[0]
    # four connections that send nothing hold every turn until their head times out
    silent = [await trio.open_tcp_stream(host, port) for _ in range(4)]
    await trio.testing.wait_all_tasks_blocked()
    opened = trio.current_time()
    waiting = [await RawClient.connect(harness, upgrade_request("/ws", harness.token(f"w{i}")))
               for i in range(20)]
    # one more gives up before its turn: it is not served
    quitter = await RawClient.connect(harness, upgrade_request("/ws", harness.token("quitter")))
    await quitter.stream.send_eof()
    for client in waiting:
        await client.read_until(b'"session"')
        assert client.received.startswith(b"HTTP/1.1 101 ")
    # they were served once the silent ones had had their time, not refused before
    assert trio.current_time() - opened >= HANDSHAKE_TIMEOUT
    for stream in silent:
        assert await stream.receive_some(100) == b""  # closed: head timeout
    with contextlib.suppress(trio.BrokenResourceError):  # (closed, its head unread: reset)
        assert await quitter.read_to_end() == b""  # no answer
    assert len(harness.server.hub.sessions) == 20
    rejects = harness.app.metrics.handshake_rejects.labels("client_gave_up")
    assert rejects._value.get() == 1
    await harness.stop()


async def test_a_storm_of_handshakes_is_served_in_full(live: Harness) -> None:
    """More connections at once than handshakes in flight: all come in."""
    clients: list[RawClient] = []

    async def one(i: int) -> None:
        client = await RawClient.connect(live, upgrade_request("/ws", live.token(f"u{i}")))
        await client.read_until(b'"session"')
        clients.append(client)

    async with trio.open_nursery() as nursery:
        for i in range(300):
            nursery.start_soon(one, i)
    assert len(clients) == 300
    assert all(c.received.startswith(b"HTTP/1.1 101 ") for c in clients)
    assert len(live.server.hub.sessions) == 300
