"""The Socket.IO server judged by the reference client: socket.io-client v4 (npm)
in Node, against the server on a real port."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import trio
from socketio_fixtures import (  # noqa: F401  (fixtures are found by name)
    TIMEOUT,
    EchoPlugin,
    NodeClients,
    engine,
    from_wire,
    node_fixture,
    node_modules_fixture,
    publish,
    socketio_config,
    to_wire,
    wait_until,
)
from switchboard.core.config import Config
from switchboard.testing import Harness
from trio_websocket import ConnectionClosed, open_websocket_url


@pytest.fixture
def config_overrides() -> Mapping[str, Any]:
    """Per-test config changes; tests parametrize this name to override it."""
    return {}


@pytest.fixture
def switchboard_config(config_overrides: Mapping[str, Any]) -> Config:
    return socketio_config(config_overrides)


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"echo": EchoPlugin}


def overrides(settings: Mapping[str, Any]) -> Any:
    """Run a test with these config overrides."""
    return pytest.mark.parametrize("config_overrides", [settings], ids=["config"])


WEBSOCKET_ONLY = {"transports": ["websocket"]}


# -- transports ---------------------------------------------------------------


async def test_websocket_only_client_connects_and_gets_acks(
        switchboard_live: Harness, node: NodeClients) -> None:
    connect = await node.connected("a", switchboard_live.token("alice", "acme"),
                                   **WEBSOCKET_ONLY)
    assert connect["transport"] == "websocket"
    ack = await node.call("a", "room:join", {"room": "lead:1"})
    assert ack == {**ack, "error": None, "args": [{"room": "lead:1"}]}


async def test_default_client_starts_on_polling_and_upgrades_to_websocket(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"))
    # the engine reports "upgrade" only when it moves off long-polling
    assert (await node.expect("a", "upgrade"))["transport"] == "websocket"
    state = await node.state("a")
    assert state["connected"] and state["transport"] == "websocket"
    ack = await node.call("a", "room:join", {"room": "lead:1"})
    assert ack["args"] == [{"room": "lead:1"}]


async def test_polling_only_client_connects_and_gets_acks(
        switchboard_live: Harness, node: NodeClients) -> None:
    connect = await node.connected("a", switchboard_live.token("alice", "acme"),
                                   transports=["polling"])
    assert connect["transport"] == "polling"
    ack = await node.call("a", "room:join", {"room": "lead:1"})
    assert ack["args"] == [{"room": "lead:1"}]
    assert (await node.state("a"))["transport"] == "polling"


async def test_upgrade_with_nothing_queued_sends_no_empty_packet(
        switchboard_live: Harness) -> None:
    """Polling handshake, then a WebSocket probe and upgrade while no packet is
    waiting: the first WebSocket message after the upgrade is a real packet."""
    base = switchboard_live.http_url("/socket.io/?EIO=4&transport=polling")
    token = switchboard_live.token("alice", "acme")
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            opened = (await http.get(base)).text
            assert opened.startswith("0")
            sid = json.loads(opened[1:])["sid"]
            url = f"{base}&sid={sid}"
            await http.post(url, content=f'40{{"token":"{token}"}}')
            assert (await http.get(url)).text.startswith("40{")
        ws_url = switchboard_live.http_url(
            f"/socket.io/?EIO=4&transport=websocket&sid={sid}").replace("http", "ws", 1)
        async with open_websocket_url(ws_url) as ws:
            with trio.fail_after(TIMEOUT):
                await ws.send_message("2probe")
                assert await ws.get_message() == "3probe"
                # drain what is queued: the server ends it with a noop after the probe
                while "6" not in (await http.get(url)).text.split("\x1e"):
                    pass
                await ws.send_message("5")
                await ws.send_message('421["echo",1]')
                messages = []
                while not messages or messages[-1] != "431[1]":
                    messages.append(await ws.get_message())
    assert "" not in messages, messages


async def test_client_emit_gets_the_handler_result_as_ack(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY)
    ack = await node.call("a", "echo", {"n": 1, "s": "é"})
    assert ack["args"] == [{"n": 1, "s": "é"}]


async def test_refused_event_acks_an_error_object(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("c", switchboard_live.token("carol", "acme", "customer"),
                         **WEBSOCKET_ONLY)
    ack = await node.call("c", "room:join", {"room": "lead:1"})
    assert ack["args"] == [{"error": {"code": "forbidden", "event": "room:join",
                                      "message": "not allowed to join 'lead:1'",
                                      "room": "lead:1"}}]


async def test_refused_event_without_ack_arrives_as_error_event(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY)
    await node.emit("a", "no:such:event", {})
    error = await node.expect("a", "event", event="error")
    assert error["args"] == [{"code": "unknown_event", "event": "no:such:event",
                              "message": "unknown event 'no:such:event'"}]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_server_call_is_answered_by_the_client_ack_callback(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), transports=transports,
                         answers={"question": {"answer": 42}})
    ack = await node.call("a", "ask:me", {"q": "life"})
    assert ack["args"] == [{"client_said": {"answer": 42}}]
    question = await node.expect("a", "event", event="question")
    assert question["args"] == [{"q": "life"}] and question["acked"]


async def test_server_call_through_the_session_api(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY,
                         answers={"question": "$echo"})
    [session] = [s for s in switchboard_live.server.hub.sessions.values()
                 if s.user_id == "alice"]
    with trio.fail_after(TIMEOUT):
        answer = await session.call("question", {"ping": 1}, timeout=5)
    assert answer == {"ping": 1}


async def test_events_published_during_the_upgrade_arrive_in_order(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"))
    for n in range(40):
        await publish(switchboard_live, {"event": "tick", "tenant": "acme", "user": "alice",
                                         "data": n})
    assert (await node.expect("a", "upgrade"))["transport"] == "websocket"
    await publish(switchboard_live, {"event": "tick", "tenant": "acme", "user": "alice",
                                     "data": 40})
    ticks = [(await node.expect("a", "event", event="tick"))["args"][0] for _ in range(41)]
    assert ticks == list(range(41))


async def test_many_calls_in_a_row_are_all_answered(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY)
    refs = list(range(1000, 1030))
    for ref in refs:
        await node.send(op="emit", client="a", event="echo", args=[ref], ack=True, ref=ref)
    answers = [(await node.expect("a", "ack", ref=ref))["args"] for ref in refs]
    assert answers == [[ref] for ref in refs]


@overrides({"heartbeat": {"interval": 0.2, "timeout": 1.0}})
@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_client_answering_pings_stays_connected(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), transports=transports)
    sid = (await node.state("a"))["engine"]
    # a dozen pings, twice an unanswered ping's interval and timeout (a timeout
    # of a second, so that a busy machine's pauses are not taken for silence)
    over = trio.current_time() + 2.5
    await wait_until(lambda: trio.current_time() > over)
    assert not node.received("a", "disconnect")
    state = await node.state("a")
    assert state["connected"] and state["engine"] == sid
    assert (await node.call("a", "echo", 1))["args"] == [1]


@overrides({"heartbeat": {"interval": 0.2, "timeout": 0.4}})
async def test_silent_client_is_dropped_after_the_ping_timeout(
        switchboard_live: Harness) -> None:
    token = switchboard_live.token("alice", "acme")
    url = switchboard_live.http_url(
        f"/socket.io/?EIO=4&transport=websocket&token={token}").replace("http", "ws", 1)
    async with open_websocket_url(url) as ws:
        with trio.fail_after(TIMEOUT):
            opened = json.loads((await ws.get_message())[1:])
            assert (opened["pingInterval"], opened["pingTimeout"]) == (200, 400)
            await ws.send_message("40")
            messages = []
            with pytest.raises(ConnectionClosed):
                while True:
                    messages.append(await ws.get_message())  # never answers the ping
    assert "2" in messages
    assert not switchboard_live.server.hub.sessions


# -- authentication and namespaces ---------------------------------------------


async def test_bad_token_gets_connect_error_unauthorized(
        switchboard_live: Harness, node: NodeClients) -> None:
    bad = switchboard_live.token("alice", "acme", secret="not-the-server-secret-0123456789ab")
    await node.connect("a", bad, **WEBSOCKET_ONLY)
    error = await node.expect("a", "connect_error")
    assert error["message"] == "Unauthorized"
    assert error["data"]["code"] == "unauthorized"
    assert not (await node.state("a"))["connected"]


async def test_expired_token_gets_connect_error_unauthorized(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connect("a", switchboard_live.token("alice", "acme", ttl=-60))
    error = await node.expect("a", "connect_error")
    assert error["message"] == "Unauthorized"


async def test_bearer_header_on_the_handshake_authenticates(
        switchboard_live: Harness, node: NodeClients) -> None:
    token = switchboard_live.token("alice", "acme")
    await node.send(op="connect", client="a", url=node.base_url,
                    opts={"transports": ["polling"],
                          "extraHeaders": {"Authorization": f"Bearer {token}"}})
    await node.expect("a", "connect")
    ack = await node.call("a", "room:join", {"room": "lead:1"})
    assert ack["args"] == [{"room": "lead:1"}]


async def test_custom_namespace_connects_and_handles_events(
        switchboard_live: Harness, node: NodeClients) -> None:
    token = switchboard_live.token("alice", "acme")
    await node.connected("a", token, namespace="/atendimento", **WEBSOCKET_ONLY)
    ack = await node.call("a", "room:join", {"room": "ticket:7"})
    assert ack["args"] == [{"room": "ticket:7"}]
    await publish(switchboard_live, {"event": "ticket:updated", "tenant": "acme",
                                     "room": "ticket:7", "data": {"id": 7}})
    event = await node.expect("a", "event", event="ticket:updated")
    assert event["args"] == [{"id": 7}]


async def test_unknown_namespace_gets_connect_error(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connect("a", switchboard_live.token("alice", "acme"), namespace="/nope")
    error = await node.expect("a", "connect_error")
    assert error["message"] == "Invalid namespace"


async def test_namespaces_share_one_engine_and_leave_independently(
        switchboard_live: Harness, node: NodeClients) -> None:
    token = switchboard_live.token("alice", "acme")
    await node.connected("main", token, forceNew=False, **WEBSOCKET_ONLY)
    await node.connected("desk", token, namespace="/atendimento", forceNew=False)
    main, desk = await node.state("main"), await node.state("desk")
    assert main["engine"] == desk["engine"]
    assert len(switchboard_live.server.hub.sessions) == 2
    await node.send(op="close", client="desk")
    await wait_until(lambda: len(switchboard_live.server.hub.sessions) == 1)
    [session] = switchboard_live.server.hub.sessions.values()
    assert session.id == main["id"]
    assert (await node.call("main", "echo", "still")).get("args") == ["still"]


async def test_client_disconnect_closes_its_session(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"))
    assert len(switchboard_live.server.hub.sessions) == 1
    await node.send(op="close", client="a")
    assert (await node.expect("a", "disconnect"))["reason"] == "io client disconnect"
    await wait_until(lambda: not switchboard_live.server.hub.sessions)
    assert switchboard_live.server.engineio is not None
    await wait_until(lambda: not switchboard_live.server.engineio.engines)


# -- rooms and publishing ----------------------------------------------------------


async def test_room_member_receives_published_event_and_other_tenant_does_not(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("alice", switchboard_live.token("alice", "acme"))
    await node.connected("mallory", switchboard_live.token("mallory", "globex"),
                         **WEBSOCKET_ONLY)
    for client in ("alice", "mallory"):
        assert (await node.call(client, "room:join", {"room": "lead:1"}))["args"] == [
            {"room": "lead:1"}]
    result = await publish(switchboard_live, {"event": "lead:updated", "tenant": "acme",
                                              "room": "lead:1", "data": {"stage": "won"}})
    assert result == {"published": 1}
    assert (await node.expect("alice", "event", event="lead:updated"))["args"] == [
        {"stage": "won"}]
    # a later event to globex's lead:1 is the first mallory sees
    await publish(switchboard_live, {"event": "lead:updated", "tenant": "globex",
                                     "room": "lead:1", "data": {"stage": "globex"}})
    assert (await node.expect("mallory", "event", event="lead:updated"))["args"] == [
        {"stage": "globex"}]
    assert not node.received("mallory", "event", event="lead:updated")
    assert not node.received("alice", "event", event="lead:updated")


async def test_published_event_to_a_user_reaches_every_namespace_of_that_user(
        switchboard_live: Harness, node: NodeClients) -> None:
    token = switchboard_live.token("alice", "acme")
    await node.connected("main", token, **WEBSOCKET_ONLY)
    await node.connected("desk", token, namespace="/atendimento", transports=["polling"])
    await publish(switchboard_live, {"event": "notice", "tenant": "acme", "user": "alice",
                                     "data": {"n": 1}})
    for client in ("main", "desk"):
        assert (await node.expect(client, "event", event="notice"))["args"] == [{"n": 1}]


# -- binary ----------------------------------------------------------------------------


ALL_BYTES = bytes(range(256)) * 4


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_binary_payload_round_trips_through_an_ack(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), transports=transports)
    ack = await node.call("a", "echo", {"file": to_wire(ALL_BYTES), "name": "x.bin"})
    assert from_wire(ack["args"]) == [{"file": ALL_BYTES, "name": "x.bin"}]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_binary_payload_comes_back_as_an_event(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), transports=transports)
    ack = await node.call("a", "echo:event", [to_wire(b"\x00\xff"), to_wire(ALL_BYTES)])
    assert ack["args"] == [{"sent": True}]
    event = await node.expect("a", "event", event="echoed")
    assert from_wire(event["args"]) == [[b"\x00\xff", ALL_BYTES]]
    assert event["args"][0][0]["$kind"] in ("Buffer", "ArrayBuffer")


# -- argument lists ------------------------------------------------------------------------


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_handler_of_every_argument_gets_them_all_and_acks_several(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), transports=transports)
    ack = await node.call("a", "echo:args", 1, "two", to_wire(ALL_BYTES), None, [3, 4])
    assert from_wire(ack["args"]) == [1, "two", ALL_BYTES, None, [3, 4]]
    assert ack["args"][2]["$kind"] in ("Buffer", "ArrayBuffer")


async def test_handler_of_every_argument_gets_none_when_the_event_has_none(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY)
    assert (await node.call("a", "emit:args"))["args"] == [{"sent": 0}]
    ack = await node.call("a", "echo:args")
    assert (ack["error"], ack["args"]) == (None, [])


async def test_handler_of_one_payload_gets_the_first_argument_only(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY)
    assert (await node.call("a", "echo", {"n": 1}, "extra", 3))["args"] == [{"n": 1}]
    assert (await node.call("a", "echo", [1, 2]))["args"] == [[1, 2]]
    assert (await node.call("a", "echo"))["args"] == [None]
    assert (await node.call("a", "room:join", {"room": "lead:1"}, "extra"))["args"] == [
        {"room": "lead:1"}]


async def test_server_emits_several_arguments_to_a_session_and_through_the_hub(
        switchboard_live: Harness, node: NodeClients) -> None:
    token = switchboard_live.token("alice", "acme")
    await node.connected("ws", token, **WEBSOCKET_ONLY)
    await node.connected("poll", token, transports=["polling"])
    ack = await node.call("ws", "emit:args", 1, to_wire(b"\x00\xff"), "three")
    assert ack["args"] == [{"sent": 3}]
    multi = await node.expect("ws", "event", event="multi")
    assert from_wire(multi["args"]) == [1, b"\x00\xff", "three"]
    for client in ("ws", "poll"):  # one encoding per transport
        published = await node.expect(client, "event", event="multi:user")
        assert from_wire(published["args"]) == [1, b"\x00\xff", "three"]
    assert not node.received("poll", "event", event="multi")


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_server_call_sends_several_arguments_and_gets_every_answer_argument(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    answer = {"$args": [42, to_wire(b"\x01\x02"), "x"]}
    await node.connected("a", switchboard_live.token("alice", "acme"), transports=transports,
                         answers={"question": answer})
    ack = await node.call("a", "ask:args", 1, "two")
    assert from_wire(ack["args"]) == [{"first": 42, "all": [42, b"\x01\x02", "x"]}]
    for _ in range(2):
        question = await node.expect("a", "event", event="question")
        assert question["args"] == [1, "two"] and question["acked"]


async def test_server_call_answered_with_no_argument_gets_none_or_an_empty_list(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY,
                         answers={"question": {"$args": []}})
    ack = await node.call("a", "ask:args")
    assert ack["args"] == [{"first": None, "all": []}]


# -- disconnection and reconnection ---------------------------------------------


async def test_expired_token_disconnects_with_io_server_disconnect(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme", ttl=5),
                         **WEBSOCKET_ONLY)
    disconnect = await node.expect("a", "disconnect")
    assert disconnect["reason"] == "io server disconnect"
    assert not (await node.state("a"))["connected"]


@overrides({"limits": {"connection": {"rate": 1, "burst": 2}, "max_violations": 3}})
async def test_rate_limit_abuse_disconnects_with_io_server_disconnect(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY)
    await node.connected("b", switchboard_live.token("bob", "acme"), **WEBSOCKET_ONLY)
    for _ in range(10):
        await node.emit("a", "echo", 1)
    disconnect = await node.expect("a", "disconnect")
    assert disconnect["reason"] == "io server disconnect"
    assert (await node.expect("a", "event", event="error"))["args"][0]["code"] == (
        "rate_limited")
    assert (await node.call("b", "echo", 2))["args"] == [2]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_client_reconnects_after_server_closes_its_transport(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    first = await node.connected("a", switchboard_live.token("alice", "acme"),
                                 transports=transports, reconnectionDelay=100,
                                 randomizationFactor=0)
    sid = (await node.state("a"))["engine"]
    engine(switchboard_live, sid).close("transport_close")
    disconnect = await node.expect("a", "disconnect")
    assert disconnect["reason"] == "transport close"
    second = await node.expect("a", "connect")
    assert second["id"] != first["id"]
    assert (await node.state("a"))["engine"] != sid
    assert (await node.call("a", "echo", "again"))["args"] == ["again"]


LEAD = {"tenant": "acme", "room": "lead:1", "event": "lead:updated"}


async def lead_update(node: NodeClients, client: str) -> tuple[Any, str]:
    """The next ``lead:updated`` of ``client``: its data and its recovery offset.

    With recovery on, the server appends the event's offset as a last argument,
    as the reference server does; socket.io-client remembers it for reconnecting.
    """
    data, offset = (await node.expect(client, "event", event="lead:updated"))["args"]
    assert isinstance(offset, str) and offset
    return data, offset


@overrides({"socketio": {"recovery_window": 30}})
@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_reconnect_within_the_window_recovers_missed_events(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    first = await node.connected("a", switchboard_live.token("alice", "acme"),
                                 transports=transports, reconnectionDelay=500,
                                 randomizationFactor=0)
    assert first["recovered"] is False
    assert (await node.call("a", "room:join", {"room": "lead:1"}))["args"] == [
        {"room": "lead:1"}]
    await publish(switchboard_live, {**LEAD, "data": 1})
    data, offset = await lead_update(node, "a")
    assert data == 1
    engine(switchboard_live, (await node.state("a"))["engine"]).close("transport_close")
    assert (await node.expect("a", "disconnect"))["reason"] == "transport close"
    # published while the client waits to reconnect
    await publish(switchboard_live, [{**LEAD, "data": 2}, {**LEAD, "data": 3}])
    again = await node.expect("a", "connect")
    assert again["recovered"] is True
    assert again["id"] == first["id"]
    second, third = await lead_update(node, "a"), await lead_update(node, "a")
    assert [second[0], third[0]] == [2, 3]
    assert int(offset) < int(second[1]) < int(third[1])
    # and it is still in the room
    await publish(switchboard_live, {**LEAD, "data": 4})
    assert (await lead_update(node, "a"))[0] == 4


@overrides({"socketio": {"recovery_window": 30}})
async def test_recovery_replays_an_event_sent_to_two_rooms_of_the_client_once(
        switchboard_live: Harness, node: NodeClients) -> None:
    """A change a plugin announces to a board room and to a lead room, the second
    time to the lead room's members not on the board (``skip_room``), as the
    pipeline does: a client in both rooms that missed it gets it once."""
    await node.connected("a", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY,
                         reconnectionDelay=500, randomizationFactor=0)
    for room in ("board:1", "lead:1"):
        assert (await node.call("a", "room:join", {"room": room}))["args"] == [{"room": room}]
    app = switchboard_live.app

    async def announce(value: int) -> None:
        await app.publish("acme", "board:1", "lead:updated", value)
        await app.publish("acme", "lead:1", "lead:updated", value, skip_room="board:1")
    await announce(1)
    assert (await lead_update(node, "a"))[0] == 1
    engine(switchboard_live, (await node.state("a"))["engine"]).close("transport_close")
    assert (await node.expect("a", "disconnect"))["reason"] == "transport close"
    await announce(2)
    assert (await node.expect("a", "connect"))["recovered"] is True
    assert (await lead_update(node, "a"))[0] == 2
    await app.publish("acme", "user:alice", "marker", None)
    await node.expect("a", "event", event="marker")
    assert not node.received("a", "event", event="lead:updated")


@overrides({"socketio": {"recovery_window": 1}})
async def test_reconnect_past_the_window_starts_a_clean_session(
        switchboard_live: Harness, node: NodeClients) -> None:
    first = await node.connected("a", switchboard_live.token("alice", "acme"),
                                 **WEBSOCKET_ONLY, reconnection=False)
    assert (await node.call("a", "room:join", {"room": "lead:1"}))["args"] == [
        {"room": "lead:1"}]
    await publish(switchboard_live, {**LEAD, "data": 1})
    assert (await lead_update(node, "a"))[0] == 1
    engine(switchboard_live, (await node.state("a"))["engine"]).close("transport_close")
    assert (await node.expect("a", "disconnect"))["reason"] == "transport close"
    await publish(switchboard_live, {**LEAD, "data": 2})
    window_over = trio.current_time() + 1.2
    await wait_until(lambda: trio.current_time() > window_over)
    await node.send(op="open", client="a")  # socket.connect(), with its pid and offset
    again = await node.expect("a", "connect")
    assert again["recovered"] is False
    assert again["id"] != first["id"]
    # nothing missed is replayed, and it is no longer in the room
    await publish(switchboard_live, {**LEAD, "data": 3})
    await publish(switchboard_live, {"tenant": "acme", "user": "alice", "event": "marker",
                                     "data": None})
    await node.expect("a", "event", event="marker")
    assert not node.received("a", "event", event="lead:updated")


# -- limits and malformed input ---------------------------------------------------


@overrides({"socketio": {"max_payload": 1000}})
@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_oversized_message_disconnects_only_its_client(
        switchboard_live: Harness, node: NodeClients, transports: list[str]) -> None:
    await node.connected("big", switchboard_live.token("alice", "acme"),
                         transports=transports, reconnection=False)
    await node.connected("other", switchboard_live.token("bob", "acme"), **WEBSOCKET_ONLY)
    await node.emit("big", "echo", "x" * 5000)
    disconnect = await node.expect("big", "disconnect")
    assert disconnect["reason"] in ("transport close", "transport error")
    assert (await node.call("other", "echo", "still here"))["args"] == ["still here"]
    assert (await node.state("other"))["connected"]


@pytest.mark.parametrize("packet", [
    '42[5]', "42notjson", "42{}", '42["echo",1', "41x", "9", "", "bAA", "²", "4²", '42²["echo"]',
    '451-["echo"]x', "43[1]", '44{"message":"x"}', "4" + "2" * 5000 + '["echo"]',
    '450-["echo",' + "[" * 600 + "]" * 600 + "]", '42["echo",' + "[" * 5000 + "]" * 5000 + "]",
], ids=repr)
async def test_malformed_packet_closes_only_that_session(
        switchboard_live: Harness, node: NodeClients, packet: str) -> None:
    await node.connected("other", switchboard_live.token("bob", "acme"), **WEBSOCKET_ONLY)
    token = switchboard_live.token("alice", "acme")
    url = switchboard_live.http_url(
        f"/socket.io/?EIO=4&transport=websocket&token={token}").replace("http", "ws", 1)
    async with open_websocket_url(url) as ws:
        with trio.fail_after(TIMEOUT):
            assert (await ws.get_message()).startswith("0{")
            await ws.send_message("40")
            assert (await ws.get_message()).startswith("40{")
            await ws.send_message(packet)
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.get_message()
    assert (await node.call("other", "echo", "fine"))["args"] == ["fine"]


async def test_event_the_server_fails_to_answer_closes_only_that_session(
        switchboard_live: Harness, node: NodeClients) -> None:
    """An ack too deeply nested for the encoder ends that client's session only."""
    await node.connected("other", switchboard_live.token("bob", "acme"), **WEBSOCKET_ONLY)
    await node.connected("deep", switchboard_live.token("alice", "acme"), **WEBSOCKET_ONLY,
                         reconnection=False)
    nested: Any = []
    for _ in range(700):
        nested = [nested]
    await node.send(op="emit", client="deep", event="echo", args=[nested], ack=True, ref=0)
    assert (await node.expect("deep", "disconnect"))["reason"] == "transport close"
    assert (await node.call("other", "echo", "fine"))["args"] == ["fine"]


