"""Real sockets on 127.0.0.1: a trio-websocket client and httpx against one port."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from switchboard.testing import TEST_API_KEY, Harness
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

#: Upper bound for anything that should happen at once over loopback: generous, as the
#: suite runs on parallel workers of a busy machine and only a failure waits it out.
TIMEOUT = 60.0
CLIENTS = 50


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        frame: dict[str, Any] = json.loads(await ws.get_message())
    return frame


async def receive_type(ws: WebSocketConnection, type: str) -> dict[str, Any]:
    """The next frame of ``type``, skipping others (such as presence announcements)."""
    with trio.fail_after(TIMEOUT):
        while True:
            frame = await receive(ws)
            if frame["type"] == type:
                return frame


async def request(ws: WebSocketConnection, type: str, data: Any, ident: int) -> Any:
    await ws.send_message(json.dumps({"type": type, "data": data, "id": ident}))
    with trio.fail_after(TIMEOUT):
        while True:
            frame = await receive(ws)
            if frame.get("id") == ident:
                break
    assert frame["type"] == "ack", frame
    return frame["data"]


async def emit(live: Harness, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            return await http.post(live.http_url("/api/v1/emit"), json=body,
                                   headers={"Authorization": f"Bearer {TEST_API_KEY}"})


async def test_client_gets_session_joins_a_room_and_receives_an_emitted_event(
        switchboard_live: Harness) -> None:
    token = switchboard_live.token("alice", "acme", "agent")
    async with open_websocket_url(switchboard_live.ws_url(token)) as ws:
        session = await receive(ws)
        assert session["type"] == "session"
        assert {k: session["data"][k] for k in ("user_id", "tenant_id", "role")} == {
            "user_id": "alice", "tenant_id": "acme", "role": "agent"}
        assert await request(ws, "room:join", {"room": "lead:9"}, 1) == {"room": "lead:9"}
        response = await emit(switchboard_live, {"event": "lead:updated", "tenant": "acme",
                                                 "room": "lead:9", "data": {"stage": 2}})
        assert (response.status_code, response.json()) == (202, {"published": 1})
        assert await receive_type(ws, "lead:updated") == {
            "type": "lead:updated", "data": {"stage": 2}}


async def test_bad_token_is_rejected_at_the_handshake_with_401(
        switchboard_live: Harness) -> None:
    token = switchboard_live.token("alice", "acme", secret="not-the-server-secret-0123456789abcdef")
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(switchboard_live.ws_url(token)):
            pass  # pragma: no cover - the handshake fails
    assert info.value.status_code == 401
    assert info.value.body is not None
    assert json.loads(info.value.body)["code"] == "unauthorized"


async def test_expired_token_is_rejected_at_the_handshake_with_401(
        switchboard_live: Harness) -> None:
    token = switchboard_live.token("alice", "acme", ttl=-60)
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(switchboard_live.ws_url(token)):
            pass  # pragma: no cover - the handshake fails
    assert info.value.status_code == 401
    assert "expired" in json.loads(info.value.body or b"{}")["message"]


async def test_http_and_websocket_share_one_port(switchboard_live: Harness) -> None:
    ws_url = switchboard_live.ws_url(switchboard_live.token())
    http_url = switchboard_live.http_url("/health")
    assert ws_url.split("/")[2] == http_url.split("/")[2]
    async with open_websocket_url(ws_url) as ws, httpx.AsyncClient(timeout=60) as http:
        assert (await receive(ws))["type"] == "session"
        with trio.fail_after(TIMEOUT):
            health = await http.get(http_url)
        assert health.json() == {"status": "ok"}
        await ws.send_message(json.dumps({"type": "ping"}))
        assert (await receive_type(ws, "pong"))["type"] == "pong"


async def test_authorization_header_authenticates_the_websocket(
        switchboard_live: Harness) -> None:
    token = switchboard_live.token("bob", "globex", "customer")
    url = switchboard_live.ws_url("").split("?")[0]
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    async with open_websocket_url(url, extra_headers=headers) as ws:
        session = await receive(ws)
    assert (session["data"]["user_id"], session["data"]["tenant_id"]) == ("bob", "globex")


async def test_missing_token_is_rejected_with_401(switchboard_live: Harness) -> None:
    url = switchboard_live.ws_url("").split("?")[0]
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(url):
            pass  # pragma: no cover - the handshake fails
    assert info.value.status_code == 401


async def test_fifty_concurrent_clients_all_receive_one_broadcast(
        switchboard_live: Harness) -> None:
    connected = 0
    all_connected = trio.Event()
    received: dict[str, Any] = {}

    async def client(n: int) -> None:
        nonlocal connected
        token = switchboard_live.token(f"user{n}", "acme", "customer")
        async with open_websocket_url(switchboard_live.ws_url(token)) as ws:
            assert (await receive(ws))["type"] == "session"
            connected += 1
            if connected == CLIENTS:
                all_connected.set()
            received[f"user{n}"] = await receive_type(ws, "announcement")

    async with trio.open_nursery() as nursery:
        for n in range(CLIENTS):
            nursery.start_soon(client, n)
        with trio.fail_after(TIMEOUT):
            await all_connected.wait()
        response = await emit(switchboard_live, {"event": "announcement", "tenant": "acme",
                                                 "data": "hello everyone"})
        assert response.json() == {"published": 1}
    assert len(received) == CLIENTS
    assert all(frame == {"type": "announcement", "data": "hello everyone"}
               for frame in received.values())
