"""Socket.IO v5 packets (sans-IO): encoding, decoding, binary attachments."""

from __future__ import annotations

from typing import Any

import pytest
from switchboard.core.args import Args
from switchboard.core.protocol import socketio as sio
from switchboard.core.protocol.socketio import Decoder, Packet, PacketType, SocketIOError


def placeholder(num: int) -> dict[str, Any]:
    return {"_placeholder": True, "num": num}


# -- encoding -------------------------------------------------------------------------------


@pytest.mark.parametrize(("packet", "text"), [
    (Packet(PacketType.CONNECT), "0"),
    (Packet(PacketType.CONNECT, data={"sid": "abc"}), '0{"sid":"abc"}'),
    (Packet(PacketType.CONNECT, "/admin", {"sid": "abc", "pid": "p"}),
     '0/admin,{"sid":"abc","pid":"p"}'),
    (Packet(PacketType.CONNECT, "/admin"), "0/admin,"),
    (Packet(PacketType.DISCONNECT), "1"),
    (Packet(PacketType.DISCONNECT, "/admin"), "1/admin,"),
    (Packet(PacketType.EVENT, data=["hello", 1]), '2["hello",1]'),
    (Packet(PacketType.EVENT, data=["hello"], id=12), '212["hello"]'),
    (Packet(PacketType.EVENT, "/admin", ["x", {"a": [1, None]}], 12),
     '2/admin,12["x",{"a":[1,null]}]'),
    (Packet(PacketType.EVENT, data=["é", "☃"]), '2["é","☃"]'),
    (Packet(PacketType.ACK, data=[True], id=0), "30[true]"),
    (Packet(PacketType.ACK, "/admin", [{"room": "r"}], 7), '3/admin,7[{"room":"r"}]'),
    (Packet(PacketType.CONNECT_ERROR, data={"message": "Invalid namespace"}),
     '4{"message":"Invalid namespace"}'),
    (Packet(PacketType.CONNECT_ERROR, "/x", {"message": "Unauthorized", "data": {"code": "u"}}),
     '4/x,{"message":"Unauthorized","data":{"code":"u"}}'),
])
def test_text_packets_encode_as_the_reference_parser_does(packet: Packet, text: str) -> None:
    assert sio.encode(packet) == [text]


def test_event_with_bytes_becomes_a_binary_event_with_a_placeholder() -> None:
    messages = sio.encode(Packet(PacketType.EVENT, data=["file", b"\x00\x01"]))
    assert messages == ['51-["file",{"_placeholder":true,"num":0}]', b"\x00\x01"]


def test_nested_buffers_are_numbered_in_order() -> None:
    data = ["upload", {"parts": [b"a", bytearray(b"b")], "meta": {"thumb": memoryview(b"c")}}]
    messages = sio.encode(Packet(PacketType.EVENT, "/admin", data, 4))
    assert messages[0] == ('53-/admin,4["upload",{"parts":[{"_placeholder":true,"num":0},'
                           '{"_placeholder":true,"num":1}],"meta":{"thumb":'
                           '{"_placeholder":true,"num":2}}}]')
    assert messages[1:] == [b"a", b"b", b"c"]


def test_ack_with_bytes_becomes_a_binary_ack() -> None:
    assert sio.encode(Packet(PacketType.ACK, data=[b"x"], id=3)) == [
        '61-3[{"_placeholder":true,"num":0}]', b"x"]


def test_event_text_fast_path_matches_the_packet_encoder() -> None:
    for namespace in ("/", "/admin"):
        assert sio.encode_event_text(namespace, "e", {"a": 1}) == sio.encode(
            Packet(PacketType.EVENT, namespace, ["e", {"a": 1}]))[0]


def test_event_text_carries_the_recovery_offset_last() -> None:
    assert sio.encode_event_text("/", "e", 1, "42") == '2["e",1,"42"]'
    assert sio.encode_event_text("/admin", "e", None, "7") == '2/admin,["e",null,"7"]'