# -- Engine.IO errors ------------------------------------------------------------------


@pytest.mark.parametrize(("query", "method", "code", "message"), [
    ("EIO=3&transport=polling", "GET", 5, "Unsupported protocol version"),
    ("transport=polling", "GET", 5, "Unsupported protocol version"),
    ("EIO=4&transport=carrier-pigeon", "GET", 0, "Transport unknown"),
    ("EIO=4&transport=polling&sid=nope", "GET", 1, "Session ID unknown"),
    ("EIO=4&transport=polling", "POST", 2, "Bad handshake method"),
    ("EIO=4&transport=polling", "PUT", 2, "Bad handshake method"),
    ("EIO=4&transport=polling", "DELETE", 2, "Bad handshake method"),
])
async def test_bad_engineio_requests_get_the_reference_error_answers(
        switchboard_live: Harness, query: str, method: str, code: int, message: str) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            response = await http.request(method,
                                          switchboard_live.http_url(f"/socket.io/?{query}"))
    assert response.status_code == 400
    assert response.json() == {"code": code, "message": message}


# -- origins ------------------------------------------------------------------------------

PAGE = "https://app.example.test"


async def test_browser_page_of_any_origin_connects_on_the_defaults(
        switchboard_live: Harness, node: NodeClients) -> None:
    """A page on another origin, with the default socket.io-client transports
    (polling first): the browser needs CORS headers on every polling answer."""
    await node.connected("a", switchboard_live.token("alice", "acme"), page=PAGE)
    # (the engine reports "upgrade" only when it moves off long-polling)
    assert (await node.expect("a", "upgrade"))["transport"] == "websocket"
    assert (await node.call("a", "echo", "hi"))["args"] == ["hi"]


