"""Engine.IO v4 packets and polling payloads (sans-IO)."""

from __future__ import annotations

import json

import pytest
from switchboard.core.protocol import engineio as eio
from switchboard.core.protocol.engineio import (
    CloseKind,
    EngineEvent,
    EngineIOError,
    EngineState,
    ErrorCode,
    Packet,
    PacketType,
)

# -- the handshake -----------------------------------------------------------------


def test_open_packet_carries_the_handshake_in_milliseconds() -> None:
    text = eio.open_packet("abc", upgrades=["websocket"], ping_interval=25,
                           ping_timeout=20.5, max_payload=1000)
    assert text[0] == "0"
    assert json.loads(text[1:]) == {"sid": "abc", "upgrades": ["websocket"],
                                    "pingInterval": 25000, "pingTimeout": 20500,
                                    "maxPayload": 1000}


def test_open_packet_is_compact_json() -> None:
    text = eio.open_packet("s", upgrades=[], ping_interval=1, ping_timeout=1, max_payload=1)
    assert " " not in text


# -- text packets ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "packet"), [
    ('0{"sid":"x"}', Packet(PacketType.OPEN, '{"sid":"x"}')),
    ("1", Packet(PacketType.CLOSE)),
    ("2", Packet(PacketType.PING)),
    ("2probe", Packet(PacketType.PING, "probe")),
    ("3", Packet(PacketType.PONG)),
    ("3probe", Packet(PacketType.PONG, "probe")),
    ("4hello", Packet(PacketType.MESSAGE, "hello")),
    ('42["e",1]', Packet(PacketType.MESSAGE, '2["e",1]')),
    ("4", Packet(PacketType.MESSAGE, "")),
    ("4héllo ☃", Packet(PacketType.MESSAGE, "héllo ☃")),
    ("5", Packet(PacketType.UPGRADE)),
    ("6", Packet(PacketType.NOOP)),
])
def test_every_packet_type_decodes(text: str, packet: Packet) -> None:
    decoded = eio.decode_text(text)
    assert decoded == packet
    assert not decoded.binary


def test_text_packet_is_its_type_digit_then_its_data() -> None:
    for kind in PacketType:
        assert eio.decode_text(f"{int(kind)}data") == Packet(kind, "data")


def test_base64_record_decodes_to_a_binary_message() -> None:
    packet = eio.decode_text("bAAEC/w==")
    assert packet == Packet(PacketType.MESSAGE, b"\x00\x01\x02\xff")
    assert packet.binary


def test_empty_base64_record_is_an_empty_binary_message() -> None:
    assert eio.decode_text("b") == Packet(PacketType.MESSAGE, b"")


@pytest.mark.parametrize("text", ["", "7", "9hello", "x", "hello", "-1", " 4x", "b!!!!",
                                  "bAAE", "bAA=A", "²", "\u0663probe"])
def test_malformed_packet_raises_engineio_error(text: str) -> None:
    with pytest.raises(EngineIOError):
        eio.decode_text(text)


# -- polling payloads ------------------------------------------------------------------


def test_payload_records_are_split_on_the_record_separator() -> None:
    body = "4hello\x1e2\x1ebAQID\x1e4[\"x\"]"
    assert eio.decode_payload(body) == [
        Packet(PacketType.MESSAGE, "hello"),
        Packet(PacketType.PING),
        Packet(PacketType.MESSAGE, b"\x01\x02\x03"),
        Packet(PacketType.MESSAGE, '["x"]'),
    ]


def test_payload_of_one_packet_has_no_separator() -> None:
    assert eio.decode_payload("40") == [Packet(PacketType.MESSAGE, "0")]


@pytest.mark.parametrize("body", ["", "4a\x1e", "\x1e4a", "4a\x1e\x1e4b", "4a\x1e8"])
def test_payload_with_an_empty_or_bad_record_raises(body: str) -> None:
    with pytest.raises(EngineIOError):
        eio.decode_payload(body)


def test_text_record_is_the_packet_as_utf8() -> None:
    assert eio.polling_record("4héllo") == "4héllo".encode()


def test_binary_record_is_b_and_base64() -> None:
    assert eio.polling_record(b"\x00\x01\x02\xff") == b"bAAEC/w=="


def test_records_are_joined_with_the_separator() -> None:
    records = [eio.polling_record("40"), eio.polling_record(b"\xff"), eio.polling_record("6")]
    assert eio.encode_payload(records) == b"40\x1eb/w==\x1e6"


def test_encoded_payload_decodes_back() -> None:
    packets: list[str | bytes] = ['42["e",{"a":"é"}]', b"\x00" * 300, "2", "3probe"]
    body = eio.encode_payload([eio.polling_record(p) for p in packets]).decode()
    assert [p.data if p.binary else f"{int(p.type)}{p.data}"
            for p in eio.decode_payload(body)] == packets


def test_error_codes_have_the_reference_messages() -> None:
    assert {int(code): eio.ERROR_MESSAGES[code] for code in eio.ErrorCode} == {
        0: "Transport unknown",
        1: "Session ID unknown",
        2: "Bad handshake method",
        3: "Bad request",
        4: "Forbidden",
        5: "Unsupported protocol version",
    }


