"""Behind a reverse proxy: the client's address from ``X-Forwarded-For``, only
when the connection comes from a trusted proxy (``server.trusted_proxies``).

Through the real listener: the address a session was opened from (plain
WebSocket, and python-socketio's client on WebSocket and on long-polling),
and the guests' limit on new visitors per address over HTTP, with the
header from a trusted proxy and the same header from a peer that is not one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

import httpx
import pytest
import socketio
import trio
from hypothesis import given
from hypothesis import strategies as st
from switchboard.core import Session, hookimpl, incoming
from switchboard.core.config import Config, ConfigError
from switchboard.core.forwarded import TrustedProxies, parse_address
from switchboard.testing import Harness, make_config
from trio_websocket import open_websocket_url

TIMEOUT = 10.0
WIDGET = "pk_acme_site_1"


class WhereAmI:
    """``whereami``: the address the session was opened from."""

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [incoming("whereami", None, self.whereami)]

    async def whereami(self, session: Session, data: Any) -> str | None:
        assert session.handshake is not None
        return session.handshake.remote_addr


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"whereami": WhereAmI()}


@pytest.fixture
def switchboard_config(request: pytest.FixtureRequest) -> Config:
    trusted = getattr(request, "param", ["127.0.0.1"])
    # (python-socketio's polling client can lose its close packet on disconnect
    # and wait for its pending poll: a short ping interval ends that poll, as in
    # test_socketio_python)
    return make_config({"server": {"trusted_proxies": trusted},
                        "heartbeat": {"interval": 3.0, "timeout": 5.0},
                        "plugins": {"guests": {
                            "widgets": [{"key": WIDGET, "tenant": "acme", "origins": ["*"]}],
                            "per_ip": {"rate": 0.001, "burst": 2}}}})


# -- the rule ------------------------------------------------------------------

PROXIES = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize("peer, header, client", [
    # the proxy appended the address it was connected from
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    # what the client wrote itself is to the left: not believed
    ("127.0.0.1", "6.6.6.6, 203.0.113.7", "203.0.113.7"),
    # through two trusted proxies (10.0.0.1 in front of 127.0.0.1)
    ("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.1", "203.0.113.7"),
    # every hop trusted: the first one
    ("127.0.0.1", "10.0.0.9, 10.0.0.1", "10.0.0.9"),
    # a hop that is no address ends the walk at the last address known
    ("127.0.0.1", "203.0.113.7, unknown", "127.0.0.1"),
    ("127.0.0.1", "", "127.0.0.1"),
    ("127.0.0.1", " , ", "127.0.0.1"),
    # ports, brackets, quotes, IPv6, a mapped IPv4 peer
    ("127.0.0.1", "203.0.113.7:4711", "203.0.113.7"),
    ("127.0.0.1", "[2001:db8::1]:443", "2001:db8::1"),
    ("127.0.0.1", '"[2001:db8::1]"', "2001:db8::1"),
    ("2001:db8:ffff::2", "2001:db8::1", "2001:db8::1"),
    ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),
    # a peer that is no trusted proxy: the header is anybody's
    ("192.0.2.1", "203.0.113.7", "192.0.2.1"),
    ("192.0.2.1", "127.0.0.1", "192.0.2.1"),
])
def test_the_client_is_the_rightmost_address_no_trusted_proxy_has(
        peer: str, header: str, client: str) -> None:
    assert PROXIES.client(peer, header) == client


@given(st.text(max_size=200))
def test_without_a_trusted_peer_the_header_changes_nothing(header: str) -> None:
    assert TrustedProxies().client("127.0.0.1", header) == "127.0.0.1"
    assert PROXIES.client("192.0.2.1", header) == "192.0.2.1"
    assert PROXIES.client(None, header) is None


@given(st.lists(st.one_of(st.ip_addresses().map(str), st.text(max_size=20)), max_size=40))
def test_the_client_is_the_peer_or_an_address_of_the_header(entries: list[str]) -> None:
    header = ", ".join(entries)
    client = PROXIES.client("127.0.0.1", header)
    assert client is not None
    named = {str(a) for a in map(parse_address, header.split(",")) if a is not None}
    assert client == "127.0.0.1" or client in named


@pytest.mark.parametrize("entry", ["10.0.0.300", "proxy.internal", "10.0.0.0/33", ""])
def test_a_trusted_proxy_that_is_no_address_is_a_config_error(entry: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"server": {"trusted_proxies": ["127.0.0.1", entry]}})
    assert "server.trusted_proxies.1" in str(info.value)


# -- through the listener ------------------------------------------------------------


async def ws_address(live: Harness, forwarded_for: str | None) -> str | None:
    headers = [] if forwarded_for is None else [("X-Forwarded-For", forwarded_for)]
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(live.ws_url(live.token("ann", "acme")),
                                      extra_headers=headers) as ws:
            assert json.loads(await ws.get_message())["type"] == "session"
            await ws.send_message(json.dumps({"type": "whereami", "id": 1}))
            while True:
                frame = json.loads(await ws.get_message())
                if frame.get("type") == "ack" and frame.get("id") == 1:
                    address: str | None = frame["data"]
                    return address


def sio_address(live: Harness, transport: str, forwarded_for: str) -> Any:
    client = socketio.Client(reconnection=False)
    client.connect(live.http_url(), transports=[transport], wait_timeout=TIMEOUT,
                   headers={"X-Forwarded-For": forwarded_for},
                   auth={"token": live.token("ann", "acme")})
    try:
        return client.call("whereami", timeout=TIMEOUT)
    finally:
        client.disconnect()


async def in_thread(fn: Any, *args: Any) -> Any:
    with trio.fail_after(TIMEOUT * 2):
        return await trio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)


async def test_a_session_through_a_trusted_proxy_is_the_clients_on_every_transport(
        switchboard_live: Harness) -> None:
    assert await ws_address(switchboard_live, "6.6.6.6, 203.0.113.7") == "203.0.113.7"
    assert await ws_address(switchboard_live, None) == "127.0.0.1"
    assert await in_thread(sio_address, switchboard_live, "websocket",
                           "203.0.113.8") == "203.0.113.8"
    assert await in_thread(sio_address, switchboard_live, "polling",
                           "6.6.6.6, 203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize("switchboard_config", [["10.0.0.0/8"], []], indirect=True)
async def test_the_header_of_a_peer_that_is_no_trusted_proxy_is_ignored(
        switchboard_live: Harness) -> None:
    assert await ws_address(switchboard_live, "203.0.113.7") == "127.0.0.1"
    assert await in_thread(sio_address, switchboard_live, "websocket",
                           "203.0.113.8") == "127.0.0.1"
    assert await in_thread(sio_address, switchboard_live, "polling",
                           "203.0.113.9") == "127.0.0.1"


async def new_guest(client: httpx.AsyncClient, forwarded_for: str) -> int:
    response = await client.post("/api/v1/guests", json={"widget": WIDGET},
                                 headers={"X-Forwarded-For": forwarded_for})
    return response.status_code


async def test_new_guests_behind_a_trusted_proxy_are_limited_per_client(
        switchboard_live: Harness) -> None:
    async with httpx.AsyncClient(base_url=switchboard_live.http_url(),
                                 timeout=TIMEOUT) as client:
        # a burst of 2 per address: each visitor has its own
        assert [await new_guest(client, "203.0.113.1") for _ in range(3)] == [201, 201, 429]
        assert [await new_guest(client, "203.0.113.2") for _ in range(2)] == [201, 201]
        # a visitor writing another address itself is still known by the proxy's entry
        assert await new_guest(client, "198.51.100.1, 203.0.113.1") == 429


@pytest.mark.parametrize("switchboard_config", [[]], indirect=True)
async def test_without_trusted_proxies_a_forged_header_escapes_no_limit(
        switchboard_live: Harness) -> None:
    async with httpx.AsyncClient(base_url=switchboard_live.http_url(),
                                 timeout=TIMEOUT) as client:
        answers = [await new_guest(client, f"203.0.113.{n}") for n in range(3)]
    assert answers == [201, 201, 429]
