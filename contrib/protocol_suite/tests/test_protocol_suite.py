"""The Socket.IO protocol's test suite, case by case, against Switchboard with
this kit's plugin and ``suite.toml``: raw WebSocket frames and HTTP requests
through the real listener, on the autojump mock clock (the suite's 300 ms
ping interval, 200 ms ping timeout and 1 s connect timeout pass without
waiting for them).

The sections follow the suite's (``test-suite/test-suite.js`` of the
socket.io-protocol repository: the Engine.IO protocol's handshake,
heartbeat, close and upgrade, then the Socket.IO protocol's connect,
disconnect and messages), one test per case or per group of alike cases,
plus two things the suite cannot tell apart: a client that answers pings
but never connects is closed by the connect timeout (not a ping timeout),
and the CONNECT answer leaves before the session's first events are
queued. Unlike the suite's clients, these
read every frame the server sends, so two frames that arrive in one read
are both seen.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from switchboard.core import Config, Session, hookimpl
from switchboard.core.config import merge, structure_config
from switchboard.testing import TEST_SECRET, Harness
from switchboard_protocol_suite.plugin import ProtocolSuitePlugin
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

SUITE_TOML = Path(__file__).resolve().parent.parent / "suite.toml"
PING_INTERVAL_MS = 300
PING_TIMEOUT_MS = 200
#: Mock-clock bound on any one wait (the longest timer of the suite is 1 s).
WAIT = 5.0


def suite_config() -> Config:
    """``suite.toml`` as shipped, on an ephemeral port and an in-memory database."""
    data = tomllib.loads(SUITE_TOML.read_text())
    return structure_config(merge(data, {
        "server": {"port": 0}, "auth": {"secret": TEST_SECRET},
        "store": {"url": "sqlite:///file:protocol-suite?mode=memory&cache=shared&uri=true"}}))


class NotesTheAnswer(ProtocolSuitePlugin):
    """The suite's application, noting as each session opens whether the
    CONNECT answer has left the server already (nothing queued on the socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_out: list[bool] = []

    @hookimpl
    def switchboard_session_opened(self, session: Session) -> None:
        channel = session.transport.engine.channel
        self.answer_out.append(channel is not None and not channel.outbox.pending)
        super().switchboard_session_opened(session)


@pytest.fixture
def application() -> NotesTheAnswer:
    return NotesTheAnswer()


@pytest.fixture
async def suite(autojump_clock: trio.testing.MockClock, nursery: trio.Nursery,
                application: NotesTheAnswer) -> AsyncIterator[Harness]:
    harness = await Harness.start(suite_config(), nursery, listen=True, clock=autojump_clock,
                                  plugins={"protocol_suite": application})
    yield harness
    await harness.stop()


def ws_url(suite: Harness, query: str = "EIO=4&transport=websocket") -> str:
    return suite.http_url(f"/socket.io/?{query}").replace("http://", "ws://", 1)


async def http(suite: Harness, method: str, query: str, body: str | None = None
               ) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.request(method, suite.http_url(f"/socket.io/?{query}"),
                                        content=body)
    return response.status_code, response.text


async def polling_session(suite: Harness) -> str:
    status, body = await http(suite, "GET", "EIO=4&transport=polling")
    assert status == 200 and body.startswith("0")
    return str(json.loads(body[1:])["sid"])


async def receive(ws: WebSocketConnection) -> str | bytes:
    with trio.fail_after(WAIT):
        return await ws.get_message()


async def closed(ws: WebSocketConnection) -> None:
    """Read until the server closes the connection (the suite waits for "close")."""
    with trio.fail_after(WAIT), pytest.raises(ConnectionClosed):
        while True:
            await ws.get_message()


async def socketio(ws: WebSocketConnection, connect: str = "40") -> list[str | bytes]:
    """The Engine.IO open packet, then ``connect`` and its answer and ``auth``."""
    assert str(await receive(ws)).startswith("0")
    await ws.send_message(connect)
    return [await receive(ws), await receive(ws)]


def open_packet(text: str | bytes) -> dict[str, Any]:
    assert isinstance(text, str) and text.startswith("0")
    value: dict[str, Any] = json.loads(text[1:])
    return value


# -- Engine.IO protocol: handshake ---------------------------------------------------


async def test_a_polling_handshake_opens_a_session(suite: Harness) -> None:
    status, body = await http(suite, "GET", "EIO=4&transport=polling")
    assert status == 200
    value = open_packet(body)
    assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(value["sid"], str)
    assert (value["upgrades"], value["pingInterval"], value["pingTimeout"],
            value["maxPayload"]) == (["websocket"], PING_INTERVAL_MS, PING_TIMEOUT_MS, 1000000)


@pytest.mark.parametrize(("method", "query"), [
    ("GET", "transport=polling"), ("GET", "EIO=abc&transport=polling"),
    ("GET", "EIO=4"), ("GET", "EIO=4&transport=abc"),
    ("POST", "EIO=4&transport=polling"), ("PUT", "EIO=4&transport=polling"),
], ids=["no-EIO", "bad-EIO", "no-transport", "bad-transport", "post", "put"])
async def test_a_bad_polling_handshake_is_a_400(suite: Harness, method: str,
                                                query: str) -> None:
    status, _ = await http(suite, method, query)
    assert status == 400


async def test_a_websocket_handshake_opens_a_session(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        value = open_packet(await receive(ws))
    assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert (value["upgrades"], value["pingInterval"], value["pingTimeout"],
            value["maxPayload"]) == ([], PING_INTERVAL_MS, PING_TIMEOUT_MS, 1000000)


@pytest.mark.parametrize("query", ["transport=websocket", "EIO=abc&transport=websocket",
                                   "EIO=4", "EIO=4&transport=abc"])
async def test_a_bad_websocket_handshake_is_refused(suite: Harness, query: str) -> None:
    with pytest.raises(ConnectionRejected):
        async with open_websocket_url(ws_url(suite, query)):
            pass


# -- Engine.IO protocol: heartbeat and close -------------------------------------------


async def test_polling_pings_are_answered_with_pongs(suite: Harness) -> None:
    sid = await polling_session(suite)
    for _ in range(3):
        assert await http(suite, "GET", f"EIO=4&transport=polling&sid={sid}") == (200, "2")
        assert (await http(suite, "POST", f"EIO=4&transport=polling&sid={sid}", "3"))[0] == 200


async def test_a_polling_session_without_pongs_is_closed(suite: Harness) -> None:
    sid = await polling_session(suite)
    await trio.sleep((PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000)  # (mock time)
    assert (await http(suite, "GET", f"EIO=4&transport=polling&sid={sid}"))[0] == 400


async def test_websocket_pings_are_answered_with_pongs(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        open_packet(await receive(ws))
        for _ in range(3):
            assert await receive(ws) == "2"
            await ws.send_message("3")


async def test_a_websocket_session_without_pongs_is_closed(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        await closed(ws)


async def test_a_close_packet_ends_a_polling_session(suite: Harness) -> None:
    sid = await polling_session(suite)
    query = f"EIO=4&transport=polling&sid={sid}"
    answers: dict[str, tuple[int, str]] = {}

    async def poll() -> None:
        answers["poll"] = await http(suite, "GET", query)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        answers["close"] = await http(suite, "POST", query, "1")
    assert answers["poll"] == (200, "6")
    assert (await http(suite, "GET", query))[0] == 400


async def test_a_close_packet_ends_a_websocket_session(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        open_packet(await receive(ws))
        await ws.send_message("1")
        await closed(ws)


# -- Engine.IO protocol: upgrade -----------------------------------------------------


async def upgraded(suite: Harness, sid: str, ws: WebSocketConnection) -> None:
    await ws.send_message("2probe")
    assert await receive(ws) == "3probe"
    await ws.send_message("5")
    await trio.testing.wait_all_tasks_blocked()


async def test_a_polling_session_upgrades_to_a_websocket(suite: Harness) -> None:
    sid = await polling_session(suite)
    async with open_websocket_url(ws_url(suite, f"EIO=4&transport=websocket&sid={sid}")) as ws:
        await upgraded(suite, sid, ws)
        # polling is over for this session
        assert (await http(suite, "GET", f"EIO=4&transport=polling&sid={sid}"))[0] == 400


async def test_a_second_websocket_after_the_upgrade_is_closed(suite: Harness) -> None:
    sid = await polling_session(suite)
    url = ws_url(suite, f"EIO=4&transport=websocket&sid={sid}")
    async with open_websocket_url(url) as ws:
        await upgraded(suite, sid, ws)
        async with open_websocket_url(url) as second:
            await closed(second)
        # the first one is still the session's
        await ws.send_message("40")
        while (answer := await receive(ws)) == "2":
            await ws.send_message("3")
        assert str(answer).startswith("40{")


# -- Socket.IO protocol: connect -----------------------------------------------------


@pytest.mark.parametrize(("connect", "namespace", "auth"), [
    ("40", "", {}), ('40{"token":"123"}', "", {"token": "123"}),
    ("40/custom,", "/custom,", {}), ('40/custom,{"token":"abc"}', "/custom,", {"token": "abc"}),
], ids=["main", "main-with-payload", "custom", "custom-with-payload"])
async def test_connecting_to_a_namespace_is_answered_then_auth_comes(
        suite: Harness, connect: str, namespace: str, auth: dict[str, str]) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        answer, event = await socketio(ws, connect)
    assert isinstance(answer, str) and answer.startswith("40" + namespace)
    handshake = json.loads(answer[2 + len(namespace):])
    assert set(handshake) == {"sid"} and isinstance(handshake["sid"], str)
    assert event == f"42{namespace}" + json.dumps(["auth", auth], separators=(",", ":"))


async def test_the_connect_answer_is_written_before_auth_is_queued(
        suite: Harness, application: NotesTheAnswer) -> None:
    """The suite's clients read a frame, then start listening for the next:
    the answer must not share a write with what the session's opening sends
    (in one read, the second frame would reach no listener)."""
    async with open_websocket_url(ws_url(suite)) as ws:
        await socketio(ws)
        await ws.send_message("40/custom,")
        await receive(ws), await receive(ws)
    assert application.answer_out == [True, True]


async def test_an_unknown_namespace_is_refused(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        open_packet(await receive(ws))
        await ws.send_message("40/random")
        assert await receive(ws) == '44/random,{"message":"Invalid namespace"}'


async def test_an_invalid_handshake_closes_the_connection(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        open_packet(await receive(ws))
        await ws.send_message("4abc")
        await closed(ws)


async def test_a_connection_without_a_connect_is_closed(suite: Harness) -> None:
    """(The suite's client answers no ping either: whichever comes first, the
    connect timeout or the ping timeout, closes it.)"""
    async with open_websocket_url(ws_url(suite)) as ws:
        open_packet(await receive(ws))
        await closed(ws)


async def test_a_connection_answering_pings_without_a_connect_is_closed(
        suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        open_packet(await receive(ws))
        opened = trio.current_time()
        with pytest.raises(ConnectionClosed):
            while True:
                if await receive(ws) == "2":
                    await ws.send_message("3")
    # by the connect timeout (1 s), not by a ping timeout
    assert 1.0 <= trio.current_time() - opened < 1.0 + PING_INTERVAL_MS / 1000


# -- Socket.IO protocol: disconnect ---------------------------------------------------


async def test_leaving_the_main_namespace_keeps_the_connection(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        await socketio(ws)
        await ws.send_message("41")
        assert await receive(ws) == "2"  # the next ping: still connected


async def test_leaving_a_custom_namespace_keeps_the_main_one(suite: Harness) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        await socketio(ws)
        await ws.send_message("40/custom,")
        answer, auth = await receive(ws), await receive(ws)
        assert str(answer).startswith("40/custom,") and auth == '42/custom,["auth",{}]'
        await ws.send_message("41/custom,")
        await ws.send_message('42["message","message to main namespace"]')
        assert await receive(ws) == '42["message-back","message to main namespace"]'


# -- Socket.IO protocol: messages ------------------------------------------------------


PLACEHOLDERS = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'
ATTACHMENTS = [bytes([1, 2, 3]), bytes([4, 5, 6])]


@pytest.mark.parametrize(("sent", "attachments", "answer"), [
    ('42["message",1,"2",{"3":[true]}]', [], '42["message-back",1,"2",{"3":[true]}]'),
    (f'452-["message",{PLACEHOLDERS}]', ATTACHMENTS, f'452-["message-back",{PLACEHOLDERS}]'),
    ('42456["message-with-ack",1,"2",{"3":[false]}]', [], '43456[1,"2",{"3":[false]}]'),
    (f'452-789["message-with-ack",{PLACEHOLDERS}]', ATTACHMENTS, f"462-789[{PLACEHOLDERS}]"),
], ids=["message", "message-binary", "ack", "ack-binary"])
async def test_a_message_comes_back_and_an_ack_is_acknowledged(
        suite: Harness, sent: str, attachments: list[bytes], answer: str) -> None:
    """``message`` comes back as ``message-back``, ``message-with-ack`` is
    acknowledged with its arguments; binary attachments come back after the
    packet, in their order."""
    async with open_websocket_url(ws_url(suite)) as ws:
        await socketio(ws)
        await ws.send_message(sent)
        for attachment in attachments:
            await ws.send_message(attachment)
        assert [await receive(ws) for _ in range(1 + len(attachments))] == [
            answer, *attachments]


@pytest.mark.parametrize("packet", [
    "4abc", "42{}", '42abc["message-with-ack",1,"2",{"3":[false]}]',
], ids=["unknown-type", "payload-not-an-array", "bad-ack-id"])
async def test_a_malformed_packet_closes_the_connection(suite: Harness, packet: str) -> None:
    async with open_websocket_url(ws_url(suite)) as ws:
        await socketio(ws)
        await ws.send_message(packet)
        await closed(ws)