# -- the session's state ----------------------------------------------------------------

LIVE = [EngineState.OPENING, EngineState.POLLING, EngineState.UPGRADING, EngineState.WEBSOCKET]


def run(events: list[EngineEvent]) -> list[EngineState | None]:
    """The states after each of ``events`` from OPENING (None: refused, state kept)."""
    state, seen = EngineState.OPENING, []
    for event in events:
        after = eio.next_state(state, event)
        seen.append(after)
        state = after or state
    return seen


def test_polling_session_upgrades_through_a_probe_to_websocket() -> None:
    assert run([EngineEvent.OPENED_POLLING, EngineEvent.PROBE_STARTED, EngineEvent.UPGRADED,
                EngineEvent.CLOSE, EngineEvent.GONE]) == [
        EngineState.POLLING, EngineState.UPGRADING, EngineState.WEBSOCKET,
        EngineState.CLOSING, EngineState.CLOSED]


def test_probe_that_ends_leaves_the_session_on_polling_and_upgradable_again() -> None:
    assert run([EngineEvent.OPENED_POLLING, EngineEvent.PROBE_STARTED,
                EngineEvent.PROBE_ENDED, EngineEvent.PROBE_STARTED]) == [
        EngineState.POLLING, EngineState.UPGRADING, EngineState.POLLING,
        EngineState.UPGRADING]


@pytest.mark.parametrize("events", [
    [EngineEvent.PROBE_STARTED],  # no open packet yet
    [EngineEvent.OPENED_WEBSOCKET, EngineEvent.PROBE_STARTED],  # already on a WebSocket
    [EngineEvent.OPENED_POLLING, EngineEvent.PROBE_STARTED, EngineEvent.PROBE_STARTED],
    [EngineEvent.OPENED_POLLING, EngineEvent.UPGRADED],  # upgrade without a probe socket
    [EngineEvent.OPENED_POLLING, EngineEvent.CLOSE, EngineEvent.PROBE_STARTED],
    [EngineEvent.OPENED_POLLING, EngineEvent.CLOSE, EngineEvent.CLOSE],
    [EngineEvent.OPENED_POLLING, EngineEvent.GONE, EngineEvent.CLOSE],
    [EngineEvent.OPENED_POLLING, EngineEvent.GONE, EngineEvent.GONE],
    [EngineEvent.OPENED_POLLING, EngineEvent.OPENED_WEBSOCKET],
], ids=lambda events: ",".join(e.value for e in events))
def test_event_that_cannot_happen_in_a_state_is_refused(events: list[EngineEvent]) -> None:
    assert run(events)[-1] is None


@pytest.mark.parametrize("state", LIVE)
def test_every_live_state_closes_then_is_forgotten(state: EngineState) -> None:
    assert eio.next_state(state, EngineEvent.CLOSE) is EngineState.CLOSING
    assert eio.next_state(state, EngineEvent.GONE) is EngineState.CLOSED
    assert eio.next_state(EngineState.CLOSING, EngineEvent.GONE) is EngineState.CLOSED


@pytest.mark.parametrize(("state", "refusal", "takes"), [
    (None, ErrorCode.UNKNOWN_SID, False),
    (EngineState.CLOSED, ErrorCode.UNKNOWN_SID, False),
    (EngineState.POLLING, None, True),
    (EngineState.OPENING, None, False),
    (EngineState.UPGRADING, None, False),
    (EngineState.WEBSOCKET, None, False),
    (EngineState.CLOSING, None, False),
])
def test_only_a_session_on_polling_takes_a_websocket(
        state: EngineState | None, refusal: ErrorCode | None, takes: bool) -> None:
    """An unknown session's WebSocket is an HTTP error; a known one's is
    accepted, and closed at once unless the session is on long-polling."""
    assert eio.websocket_refusal(state) is refusal
    assert (state is not None and eio.takes_websocket(state)) is takes


@pytest.mark.parametrize(("state", "transport", "refusal"), [
    (None, "polling", ErrorCode.UNKNOWN_SID),
    (EngineState.CLOSED, "polling", ErrorCode.UNKNOWN_SID),
    (EngineState.POLLING, "polling", None),
    (EngineState.UPGRADING, "polling", None),
    (EngineState.CLOSING, "polling", None),  # its last poll takes the close packet
    (EngineState.WEBSOCKET, "websocket", ErrorCode.BAD_REQUEST),
    (EngineState.CLOSING, "websocket", ErrorCode.BAD_REQUEST),
    (EngineState.OPENING, "polling", ErrorCode.BAD_REQUEST),
])
def test_polling_requests_are_served_while_the_session_is_on_polling(
        state: EngineState | None, transport: str, refusal: ErrorCode | None) -> None:
    assert eio.polling_refusal(state, transport) is refusal


def test_close_kinds_decide_the_waiting_poll_answer_and_when_the_sid_is_forgotten() -> None:
    assert {kind: (eio.waiting_poll_answer(kind), eio.forgotten_at_once(kind))
            for kind in CloseKind} == {
        CloseKind.SERVER: (b"1", False),
        CloseKind.ERROR: (b"1", True),
        CloseKind.CLIENT: (b"6", True),
    }
