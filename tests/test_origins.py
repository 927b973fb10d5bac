"""``server.allowed_origins``: one list, one meaning, for the plain WebSocket, the
Engine.IO WebSocket and Engine.IO long-polling (mock clock, in-memory transports;
the real socket.io-client's view is in test_socketio_npm)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import trio
from socketio_fixtures import EnginePolling, MemoryWebSocket, socketio_config
from switchboard.core.origins import entry_problem, origin_allowed
from switchboard.testing import HandshakeRejected, Harness

APP = "https://app.example.test"
EVIL = "https://evil.example.test"
FORBIDDEN = {"code": 4, "message": "Forbidden"}


def allowing(origins: list[str]) -> Any:
    """Run a test with ``server.allowed_origins = origins``."""
    return pytest.mark.parametrize(
        "switchboard_config", [socketio_config({"server": {"allowed_origins": origins}})],
        ids=[json.dumps(origins)])


# -- the rule ----------------------------------------------------------------------


@pytest.mark.parametrize(("allowed", "origin", "verdict"), [
    (["*"], APP, True),
    (["*"], "null", True),
    ([APP], APP, True),
    ([APP], "HTTPS://APP.Example.TEST", True),
    (["HTTPS://APP.EXAMPLE.TEST"], APP, True),
    ([APP], EVIL, False),
    ([APP], APP + ":8443", False),
    ([APP], "http://app.example.test", False),
    (["https://*.example.test"], APP, True),
    (["https://*.example.test"], "https://a.b.example.test", True),
    (["https://*.example.test"], "https://example.test", False),
    (["https://*.example.test"], "https://app.example.test.evil.test", False),
    (["https://*.example.test"], "https://evilexample.test", False),
    (["http://localhost:*"], "http://localhost:5173", True),
    ([], APP, False),
    ([], "null", False),
    ([], None, True),
    ([APP], None, True),
])
def test_origin_is_allowed_by_an_exact_entry_or_a_pattern(
        allowed: list[str], origin: str | None, verdict: bool) -> None:
    assert origin_allowed(allowed, origin) is verdict


@pytest.mark.parametrize("entry", ["*", "null", APP, "https://*.example.test",
                                   "http://localhost:*", "http://127.0.0.1:8080"])
def test_origins_patterns_and_star_are_valid_entries(entry: str) -> None:
    assert entry_problem(entry) is None


@pytest.mark.parametrize("entry", ["", "app.example.test", APP + "/", APP + "/app",
                                   "*.example.test", "https://", "https://a b.test"])
def test_entry_that_no_origin_can_equal_is_refused(entry: str) -> None:
    assert entry_problem(entry) is not None


# -- plain WebSocket ------------------------------------------------------------------


async def test_plain_websocket_from_any_origin_is_allowed_by_default(
        switchboard: Harness) -> None:
    client = await switchboard.connect(headers=[("Origin", EVIL)])
    assert await client.request("room:join", {"room": "lead:1"}) == {"room": "lead:1"}


@allowing([])
async def test_empty_list_refuses_every_browser_on_the_plain_websocket(
        switchboard: Harness) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect(headers=[("Origin", APP)])
    assert info.value.status == 403
    assert info.value.body["code"] == "forbidden_origin"
    # a client that sends no Origin is no browser page: allowed
    client = await switchboard.connect()
    assert client.session["user_id"] == "u1"


@allowing(["https://*.example.test"])
async def test_pattern_decides_on_the_plain_websocket(switchboard: Harness) -> None:
    await switchboard.connect(headers=[("Origin", APP)])
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect(headers=[("Origin", "https://example.test.evil")])
    assert info.value.status == 403


# -- Engine.IO WebSocket --------------------------------------------------------------

EIO_WS = "/socket.io/?EIO=4&transport=websocket"


async def test_engineio_websocket_from_any_origin_is_allowed_by_default(
        switchboard: Harness) -> None:
    ws = await MemoryWebSocket.connect(switchboard, EIO_WS, {"Origin": EVIL})
    assert str(await ws.receive()).startswith("0{")


@allowing([])
async def test_empty_list_refuses_every_browser_on_the_engineio_websocket(
        switchboard: Harness) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await MemoryWebSocket.connect(switchboard, EIO_WS, {"Origin": APP})
    assert (info.value.status, info.value.body) == (403, FORBIDDEN)
    ws = await MemoryWebSocket.connect(switchboard, EIO_WS)
    assert str(await ws.receive()).startswith("0{")


@allowing(["https://*.example.test"])
async def test_pattern_decides_on_the_engineio_websocket(switchboard: Harness) -> None:
    ws = await MemoryWebSocket.connect(switchboard, EIO_WS, {"Origin": APP})
    assert str(await ws.receive()).startswith("0{")
    with pytest.raises(HandshakeRejected) as info:
        await MemoryWebSocket.connect(switchboard, EIO_WS, {"Origin": "https://evil.test"})
    assert info.value.status == 403


# -- Engine.IO long-polling --------------------------------------------------------------


async def handshake(polling: EnginePolling,
                    headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    return await polling.request("GET", headers=headers)


async def test_polling_from_any_origin_gets_its_cors_headers_by_default(
        switchboard: Harness) -> None:
    response = await switchboard.http().get("/socket.io/?EIO=4&transport=polling",
                                            headers={"Origin": EVIL})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == EVIL
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers["Vary"]


@allowing([])
async def test_empty_list_refuses_every_browser_on_polling(switchboard: Harness) -> None:
    polling = EnginePolling(switchboard)
    status, body = await handshake(polling, {"Origin": APP})
    assert (status, json.loads(body)) == (403, FORBIDDEN)
    status, body = await handshake(polling)
    assert status == 200 and body.startswith("0{")


@allowing([APP])
async def test_refused_polling_handshakes_leave_no_session_to_drain(
        switchboard: Harness) -> None:
    """They used to get a sid, and their half-open sessions held up the shutdown."""
    polling = EnginePolling(switchboard)
    for _ in range(3):
        status, _body = await handshake(polling, {"Origin": EVIL})
        assert status == 403
    assert switchboard.server.engineio is not None
    assert not switchboard.server.engineio.engines
    started = trio.current_time()
    await switchboard.stop()
    assert trio.current_time() - started < 0.1


@allowing([APP])
async def test_every_polling_request_of_a_refused_origin_is_refused(
        switchboard: Harness) -> None:
    polling = EnginePolling(switchboard)
    sid = await polling.handshake(switchboard.token("alice", "acme"))
    for method, body in (("POST", "40"), ("GET", None), ("OPTIONS", None)):
        status, text = await polling.request(method, sid, body, headers={"Origin": EVIL})
        assert (status, json.loads(text)) == (403, FORBIDDEN), method
    # the session itself goes on for its own page
    assert await polling.request("POST", sid, "40", headers={"Origin": APP}) == (200, "ok")
    assert (await polling.get(sid))[1].startswith("40{")