@overrides({"server": {"allowed_origins": ["https://*.example.test"]}})
async def test_browser_page_of_an_origin_matching_a_pattern_connects(
        switchboard_live: Harness, node: NodeClients) -> None:
    await node.connected("a", switchboard_live.token("alice", "acme"), page=PAGE)
    assert (await node.expect("a", "upgrade"))["transport"] == "websocket"
    assert (await node.call("a", "echo", "hi"))["args"] == ["hi"]


@overrides({"server": {"allowed_origins": [PAGE]}})
async def test_client_of_a_refused_origin_is_refused_by_the_server(
        switchboard_live: Harness, node: NodeClients) -> None:
    """Refused by the server itself (Node enforces no CORS), with no session
    left behind."""
    token = switchboard_live.token("alice", "acme")
    await node.connect("a", token, reconnection=False,
                       extraHeaders={"Origin": "https://evil.example.test"})
    assert (await node.expect("a", "connect_error"))["message"] == "xhr poll error"
    await node.connect("b", token, reconnection=False, **WEBSOCKET_ONLY,
                       extraHeaders={"Origin": "https://evil.example.test"})
    assert (await node.expect("b", "connect_error"))["message"] == "websocket error"
    assert switchboard_live.server.engineio is not None
    assert not switchboard_live.server.engineio.engines
    await node.connected("c", token, page=PAGE)


