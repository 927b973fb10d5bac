"""Engine.IO v4 packets and polling payloads, sans-IO.

A packet is a type digit followed by its data: ``4hello`` (message),
``2`` (ping), ``3probe`` (pong). Over WebSocket each packet is one frame and a
binary message is the raw bytes of a binary frame. Over HTTP long-polling the
packets of one request or response are joined by the record separator
``\\x1e``, and a binary message is written ``b`` + base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from enum import Enum, IntEnum

import attrs

SEPARATOR = "\x1e"


class PacketType(IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class ErrorCode(IntEnum):
    """The error codes of the Engine.IO HTTP answers (``{"code", "message"}``)."""

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5


ERROR_MESSAGES = {
    ErrorCode.UNKNOWN_TRANSPORT: "Transport unknown",
    ErrorCode.UNKNOWN_SID: "Session ID unknown",
    ErrorCode.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    ErrorCode.BAD_REQUEST: "Bad request",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


class EngineIOError(ValueError):
    """A malformed packet or payload."""


# -- the session's state ----------------------------------------------------------


class EngineState(Enum):
    """Where one Engine.IO session (one ``sid``) stands."""

    #: Created; its open packet is not out yet.
    OPENING = "opening"
    #: Open on HTTP long-polling.
    POLLING = "polling"
    #: Open on long-polling while a WebSocket with its sid probes (``2probe``,
    #: ``3probe``, then ``5``); polling goes on until the upgrade packet.
    UPGRADING = "upgrading"
    #: Open on a WebSocket (from the start, or upgraded).
    WEBSOCKET = "websocket"
    #: Closed by the server and saying so: a WebSocket's close frame is on its
    #: way, or a polling client's close packet waits for its next poll.
    CLOSING = "closing"
    #: Gone: its sid is unknown from now on.
    CLOSED = "closed"


class EngineEvent(Enum):
    """What moves a session from one :class:`EngineState` to another."""

    OPENED_POLLING = "opened_polling"
    OPENED_WEBSOCKET = "opened_websocket"
    #: A WebSocket carrying the sid was accepted to probe an upgrade.
    PROBE_STARTED = "probe_started"
    #: The probing WebSocket sent the upgrade packet ``5``.
    UPGRADED = "upgraded"
    #: The probing WebSocket went away before the upgrade packet.
    PROBE_ENDED = "probe_ended"
    CLOSE = "close"
    #: The session is forgotten (its close delivered, or at once).
    GONE = "gone"


_LIVE = (EngineState.OPENING, EngineState.POLLING, EngineState.UPGRADING,
         EngineState.WEBSOCKET)
_TRANSITIONS: dict[tuple[EngineState, EngineEvent], EngineState] = {
    (EngineState.OPENING, EngineEvent.OPENED_POLLING): EngineState.POLLING,
    (EngineState.OPENING, EngineEvent.OPENED_WEBSOCKET): EngineState.WEBSOCKET,
    (EngineState.POLLING, EngineEvent.PROBE_STARTED): EngineState.UPGRADING,
    (EngineState.UPGRADING, EngineEvent.UPGRADED): EngineState.WEBSOCKET,
    (EngineState.UPGRADING, EngineEvent.PROBE_ENDED): EngineState.POLLING,
    **{(state, EngineEvent.CLOSE): EngineState.CLOSING for state in _LIVE},
    **{(state, EngineEvent.GONE): EngineState.CLOSED
       for state in (*_LIVE, EngineState.CLOSING)},
}


def next_state(state: EngineState, event: EngineEvent) -> EngineState | None:
    """The state after ``event``, or None when ``event`` cannot happen in ``state``
    (a probe for a session that is not on polling, a close of a closed one...)."""
    return _TRANSITIONS.get((state, event))


def websocket_refusal(state: EngineState | None) -> ErrorCode | None:
    """Why a WebSocket handshake carrying the sid of a session in ``state``
    (None: no such session) is refused with an HTTP error; None accepts the
    handshake. Only an unknown (or closed) session is such an error: see
    :func:`takes_websocket` for what happens to the WebSocket then.
    """
    if state is None or state is EngineState.CLOSED:
        return ErrorCode.UNKNOWN_SID
    return None


def takes_websocket(state: EngineState) -> bool:
    """Whether a session in ``state`` takes a WebSocket carrying its sid as an
    upgrade probe. Only a session on long-polling does: for one that is
    already probing, upgraded, opening or closing, the second WebSocket is
    accepted and closed at once, as the reference server does (its clients,
    and the protocol's test suite, expect a close there, not an HTTP error).
    """
    return state is EngineState.POLLING


def polling_refusal(state: EngineState | None, transport: str) -> ErrorCode | None:
    """Why a polling request (GET or POST) with the sid of a session in
    ``state`` whose current transport is ``transport`` is refused; None serves it.

    After an upgrade polling requests are refused and the session goes on; a
    polling session that is closing still answers its last poll (the close
    packet).
    """
    if state is None or state is EngineState.CLOSED:
        return ErrorCode.UNKNOWN_SID
    if transport != "polling" or state is EngineState.OPENING:
        return ErrorCode.BAD_REQUEST
    return None


class CloseKind(Enum):
    """Who ended a session, which decides what a polling client sees of it."""

    #: The server's decision (shutdown, slow consumer, connect timeout...): a
    #: polling client gets the close packet from its next poll, and the sid is
    #: known until then.
    SERVER = "server"
    #: A timeout or an error (no pong, a malformed packet, an overlapping poll):
    #: the sid is forgotten at once; a poll already waiting gets the close packet.
    ERROR = "error"
    #: The client's own close packet: the sid is forgotten at once; a poll
    #: already waiting is ended with a noop.
    CLIENT = "client"


def waiting_poll_answer(kind: CloseKind) -> bytes:
    """What a poll waiting when the session closes is answered."""
    return b"6" if kind is CloseKind.CLIENT else b"1"


def forgotten_at_once(kind: CloseKind) -> bool:
    """Whether the sid is unknown right after the close (else after the close
    packet has been polled)."""
    return kind is not CloseKind.SERVER


@attrs.frozen
class Packet:
    type: PacketType
    data: str | bytes = ""

    @property
    def binary(self) -> bool:
        return isinstance(self.data, bytes)


def open_packet(sid: str, *, upgrades: list[str], ping_interval: float,
                ping_timeout: float, max_payload: int) -> str:
    handshake = {
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": int(ping_interval * 1000),
        "pingTimeout": int(ping_timeout * 1000),
        "maxPayload": max_payload,
    }
    return f"{PacketType.OPEN}{json.dumps(handshake, separators=(',', ':'))}"


def decode_text(text: str) -> Packet:
    """One text packet (a WebSocket text frame or one polling record)."""
    if not text:
        raise EngineIOError("empty packet")
    head = text[0]
    if head == "b":
        try:
            return Packet(PacketType.MESSAGE, base64.b64decode(text[1:], validate=True))
        except (binascii.Error, ValueError):
            raise EngineIOError("invalid base64 in binary packet") from None
    if head not in "0123456":  # ASCII only: str.isdigit() accepts "²" and "٣"
        raise EngineIOError(f"unknown packet type {head!r}")
    return Packet(PacketType(int(head)), text[1:])


def decode_payload(body: str) -> list[Packet]:
    """The packets of a polling POST body."""
    return [decode_text(record) for record in body.split(SEPARATOR)]


def polling_record(packet: str | bytes) -> bytes:
    """One packet as a polling record: text as is, binary as ``b`` + base64."""
    if isinstance(packet, bytes):
        return b"b" + base64.b64encode(packet)
    return packet.encode()


def encode_payload(records: list[bytes]) -> bytes:
    """Join polling records (from :func:`polling_record`) into one response body."""
    return SEPARATOR.encode().join(records)
