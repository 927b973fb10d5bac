"""The Engine.IO server over raw HTTP long-polling and WebSocket requests, as the
engine.io-protocol test suite sends them, on the mock clock (in-memory
transports): handshake errors, heartbeat, close, upgrade."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing
from socketio_fixtures import (
    EchoPlugin,
    EnginePolling,
    MemoryWebSocket,
    WebSocketClosed,
    socketio_config,
)
from switchboard.core.config import Config
from switchboard.core.protocol.engineio import EngineState
from switchboard.testing import HandshakeRejected, Harness

INTERVAL = 10.0
PING_TIMEOUT = 5.0
CONNECT_TIMEOUT = 45.0  # the default
#: Mock-clock bound for a step that should happen at once.
SOON = 1.0


@pytest.fixture
def switchboard_config() -> Config:
    return socketio_config({"heartbeat": {"interval": INTERVAL, "timeout": PING_TIMEOUT}})


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"echo": EchoPlugin}


@pytest.fixture
def polling(switchboard: Harness) -> EnginePolling:
    return EnginePolling(switchboard)


def error(code: int) -> dict[str, Any]:
    messages = {1: "Session ID unknown", 2: "Bad handshake method", 3: "Bad request"}
    return {"code": code, "message": messages[code]}


def refused(answer: tuple[int, str], code: int) -> bool:
    status, body = answer
    return status == 400 and json.loads(body) == error(code)


def ws_target(sid: str | None = None) -> str:
    return "/socket.io/?EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")


async def connected_session(switchboard: Harness, polling: EnginePolling) -> str:
    """A polling session with the default namespace connected; its sid."""
    sid = await polling.handshake(switchboard.token("alice", "acme"))
    assert await polling.post(sid, "40") == (200, "ok")
    status, body = await polling.get(sid)
    assert status == 200 and body.startswith("40{")
    return sid


async def probe(switchboard: Harness, sid: str) -> MemoryWebSocket:
    """A WebSocket for ``sid`` that has probed (``2probe``, ``3probe``), not upgraded."""
    ws = await MemoryWebSocket.connect(switchboard, ws_target(sid))
    await ws.send("2probe")
    assert await ws.receive() == "3probe"
    return ws


def state(switchboard: Harness, sid: str) -> EngineState | None:
    assert switchboard.server.engineio is not None
    found = switchboard.server.engineio.engines.get(sid)
    return found.state if found is not None else None


# -- handshake ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_handshake_with_a_method_other_than_get_is_a_400_bad_handshake_method(
        polling: EnginePolling, method: str) -> None:
    assert refused(await polling.request(method), 2)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_request_of_a_session_with_an_unsupported_method_is_a_400_bad_request(
        switchboard: Harness, polling: EnginePolling, method: str) -> None:
    sid = await polling.handshake(switchboard.token("alice", "acme"))
    assert refused(await polling.request(method, sid), 3)
    # the session goes on
    assert await polling.post(sid, "40") == (200, "ok")
    assert (await polling.get(sid))[1].startswith("40{")


async def test_other_paths_still_answer_405(switchboard: Harness) -> None:
    response = await switchboard.http().put("/health")
    assert response.status_code == 405


async def test_polling_handshake_puts_the_session_on_polling(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await polling.handshake()
    assert state(switchboard, sid) is EngineState.POLLING


# -- heartbeat ---------------------------------------------------------------------


async def test_poll_after_a_ping_timeout_is_refused_as_an_unknown_session(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    assert await polling.get(sid) == (200, "2")  # the ping, left unanswered
    await trio.sleep(PING_TIMEOUT + 0.1)
    assert refused(await polling.get(sid), 1)
    assert refused(await polling.post(sid, "3"), 1)
    assert not switchboard.server.hub.sessions


async def test_poll_waiting_at_the_ping_timeout_gets_the_close_packet(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    assert await polling.get(sid) == (200, "2")
    pinged = trio.current_time()
    assert await polling.get(sid) == (200, "1")
    assert trio.current_time() - pinged == pytest.approx(PING_TIMEOUT, abs=0.01)
    assert refused(await polling.get(sid), 1)


async def test_polling_client_answering_pings_stays_open(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    for _ in range(5):
        assert await polling.get(sid) == (200, "2")
        assert await polling.post(sid, "3") == (200, "ok")
    assert state(switchboard, sid) is EngineState.POLLING
    assert len(switchboard.server.hub.sessions) == 1


async def test_pings_come_every_interval_after_each_pong(switchboard: Harness) -> None:
    ws = await MemoryWebSocket.connect(switchboard, ws_target())
    assert str(await ws.receive()).startswith("0{")
    await ws.send(f'40{{"token":"{switchboard.token("alice", "acme")}"}}')
    await ws.receive_until_prefix("40{")
    last = trio.current_time()
    for delay in (0.0, 1.0, 4.5):  # pongs at once and late, within the timeout
        await ws.receive_until("2")  # (the plugins' events of the connect before)
        assert trio.current_time() - last == pytest.approx(INTERVAL, abs=0.01)
        await trio.sleep(delay)
        await ws.send("3")
        last = trio.current_time()
    assert await ws.receive() == "2"
    assert trio.current_time() - last == pytest.approx(INTERVAL, abs=0.01)


async def test_a_namespace_is_disconnected_when_its_token_expires_unless_renewed(
        switchboard: Harness) -> None:
    """Two namespaces of one session, tokens of 30 s: the one renewed with the
    ``auth`` event at 20 s stays, the other is disconnected at 30 s."""
    ws = await MemoryWebSocket.connect(switchboard, ws_target())
    assert str(await ws.receive()).startswith("0{")
    opened = trio.current_time()
    for namespace in ("", "/atendimento,"):
        await ws.send(f'40{namespace}{{"token":"{switchboard.token("alice", "acme", ttl=30)}"}}')
        await ws.receive_until_prefix(f"40{namespace}{{")

    async def until(when: float, wanted: str = "") -> list[str | bytes]:
        """Answer pings until ``when`` (mock clock), or a message starting with
        ``wanted``; the disconnects that came (and that message)."""
        seen: list[str | bytes] = []
        with trio.move_on_at(opened + when):
            while True:
                message = await ws.receive()
                if message == "2":
                    await ws.send("3")
                elif str(message).startswith("41") or (wanted and
                                                       str(message).startswith(wanted)):
                    seen.append(message)
                    if wanted and str(message).startswith(wanted):
                        break
        return seen

    assert await until(20) == []
    fresh = switchboard.token("alice", "acme", ttl=3600)
    await ws.send(f'421["auth",{{"token":"{fresh}"}}]')
    assert str((await until(25, "431"))[-1]).startswith("431[")
    assert await until(31) == ["41/atendimento,"]
    assert await until(100) == []
    await ws.send('422["echo","still"]')
    assert await ws.receive_until('432["still"]')


# -- close -------------------------------------------------------------------------


async def test_client_close_ends_the_waiting_poll_with_a_noop_and_the_session_at_once(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    answers: dict[str, tuple[int, str]] = {}

    async def poll() -> None:
        answers["poll"] = await polling.get(sid)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()  # the poll waits
        assert await polling.post(sid, "1") == (200, "ok")
    assert answers["poll"] == (200, "6")
    assert refused(await polling.get(sid), 1)
    assert not switchboard.server.hub.sessions


async def test_malformed_post_closes_the_session_at_once(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    assert refused(await polling.post(sid, "abc"), 3)
    assert refused(await polling.get(sid), 1)


async def test_overlapping_polls_close_the_session(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await polling.handshake()
    answers: dict[str, tuple[int, str]] = {}

    async def poll() -> None:
        answers["first"] = await polling.get(sid)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        answers["second"] = await polling.get(sid)
    assert answers["first"] == (200, "1")
    assert refused(answers["second"], 3)
    assert refused(await polling.get(sid), 1)


async def test_server_close_reaches_a_polling_client_on_its_next_poll(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    assert switchboard.server.engineio is not None
    switchboard.server.engineio.engines[sid].close("transport_close")
    assert await polling.get(sid) == (200, "1")
    assert refused(await polling.get(sid), 1)


# -- upgrade -----------------------------------------------------------------------


async def test_upgrade_ends_the_waiting_poll_with_a_noop_then_runs_on_the_websocket(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    answers: dict[str, tuple[int, str]] = {}

    async def poll() -> None:
        answers["poll"] = await polling.get(sid)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        ws = await probe(switchboard, sid)
        assert state(switchboard, sid) is EngineState.UPGRADING
    assert answers["poll"] == (200, "6")
    await ws.send("5")
    await ws.send('421["echo",1]')
    assert await ws.receive() == "431[1]"
    assert state(switchboard, sid) is EngineState.WEBSOCKET


async def test_polling_request_after_the_upgrade_is_refused_and_the_session_goes_on(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    ws = await probe(switchboard, sid)
    await ws.send("5")
    await ws.send('421["echo",1]')
    assert await ws.receive() == "431[1]"
    assert refused(await polling.get(sid), 3)
    assert refused(await polling.post(sid, '422["echo",2]'), 3)
    await ws.send('423["echo",3]')
    assert await ws.receive() == "433[3]"


async def closed_at_once(switchboard: Harness, sid: str) -> None:
    """A WebSocket for ``sid`` is accepted and closed at once, as the reference
    server does (the protocol's test suite waits for its close)."""
    second = await MemoryWebSocket.connect(switchboard, ws_target(sid))
    with pytest.raises(WebSocketClosed) as closed:
        await second.receive()
    assert closed.value.code == 1002


async def test_second_websocket_while_an_upgrade_is_probing_is_closed_at_once(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    first = await probe(switchboard, sid)
    await closed_at_once(switchboard, sid)
    # the first probe still completes the upgrade
    await first.send("5")
    await first.send('421["echo",1]')
    assert await first.receive() == "431[1]"


async def test_second_websocket_before_the_first_has_probed_is_closed_too(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await polling.handshake()
    first = await MemoryWebSocket.connect(switchboard, ws_target(sid))
    await closed_at_once(switchboard, sid)
    await first.send("2probe")
    assert await first.receive() == "3probe"


async def test_second_websocket_after_the_upgrade_is_closed_at_once(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    first = await probe(switchboard, sid)
    await first.send("5")
    await closed_at_once(switchboard, sid)
    await first.send('421["echo",1]')
    assert await first.receive() == "431[1]"


async def test_websocket_for_an_unknown_sid_is_refused_with_400(switchboard: Harness) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await MemoryWebSocket.connect(switchboard, ws_target("nope"))
    assert (info.value.status, info.value.body) == (400, error(1))


async def test_probe_that_goes_away_leaves_the_session_on_polling_and_upgradable(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    gone = await probe(switchboard, sid)
    await gone.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert state(switchboard, sid) is EngineState.POLLING
    assert await polling.post(sid, '421["echo",1]') == (200, "ok")
    status, body = await polling.get(sid)
    # (the noop that answered the probe may still be queued: clients skip noops)
    assert status == 200 and [p for p in body.split("\x1e") if p != "6"] == ["431[1]"]
    second = await probe(switchboard, sid)
    await second.send("5")
    await second.send('422["echo",2]')
    assert await second.receive() == "432[2]"


async def test_session_closing_during_an_upgrade_closes_the_probe(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await connected_session(switchboard, polling)
    ws = await probe(switchboard, sid)
    with trio.fail_after(INTERVAL + PING_TIMEOUT + SOON):
        # nobody answers the ping on polling: the ping timeout closes the session
        assert await ws.closed() == 1000
    assert refused(await polling.get(sid), 1)


# -- connect timeout ---------------------------------------------------------------


async def answer_pings_on_polling(polling: EnginePolling, sid: str) -> tuple[int, str]:
    """Poll and answer every ping until a poll brings something else; that poll."""
    while True:
        answer = await polling.get(sid)
        if answer != (200, "2"):
            return answer
        assert await polling.post(sid, "3") == (200, "ok")


async def answer_pings_on_websocket(ws: MemoryWebSocket) -> int | None:
    """Answer every ping until the server closes; its close code."""
    try:
        while True:
            if await ws.receive() == "2":
                await ws.send("3")
    except WebSocketClosed as exc:
        return exc.code


async def test_polling_session_without_a_namespace_is_closed_at_the_connect_timeout(
        switchboard: Harness, polling: EnginePolling) -> None:
    opened = trio.current_time()
    sid = await polling.handshake(switchboard.token("alice", "acme"))
    with trio.fail_after(CONNECT_TIMEOUT + SOON):
        assert await answer_pings_on_polling(polling, sid) == (200, "1")
    assert trio.current_time() - opened == pytest.approx(CONNECT_TIMEOUT, abs=0.01)
    assert refused(await polling.get(sid), 1)
    metrics = (await (await switchboard.http().get("/metrics")).get_data()).decode()
    assert 'switchboard_handshake_rejects_total{reason="connect_timeout"} 1.0' in metrics


async def test_websocket_session_without_a_namespace_is_closed_at_the_connect_timeout(
        switchboard: Harness) -> None:
    opened = trio.current_time()
    ws = await MemoryWebSocket.connect(switchboard, ws_target())
    assert (await ws.receive()).startswith("0{")
    with trio.fail_after(CONNECT_TIMEOUT + SOON):
        assert await answer_pings_on_websocket(ws) == 1000
    assert trio.current_time() - opened == pytest.approx(CONNECT_TIMEOUT, abs=0.01)
    await trio.testing.wait_all_tasks_blocked()
    assert switchboard.server.engineio is not None
    assert not switchboard.server.engineio.engines


async def test_refused_connect_does_not_hold_the_session_open(
        switchboard: Harness, polling: EnginePolling) -> None:
    sid = await polling.handshake()
    bad = switchboard.token("alice", "acme", secret="not-the-server-secret-0123456789ab")
    assert await polling.post(sid, f'40{{"token":"{bad}"}}') == (200, "ok")
    status, body = await polling.get(sid)
    assert status == 200 and body.startswith('44{"message":"Unauthorized"')
    with trio.fail_after(CONNECT_TIMEOUT + SOON):
        assert await answer_pings_on_polling(polling, sid) == (200, "1")


async def test_session_with_a_connected_namespace_outlives_the_connect_timeout(
        switchboard: Harness) -> None:
    token = switchboard.token("alice", "acme")
    ws = await MemoryWebSocket.connect(switchboard, ws_target())
    assert (await ws.receive()).startswith("0{")
    await ws.send(f'40{{"token":"{token}"}}')
    assert str(await ws.receive()).startswith("40{")
    with trio.move_on_after(3 * CONNECT_TIMEOUT):
        await answer_pings_on_websocket(ws)
    assert ws.close_code is None
    await ws.send('421["echo","still here"]')
    assert await ws.receive_until('431["still here"]')


@pytest.mark.parametrize("switchboard_config", [
    socketio_config({"socketio": {"connect_timeout": 5}})], ids=["5s"])
async def test_connect_timeout_is_configurable(
        switchboard: Harness, polling: EnginePolling) -> None:
    opened = trio.current_time()
    sid = await polling.handshake()
    with trio.fail_after(5 + SOON):
        assert await polling.get(sid) == (200, "1")
    assert trio.current_time() - opened == pytest.approx(5, abs=0.01)