@overrides({"server": {"allowed_origins": [PAGE]}})
async def test_polling_from_a_refused_origin_is_a_403_with_the_engineio_error(
        switchboard_live: Harness) -> None:
    url = switchboard_live.http_url("/socket.io/?EIO=4&transport=polling")
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            allowed = await http.get(url, headers={"Origin": PAGE})
            other = await http.get(url, headers={"Origin": "https://evil.example.test"})
            sid = json.loads(allowed.text[1:])["sid"]
            with_sid = await http.post(f"{url}&sid={sid}", content="40",
                                       headers={"Origin": "https://evil.example.test"})
    assert allowed.status_code == 200 and allowed.text.startswith("0{")
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert allowed.headers["access-control-allow-credentials"] == "true"
    for refused in (other, with_sid):
        assert refused.status_code == 403
        assert refused.json() == {"code": 4, "message": "Forbidden"}
        assert "access-control-allow-origin" not in refused.headers


@overrides({"server": {"allowed_origins": [PAGE]}})
async def test_polling_preflight_from_an_allowed_origin_is_answered(
        switchboard_live: Harness) -> None:
    url = switchboard_live.http_url("/socket.io/?EIO=4&transport=polling")
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            response = await http.options(url, headers={
                "Origin": PAGE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == PAGE
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"
