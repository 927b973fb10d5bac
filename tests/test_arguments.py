"""Argument lists: ``Args`` and ``incoming(..., args=True)``, their values and
the plain WebSocket envelope's side (JSON arrays in ``data``; the Socket.IO
side is judged by the real clients in test_socketio_npm and
test_socketio_python)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from socketio_fixtures import EchoPlugin, MemoryWebSocket
from switchboard.core import Args, ClientError, Session, incoming
from switchboard.core.events import event_data, unstructure
from switchboard.core.protocol import envelope
from switchboard.core.protocol import socketio as sio
from switchboard.testing import Harness


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"echo": EchoPlugin}


@attrs.frozen
class Point:
    x: int
    y: int


async def handler(session: Session, payload: Any) -> None:
    return None


# -- the value type ---------------------------------------------------------------


def test_args_is_a_value_of_its_arguments() -> None:
    args = Args(1, "two", None)
    assert list(args) == [1, "two", None] and len(args) == 3
    assert args == Args(1, "two", None) != Args(1, "two")
    assert repr(args) == "Args(1, 'two', None)"
    assert len(Args()) == 0


def test_attrs_values_among_the_arguments_are_unstructured() -> None:
    assert unstructure(Args(Point(1, 2), "x")) == Args({"x": 1, "y": 2}, "x")


def test_handler_of_every_argument_has_no_payload_class() -> None:
    with pytest.raises(ValueError, match="payload class must be None"):
        incoming("e", Point, handler, args=True)


@pytest.mark.parametrize(("arguments", "one", "every"), [
    ([], None, []),
    ([1], 1, [1]),
    ([[1, 2]], [1, 2], [[1, 2]]),
    ([1, "two", b"\x00"], 1, [1, "two", b"\x00"]),
])
def test_socketio_arguments_become_the_first_or_every_argument(
        arguments: list[Any], one: Any, every: list[Any]) -> None:
    one_payload, all_args = incoming("e", None, handler), incoming("e", None, handler, args=True)
    assert one_payload.structure(event_data(one_payload, arguments)) == one
    assert all_args.structure(event_data(all_args, arguments)) == every
    assert one_payload.structure(event_data(None, arguments)) == one  # an unknown event


@pytest.mark.parametrize(("data", "every"), [
    (None, []), ([1, "two"], [1, "two"]), ([], []), ({"a": 1}, [{"a": 1}]), ("x", ["x"]),
])
def test_envelope_data_is_the_argument_list_of_a_handler_of_every_argument(
        data: Any, every: list[Any]) -> None:
    assert incoming("e", None, handler, args=True).structure(data) == every


def test_payload_class_is_structured_from_the_first_argument() -> None:
    spec = incoming("e", Point, handler)
    assert spec.structure(Args({"x": 1, "y": 2}, "extra")) == Point(1, 2)
    with pytest.raises(ClientError):
        spec.structure(Args("not an object"))


def test_envelope_carries_args_as_a_json_array() -> None:
    assert json.loads(envelope.encode_event("e", Args(1, "two"))) == {
        "type": "e", "data": [1, "two"]}
    assert json.loads(envelope.encode_ack(3, Args())) == {"type": "ack", "id": 3, "data": []}
    assert json.loads(envelope.encode_request("q", Args(None), "s1"))["data"] == [None]


def test_args_nested_in_a_socketio_value_is_an_array_with_its_attachments() -> None:
    messages = sio.encode(sio.Packet(sio.PacketType.EVENT, data=["e", {"a": Args(1, b"x")}]))
    assert messages == ['51-["e",{"a":[1,{"_placeholder":true,"num":0}]}]', b"x"]


# -- plain WebSocket ---------------------------------------------------------------------


async def test_plain_websocket_sends_every_argument_as_a_json_array(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    assert await client.request("echo:args", [1, "two", None]) == [1, "two", None]
    assert await client.request("echo:args") == []
    assert await client.request("echo:args", {"a": 1}) == [{"a": 1}]
    assert await client.request("echo", [1, "two"]) == [1, "two"]  # one payload, as ever


async def test_plain_websocket_gets_several_server_arguments_as_a_json_array(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    other_device = await switchboard.connect()
    assert await client.request("emit:args", [1, "two"]) == {"sent": 2}
    assert await client.expect("multi") == [1, "two"]
    assert await client.expect("multi:user") == [1, "two"]
    assert await other_device.expect("multi:user") == [1, "two"]


async def test_plain_websocket_answers_a_call_of_several_arguments_with_an_array(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.emit("ask:args", [1, "two"], id=9)
    for _ in range(2):
        ident, data = await client.expect_request("question")
        assert data == [1, "two"]
        await client.ack(ident, [42, "x"])
    # with args=True the array is the argument list; without, the answer as sent
    assert await client.expect("ack") == {"first": [42, "x"], "all": [42, "x"]}


async def test_bytes_the_plain_websocket_cannot_carry_reach_the_other_members_only(
        switchboard: Harness, caplog: pytest.LogCaptureFixture) -> None:
    plain = await switchboard.connect("ann")
    sio_device = await MemoryWebSocket.connect(
        switchboard, f"/socket.io/?EIO=4&transport=websocket&token={switchboard.token('ann')}")
    await sio_device.receive()  # open
    await sio_device.send("40")
    await sio_device.receive_until_prefix("40")
    await switchboard.app.publish("t1", "user:ann", "file", Args("a.png", b"\x00\xff"))
    await switchboard.app.publish("t1", "user:ann", "after", 1)
    assert await plain.expect("after") == 1
    assert plain.received("file") == []
    frames = await sio_device.receive_until('42["after",1]')
    assert frames[-3:] == ['451-["file","a.png",{"_placeholder":true,"num":0}]', b"\x00\xff",
                           '42["after",1]']
    assert "file not sent to plain WebSocket members" in caplog.text