@pytest.mark.parametrize(("kind", "namespace", "data", "ident"), [
    (PacketType.EVENT, "/", ["hello", 1], None),
    (PacketType.EVENT, "/admin", ["x", {"a": [1, None], "t": (1, "é")}], 12),
    (PacketType.ACK, "/", [{"id": 1, "content": {"text": "hi"}}], 0),
    (PacketType.ACK, "/admin", [None, {"room": "r"}], 7),
])
def test_text_packet_matches_the_packet_encoder(kind: PacketType, namespace: str,
                                                data: list[Any], ident: int | None) -> None:
    assert sio.text_packet(kind, namespace, data, ident) == sio.encode(
        Packet(kind, namespace, data, ident))[0]


def test_text_packet_spreads_args_inside_a_value_as_an_array() -> None:
    assert sio.text_packet(PacketType.ACK, "/", [{"pair": Args(1, "a")}], 3) == \
        '33[{"pair":[1,"a"]}]'


@pytest.mark.parametrize("data", [
    ["file", b"\x00"], ["x", {"parts": [bytearray(b"b")]}], [{"a": Args(1, memoryview(b"c"))}],
])
def test_text_packet_leaves_binary_values_to_the_packet_encoder(data: list[Any]) -> None:
    assert sio.text_packet(PacketType.EVENT, "/", data) is None
    assert sio.text_packet(PacketType.ACK, "/", data, 1) is None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()])
def test_text_packet_refuses_what_json_cannot_carry(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        sio.text_packet(PacketType.EVENT, "/", ["x", value])


@pytest.mark.parametrize(("data", "expected"), [
    (b"", True), (bytearray(b"x"), True), (memoryview(b"x"), True),
    ([1, [2, {"a": b"x"}]], True), ((1, b"x"), True), ({"a": {"b": [b"x"]}}, True),
    ("bytes", False), ([1, "x", None, {"a": [True]}], False), (None, False),
])
def test_has_binary_finds_buffers_at_any_depth(data: Any, expected: bool) -> None:
    assert sio.has_binary(data) is expected


# -- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "packet"), [
    ("0", Packet(PacketType.CONNECT)),
    ('0{"token":"t"}', Packet(PacketType.CONNECT, data={"token": "t"})),
    ('0/admin,{"token":"t"}', Packet(PacketType.CONNECT, "/admin", {"token": "t"})),
    ("0/admin,", Packet(PacketType.CONNECT, "/admin")),
    ("0/admin", Packet(PacketType.CONNECT, "/admin")),
    ("1", Packet(PacketType.DISCONNECT)),
    ("1/admin,", Packet(PacketType.DISCONNECT, "/admin")),
    ('2["hello",1]', Packet(PacketType.EVENT, data=["hello", 1])),
    ('212["hello"]', Packet(PacketType.EVENT, data=["hello"], id=12)),
    ('2/admin,12["x",{"a":"é"}]', Packet(PacketType.EVENT, "/admin", ["x", {"a": "é"}], 12)),
    ('2/admin,["x"]', Packet(PacketType.EVENT, "/admin", ["x"])),
    ("30[true]", Packet(PacketType.ACK, data=[True], id=0)),
    ("3/admin,7[]", Packet(PacketType.ACK, "/admin", [], 7)),
])
def test_text_packets_decode(text: str, packet: Packet) -> None:
    assert Decoder().feed(text) == packet


def test_encoded_packets_decode_back() -> None:
    packets = [
        Packet(PacketType.CONNECT, "/admin", {"token": "t"}),
        Packet(PacketType.DISCONNECT, "/admin"),
        Packet(PacketType.EVENT, "/", ["e", {"n": [1, 2.5, None, "☃"]}], 99),
        Packet(PacketType.ACK, "/admin", [{"ok": True}], 1),
    ]
    decoder = Decoder()
    for packet in packets:
        [text] = sio.encode(packet)
        assert decoder.feed(text) == packet


