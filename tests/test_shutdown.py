"""Graceful shutdown: clients are closed with 1001 after what is queued for them,
the drain never outlasts ``server.drain_timeout``, and no new client gets in."""

from __future__ import annotations

import socket

import pytest
import trio
from chats import create_conversation
from socketio_fixtures import WebSocketClosed
from switchboard.core.config import Config
from switchboard.testing import HandshakeRejected, Harness, TestClient, make_config

DRAIN_TIMEOUT = 1.0


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"server": {"drain_timeout": DRAIN_TIMEOUT}})


async def stuck_client(switchboard: Harness, user: str = "stuck") -> TestClient:
    """A client that reads nothing more, so it never sees (nor answers) a close frame."""
    client = await switchboard.connect(user=user, lockstep=True)
    client.pause_reading()
    # A read already under way when reading was paused still takes one chunk (this
    # pong, or an earlier event); after it the client really reads nothing.
    await client.emit("ping")
    await client.settle(1)
    return client


async def test_stop_closes_connected_clients_with_1001(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", role="agent")
    customer = await switchboard.connect(user="carl", role="customer")
    await switchboard.stop()
    assert (await agent.expect_closed(timeout=1))[0] == 1001
    assert (await customer.expect_closed(timeout=1))[0] == 1001
    assert switchboard.server.hub.sessions == {}


async def test_events_queued_before_shutdown_are_delivered_before_the_close(
        switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", role="agent")
    await agent.request("room:join", {"room": "lead:1"})
    for n in range(20):
        await switchboard.app.publish("t1", "lead:1", "lead:moved", {"n": n})
    switchboard.server.shutdown()
    assert (await agent.expect_closed(timeout=DRAIN_TIMEOUT))[0] == 1001
    assert [d["n"] for d in agent.received("lead:moved")] == list(range(20))


async def test_stop_finishes_within_drain_timeout_when_a_client_never_answers(
        switchboard: Harness) -> None:
    polite = await switchboard.connect(user="polite")
    stuck = await stuck_client(switchboard)
    started = trio.current_time()
    await switchboard.stop()
    assert trio.current_time() - started <= DRAIN_TIMEOUT + 0.01
    assert stuck.close_code is None  # it never got to the close frame
    assert (await polite.expect_closed(timeout=1))[0] == 1001
    assert switchboard.server.hub.sessions == {}


async def test_new_websocket_is_refused_while_draining(switchboard: Harness) -> None:
    await stuck_client(switchboard)  # keeps the drain going
    switchboard.server.shutdown()
    await trio.sleep(DRAIN_TIMEOUT / 2)
    assert switchboard.server.hub.sessions != {}  # still draining
    with pytest.raises(HandshakeRejected):
        await switchboard.connect(user="latecomer")


async def test_ready_turns_503_while_draining(switchboard: Harness) -> None:
    await stuck_client(switchboard)
    http = switchboard.http()
    assert (await http.get("/ready")).status_code == 200
    switchboard.server.shutdown()
    response = await http.get("/ready")
    assert response.status_code == 503
    assert (await response.get_json())["code"] == "shutting_down"


async def test_shutdown_disconnects_are_counted_with_their_reason(switchboard: Harness) -> None:
    await switchboard.connect(user="ann")
    await switchboard.connect(user="bob")
    http = switchboard.http()
    await switchboard.stop()
    metrics = (await (await http.get("/metrics")).get_data()).decode()
    assert 'switchboard_disconnects_total{reason="shutdown"} 2.0' in metrics


async def test_after_stop_the_port_refuses_connections(switchboard_live: Harness) -> None:
    host, port = switchboard_live.server.addresses[0]
    stream = await trio.open_tcp_stream(host, port)  # accepted while running
    await stream.aclose()
    await switchboard_live.stop()
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)


async def test_a_connection_attempted_while_the_clients_are_closed_is_refused(
        switchboard_live: Harness) -> None:
    """The listening socket closes before the open connections do: an attempt made
    meanwhile is refused at once (the client, or a load balancer, tries elsewhere)
    instead of being taken into the backlog and reset when the process exits."""
    host, port = switchboard_live.server.addresses[0]
    engineio = switchboard_live.server.engineio
    assert engineio is not None
    attempts: list[str] = []
    close_all = engineio.close_all

    def attempt_then_close_all() -> None:
        try:
            socket.create_connection((host, port), timeout=1).close()
            attempts.append("accepted")
        except ConnectionRefusedError:
            attempts.append("refused")
        close_all()

    engineio.close_all = attempt_then_close_all  # type: ignore[method-assign]
    await switchboard_live.stop()
    assert attempts == ["refused"]


class TestAnswersDueAtShutdown:
    """Messages stored but not yet acknowledged when the server stops."""

    @pytest.fixture
    def switchboard_config(self) -> Config:
        # a batch waits 0.5 s for company: the acks are still due at the shutdown
        return make_config({"server": {"drain_timeout": 5.0},
                            "plugins": {"chat": {"batch_linger": 0.5}}})

    async def test_acks_of_messages_in_flight_go_out_before_the_1001_close(
            self, switchboard: Harness) -> None:
        await create_conversation(switchboard, participants=("carl",))
        carl = await switchboard.connect(user="carl", role="customer")
        await carl.request("conversation:join", {"conversationId": "c1"})
        for n in range(16):
            await carl.emit("message:send", {"conversationId": "c1", "clientId": f"m{n}",
                                             "type": "text", "content": {"text": str(n)}},
                            id=100 + n)
        await trio.sleep(0.1)  # all read and queued for the batch, none written yet
        assert [f for f in carl.frames if f.get("type") == "ack"] == []
        switchboard.server.shutdown()
        code, _ = await carl.expect_closed(timeout=10)
        assert code == 1001
        acks = [f["id"] for f in carl.frames if f.get("type") == "ack"]
        assert acks == [100 + n for n in range(16)]

    async def test_an_event_sent_while_draining_is_refused_with_shutting_down(
            self, switchboard: Harness) -> None:
        await create_conversation(switchboard, participants=("carl",))
        carl = await switchboard.connect(user="carl", role="customer")
        await carl.request("conversation:join", {"conversationId": "c1"})
        await carl.emit("message:send", {"conversationId": "c1", "clientId": "first",
                                         "type": "text", "content": {"text": "1"}}, id=1)
        await trio.sleep(0.1)
        switchboard.server.shutdown()
        await carl.emit("presence:list", {}, id=2)
        code, _ = await carl.expect_closed(timeout=10)
        assert code == 1001
        answers = {f["id"]: f for f in carl.frames if "id" in f}
        assert answers[1]["type"] == "ack"
        assert answers[2]["type"] == "error"
        assert answers[2]["data"]["code"] == "shutting_down"

    async def test_socketio_acks_of_messages_in_flight_go_out_before_the_1001_close(
            self, switchboard: Harness) -> None:
        from socketio_fixtures import MemoryWebSocket

        await create_conversation(switchboard, participants=("carl",))
        ws = await MemoryWebSocket.connect(switchboard,
                                           "/socket.io/?EIO=4&transport=websocket")
        assert str(await ws.receive()).startswith("0{")
        token = switchboard.token("carl", "t1", "customer")
        await ws.send(f'40{{"token":"{token}"}}')
        assert str(await ws.receive()).startswith("40{")
        await ws.send('421["conversation:join",{"conversationId":"c1"}]')
        assert any(m.startswith("431[") for m in await ws.receive_until_prefix("431["))
        for n in range(16):
            await ws.send(f'42{100 + n}["message:send",{{"conversationId":"c1",'
                          f'"clientId":"m{n}","type":"text","content":{{"text":"{n}"}}}}]')
        await trio.sleep(0.1)  # all read and queued for the batch, none written yet
        switchboard.server.shutdown()
        received: list[str] = []
        with pytest.raises(WebSocketClosed) as closed:
            while True:
                received.append(str(await ws.receive()))
        assert closed.value.code == 1001
        acks = [int(m[2:5]) for m in received if m.startswith("43")]
        assert acks == [100 + n for n in range(16)]
