"""Engine.IO sessions with no namespace connected are bounded, per client
address and in all (``socketio.max_unconnected_per_address``,
``socketio.max_unconnected``): a client that never authenticates holds one for
the connect timeout without holding a connection (long-polling), so without a
bound such clients could make the server keep any number of them.

Through the real listener (raw long-polling and WebSocket handshakes, the
addresses told by ``X-Forwarded-For`` from a trusted proxy), and on the mock
clock for the connect timeout that frees them.
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from socketio_fixtures import EnginePolling, socketio_config
from switchboard.core.config import Config
from switchboard.core.transport.engineio import CLOSE_POLL_GRACE
from switchboard.testing import Harness
from trio_websocket import ConnectionRejected, open_websocket_url

TIMEOUT = 10.0
PER_ADDRESS, IN_ALL = 2, 3
CONNECT_TIMEOUT = 45.0  # the default


@pytest.fixture
def switchboard_config() -> Config:
    return socketio_config({
        "server": {"trusted_proxies": ["127.0.0.1"]},
        "socketio": {"max_unconnected_per_address": PER_ADDRESS,
                     "max_unconnected": IN_ALL}})


async def open_polling(client: httpx.AsyncClient, address: str) -> httpx.Response:
    return await client.get("/socket.io/", params={"EIO": "4", "transport": "polling"},
                            headers={"X-Forwarded-For": address})


def sid_of(response: httpx.Response) -> str:
    assert response.status_code == 200 and response.text.startswith("0{"), response.text
    sid: str = json.loads(response.text[1:])["sid"]
    return sid


def too_many(response: httpx.Response, status: int) -> bool:
    return (response.status_code == status
            and response.json()["code"] == "too_many_sessions"
            and response.headers["retry-after"] == "5")


async def test_sessions_without_a_namespace_are_bounded_per_address_and_in_all(
        switchboard_live: Harness) -> None:
    live = switchboard_live
    async with httpx.AsyncClient(base_url=live.http_url(), timeout=TIMEOUT) as client:
        first = sid_of(await open_polling(client, "203.0.113.1"))
        sid_of(await open_polling(client, "203.0.113.1"))
        # the address has its two: a third is refused, on either transport
        assert too_many(await open_polling(client, "203.0.113.1"), 429)
        with pytest.raises(ConnectionRejected) as info, trio.fail_after(TIMEOUT):
            async with open_websocket_url(
                    live.http_url("/socket.io/?EIO=4&transport=websocket").replace("http", "ws"),
                    extra_headers=[("X-Forwarded-For", "203.0.113.1")]):
                pass
        assert info.value.status_code == 429
        # another address has its own, until the server's three are taken
        sid_of(await open_polling(client, "203.0.113.2"))
        assert too_many(await open_polling(client, "203.0.113.3"), 503)
        # a session that connects a namespace no longer counts
        token = live.token("alice", "acme")
        posted = await client.post("/socket.io/", params={"EIO": "4", "transport": "polling",
                                                          "sid": first},
                                   content=f'40{{"token":"{token}"}}')
        assert (posted.status_code, posted.text) == (200, "ok")
        polled = await client.get("/socket.io/", params={"EIO": "4", "transport": "polling",
                                                         "sid": first})
        assert polled.text.startswith("40{")
        sid_of(await open_polling(client, "203.0.113.3"))
        assert too_many(await open_polling(client, "203.0.113.4"), 503)
    metrics = (await (await live.http().get("/metrics")).get_data()).decode()
    assert 'switchboard_handshake_rejects_total{reason="too_many_sessions"} 4.0' in metrics


async def test_the_connect_timeout_frees_what_unconnected_sessions_held(
        switchboard: Harness) -> None:
    polling = EnginePolling(switchboard)
    for _ in range(PER_ADDRESS):
        await polling.handshake()
    status, body = await polling.request("GET")
    assert (status, json.loads(body)["code"]) == (429, "too_many_sessions")
    # closed at the connect timeout, forgotten when their close packet was not
    # polled for within the grace: both places are free again
    await trio.sleep(CONNECT_TIMEOUT + CLOSE_POLL_GRACE + 1)
    await polling.handshake()
    await polling.handshake()