def test_binary_event_waits_for_its_attachment() -> None:
    decoder = Decoder()
    assert decoder.feed('51-["file",{"_placeholder":true,"num":0}]') is None
    assert decoder.feed(b"\x00\xff") == Packet(PacketType.BINARY_EVENT, data=["file", b"\x00\xff"])


def test_attachments_fill_placeholders_by_number_at_any_depth() -> None:
    decoder = Decoder()
    assert decoder.feed('52-/admin,8["up",{"b":{"_placeholder":true,"num":1},'
                        '"a":[{"_placeholder":true,"num":0}]}]') is None
    assert decoder.feed(b"first") is None
    assert decoder.feed(b"second") == Packet(
        PacketType.BINARY_EVENT, "/admin", ["up", {"b": b"second", "a": [b"first"]}], 8)


def test_binary_ack_decodes_with_its_id() -> None:
    decoder = Decoder()
    assert decoder.feed('61-3[{"_placeholder":true,"num":0}]') is None
    assert decoder.feed(b"x") == Packet(PacketType.BINARY_ACK, data=[b"x"], id=3)


def test_encoded_binary_packet_decodes_back() -> None:
    packet = Packet(PacketType.EVENT, "/admin", ["e", [b"1", {"k": b"2"}]], 5)
    decoder = Decoder()
    results = [decoder.feed(message) for message in sio.encode(packet)]
    assert results == [None, None, Packet(PacketType.BINARY_EVENT, "/admin",
                                          ["e", [b"1", {"k": b"2"}]], 5)]


def test_decoder_is_ready_for_the_next_packet_after_attachments() -> None:
    decoder = Decoder()
    decoder.feed('51-["a",{"_placeholder":true,"num":0}]')
    decoder.feed(b"x")
    assert decoder.feed('2["b"]') == Packet(PacketType.EVENT, data=["b"])


def test_binary_event_with_no_attachments_is_complete_at_once() -> None:
    assert Decoder().feed('50-["e",1]') == Packet(PacketType.BINARY_EVENT, data=["e", 1])


def test_objects_that_only_look_like_placeholders_are_kept() -> None:
    data = ["e", {"_placeholder": "yes", "num": 0}, {"_placeholder": True, "num": "0"}]
    assert Decoder().feed(sio.encode(Packet(PacketType.EVENT, data=data))[0]) == Packet(
        PacketType.EVENT, data=data)


# -- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "x", "7", "9[]", "/admin,0", "²", "\u0663", " 2[\"e\"]",
    "2", "2notjson", "2[5]", "2[]", "2{}", '2"e"', '2["e"', "2[null]",
    "2" + "1" * 5000 + '["e"]', '2²["e"]', '2\u0661["e"]',
    "3[1]", "312", '31{"a":1}',
    '4{"message":"x"}',
    '0"token"', "0[1]",
    '5["e"]', '5-["e"]', '5x-["e"]', '5²-["e"]', "5" + "9" * 5000 + '-["e"]',
    '611-[{"_placeholder":true,"num":0}]',
    '6-1[{"_placeholder":true,"num":0}]',
    "2" + "[" * 100_000 + "]" * 100_000,
])
def test_malformed_packet_raises_socketio_error(text: str) -> None:
    with pytest.raises(SocketIOError):
        Decoder().feed(text)


def test_attachment_without_a_pending_packet_is_an_error() -> None:
    with pytest.raises(SocketIOError):
        Decoder().feed(b"\x00")


def test_text_packet_while_attachments_are_awaited_is_an_error() -> None:
    decoder = Decoder()
    decoder.feed('51-["e",{"_placeholder":true,"num":0}]')
    with pytest.raises(SocketIOError):
        decoder.feed('2["e"]')


def test_placeholder_out_of_range_is_an_error() -> None:
    decoder = Decoder()
    decoder.feed('51-["e",{"_placeholder":true,"num":1}]')
    with pytest.raises(SocketIOError):
        decoder.feed(b"x")


def test_more_attachments_than_allowed_is_an_error() -> None:
    with pytest.raises(SocketIOError):
        Decoder(max_attachments=2).feed('53-["e",1]')
