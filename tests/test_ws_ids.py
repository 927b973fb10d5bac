"""A plain-WebSocket frame with an ``id`` is answered with that ``id``, whatever
the frame: a ping, an event, an unknown event, a malformed envelope. Checked
through the real listener with a real WebSocket client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from switchboard.testing import Harness
from trio_websocket import WebSocketConnection, open_websocket_url

ANSWER_TIMEOUT = 5


@pytest.fixture
async def ws(switchboard_live: Harness) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(switchboard_live.ws_url(switchboard_live.token())) as ws:
        with trio.fail_after(ANSWER_TIMEOUT):
            session = json.loads(await ws.get_message())
        assert session["type"] == "session"
        yield ws


async def answer(ws: WebSocketConnection, frame: str) -> dict[str, Any]:
    """Send ``frame`` and return the server's answer (the next pong, ack or error;
    events such as the user's own ``user:online`` are passed over)."""
    await ws.send_message(frame)
    with trio.fail_after(ANSWER_TIMEOUT):
        while True:
            reply: dict[str, Any] = json.loads(await ws.get_message())
            if reply["type"] in ("pong", "ack", "error"):
                return reply


async def test_a_ping_with_an_id_gets_a_pong_with_that_id(ws: WebSocketConnection) -> None:
    assert await answer(ws, '{"type":"ping","id":1}') == {"type": "pong", "id": 1, "data": None}
    assert await answer(ws, '{"type":"ping","id":"p-2","data":{"n":2}}') == {
        "type": "pong", "id": "p-2", "data": {"n": 2}}


async def test_a_ping_without_an_id_gets_a_pong_without_one(ws: WebSocketConnection) -> None:
    assert await answer(ws, '{"type":"ping","data":7}') == {"type": "pong", "data": 7}


async def test_an_event_with_an_id_is_acked_with_that_id(ws: WebSocketConnection) -> None:
    reply = await answer(ws, '{"type":"room:join","data":{"room":"lobby"},"id":"j1"}')
    assert reply["type"] in ("ack", "error")
    assert reply["id"] == "j1"


async def test_an_unknown_event_is_refused_with_its_id(ws: WebSocketConnection) -> None:
    reply = await answer(ws, '{"type":"no:such:event","id":3}')
    assert (reply["type"], reply["id"], reply["data"]["code"]) == ("error", 3, "unknown_event")


@pytest.mark.parametrize(("frame", "field"), [
    ('{"id":4}', "type"),
    ('{"type":"","id":4}', "type"),
    ('{"type":"ping","id":4,"extra":true}', "extra"),
])
async def test_a_malformed_envelope_is_refused_with_its_id(
        ws: WebSocketConnection, frame: str, field: str) -> None:
    reply = await answer(ws, frame)
    assert reply["type"] == "error"
    assert reply["id"] == 4
    assert (reply["data"]["code"], reply["data"]["field"]) == ("invalid_frame", field)


async def test_an_id_that_cannot_be_echoed_is_refused_without_one(
        ws: WebSocketConnection) -> None:
    reply = await answer(ws, '{"type":"ping","id":[1]}')
    assert reply == {"type": "error", "data": {
        "code": "invalid_frame", "message": "'id' must be a number or a string",
        "field": "id"}}
