"""Arbitrary input to the protocol parsers: a clear protocol error, never a crash.

Property-based (hypothesis): whatever a client sends, the sans-IO decoders either
return a value or raise their own error type, which the transports answer with an
error frame or a close code; anything else would end the connection's task with a
traceback. Well-formed packets survive an encode / decode round trip.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from switchboard.core.errors import ClientError
from switchboard.core.protocol import engineio, envelope, jsontext, socketio

fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
# Socket.IO packet text built from the grammar's pieces, valid or not, so that the
# parser gets past its first character most of the time.
packet_texts = st.builds(
    lambda kind, count, nsp, ack, body: f"{kind}{count}{nsp}{ack}{body}",
    st.sampled_from([*"0123456789", "", "x", "²"]),
    st.sampled_from(["", "1-", "2-", "0-", "-", "99999999999-", "a-"]),
    st.sampled_from(["", "/", "/chat,", "/chat", ",", "/a/b,"]),
    st.sampled_from(["", "0", "12", "9" * 16, "-1"]),
    st.one_of(st.just(""), json_values.map(json.dumps), st.text(max_size=12)))
envelope_texts = st.one_of(
    st.text(max_size=60), st.binary(max_size=60),
    st.dictionaries(st.sampled_from(["type", "data", "id", "extra"]), json_values,
                    max_size=4).map(json.dumps))


@fuzz
@given(envelope_texts)
def test_envelope_decode_gives_a_frame_or_a_client_error(text: str | bytes) -> None:
    try:
        frame = envelope.decode(text)
    except ClientError as exc:
        assert exc.code in ("invalid_json", "invalid_frame")
    else:
        assert isinstance(frame.type, str) and frame.type


@pytest.mark.parametrize("text", ["[" * 100_000, '{"type":"x","data":' + "[" * 100_000])
def test_deeply_nested_envelope_is_invalid_json_not_a_crash(text: str) -> None:
    with pytest.raises(ClientError) as info:
        envelope.decode(text)
    assert info.value.code == "invalid_json"


@fuzz
@given(st.text(max_size=60))
def test_engineio_decode_gives_packets_or_an_engineio_error(body: str) -> None:
    try:
        packets = engineio.decode_payload(body)
    except engineio.EngineIOError:
        return
    assert all(isinstance(p.type, engineio.PacketType) for p in packets)


@fuzz
@given(st.lists(st.one_of(packet_texts, st.text(max_size=30), st.binary(max_size=8)),
                min_size=1, max_size=5))
def test_socketio_decoder_gives_packets_or_a_socketio_error(messages: list[Any]) -> None:
    decoder = socketio.Decoder()
    for message in messages:
        try:
            packet = decoder.feed(message)
        except socketio.SocketIOError:
            decoder = socketio.Decoder()  # the transport closes the connection here
            continue
        if packet is not None:
            assert isinstance(packet.type, socketio.PacketType)
            assert packet.namespace.startswith("/")


@pytest.mark.parametrize("text", ["2" + "[" * 100_000, "451-" + "[" * 100_000])
def test_deeply_nested_socketio_packet_is_an_error_not_a_crash(text: str) -> None:
    with pytest.raises(socketio.SocketIOError):
        socketio.Decoder().feed(text)


payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("_placeholder", "num")), inner,
        max_size=4),
    max_leaves=10)


@fuzz
@given(event=st.text(min_size=1, max_size=20), args=st.lists(payloads, max_size=3),
       namespace=st.sampled_from(["/", "/chat", "/atendimento"]),
       ack=st.none() | st.integers(0, 2**53 - 1))
def test_events_survive_an_encode_decode_round_trip(event: str, args: list[Any],
                                                     namespace: str, ack: int | None) -> None:
    packet = socketio.Packet(socketio.PacketType.EVENT, namespace, [event, *args], ack)
    decoder = socketio.Decoder(max_attachments=1000)
    decoded = [decoder.feed(message) for message in socketio.encode(packet)]
    assert decoded[:-1] == [None] * (len(decoded) - 1)
    assert decoded[-1] == socketio.Packet(
        socketio.PacketType.BINARY_EVENT if socketio.has_binary(args)
        else socketio.PacketType.EVENT, namespace, [event, *args], ack)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_in_envelopes_and_packets(constant: str) -> None:
    with pytest.raises(ClientError) as info:
        envelope.decode('{"type":"ping","data":' + constant + "}")
    assert info.value.code == "invalid_json"
    with pytest.raises(socketio.SocketIOError):
        socketio.Decoder().feed('2["echo",' + constant + "]")


@pytest.mark.parametrize("text", ["2e308", "[-1e400]", '{"a": 1' + "0" * 400 + ".0}"])
def test_a_number_too_large_for_a_float_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)


def test_large_finite_numbers_and_big_integers_are_json() -> None:
    assert jsontext.loads("[1e308, -1.5e-300, 123456789012345678901234567890]") == [
        1e308, -1.5e-300, 123456789012345678901234567890]


@pytest.mark.parametrize("text", ['"\\ud800"', '["x\\uDFFF"]', '{"\\udc00": 1}',
                                  '"\\ude00\\ud83d"'])
def test_a_lone_surrogate_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)
    with pytest.raises(ValueError):
        jsontext.loads(text.encode())


def test_a_surrogate_pair_is_one_character() -> None:
    assert jsontext.loads('"\\ud83d\\ude00"') == "\U0001F600"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_infinity_are_never_encoded(value: float) -> None:
    with pytest.raises(ValueError):
        envelope.encode_event("x", value)
    with pytest.raises(ValueError):
        socketio.encode_event_text("/", "x", value)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_nested_up_to_the_limit_parses_and_deeper_is_refused() -> None:
    assert jsontext.loads(nested(jsontext.MAX_DEPTH)) is not None
    assert jsontext.loads(b'{"a":' + nested(jsontext.MAX_DEPTH - 1).encode() + b"}")
    for text in (nested(jsontext.MAX_DEPTH + 1), nested(900), nested(100_000),
                 '{"a":' + nested(jsontext.MAX_DEPTH) + "}"):
        with pytest.raises(ValueError):
            jsontext.loads(text)


def test_many_brackets_side_by_side_are_not_depth() -> None:
    wide = "[" + ",".join(["[]"] * 5_000) + "]"
    assert len(jsontext.loads(wide)) == 5_000
    assert len(jsontext.loads('["' + "[" * 500 + '"]')) == 1  # brackets inside a string


@pytest.mark.parametrize("depth", [jsontext.MAX_DEPTH + 1, 900])
def test_too_deep_envelopes_and_packets_are_protocol_errors(depth: int) -> None:
    with pytest.raises(ClientError) as info:
        envelope.decode('{"type":"x","data":' + nested(depth) + "}")
    assert info.value.code == "invalid_json"
    with pytest.raises(socketio.SocketIOError):
        socketio.Decoder().feed('2["x",' + nested(depth) + "]")
