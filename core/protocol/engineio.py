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
from enum import IntEnum

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
