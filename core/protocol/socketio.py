"""Socket.IO v5 packets, sans-IO.

A packet travels as the data of an Engine.IO message::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON>]

``2["hello",1]``, ``2/admin,12["x"]`` (with ack id 12), ``3/admin,12[true]``,
``0/admin,{"token":"..."}`` (CONNECT with auth). Binary values in the data are
replaced by ``{"_placeholder": true, "num": N}`` and sent as separate binary
messages (BINARY_EVENT ``5``, BINARY_ACK ``6``).
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

import attrs

from ..args import Args, json_default
from . import jsontext

#: Strict JSON out: a NaN or infinity (from a plugin) is an error here, not a
#: frame that clients' parsers reject. An ``Args`` inside a value is a JSON
#: array (at the top, the transport spreads it into the packet's arguments).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=json_default).encode


class PacketType(IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


class SocketIOError(ValueError):
    """A malformed Socket.IO packet."""


@attrs.frozen
class Packet:
    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


def _deconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, list | tuple | Args):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


def _reconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, list):
        return [_reconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True and isinstance(data.get("num"), int):
            num = data["num"]
            if not 0 <= num < len(buffers):
                raise SocketIOError("attachment placeholder out of range")
            return buffers[num]
        return {key: _reconstruct(value, buffers) for key, value in data.items()}
    return data


def encode(packet: Packet) -> list[str | bytes]:
    """The Engine.IO messages of ``packet``: its text, then any binary attachments."""
    buffers: list[bytes] = []
    data = packet.data
    kind = packet.type
    if data is not None and kind in (PacketType.EVENT, PacketType.ACK):
        data = _deconstruct(data, buffers)
        if buffers:
            kind = PacketType.BINARY_EVENT if kind == PacketType.EVENT else PacketType.BINARY_ACK
    parts = [str(int(kind))]
    if buffers:
        parts.append(f"{len(buffers)}-")
    if packet.namespace != "/":
        parts.append(packet.namespace + ",")
    if packet.id is not None:
        parts.append(str(packet.id))
    if data is not None:
        parts.append(_dumps(data))
    return ["".join(parts), *buffers]


def encode_event_text(namespace: str, event: str, data: Any, offset: str | None = None) -> str:
    """The text of an EVENT without attachments (the fan-out fast path)."""
    args = [event, data] if offset is None else [event, data, offset]
    prefix = "2" if namespace == "/" else f"2{namespace},"
    return prefix + _dumps(args)


class _Binary(Exception):
    """Raised by the text-only encoder at the first binary value."""


def _text_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        raise _Binary
    return json_default(value)


#: As ``_dumps``, but stops at the first binary value (which needs attachments).
_dumps_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                               default=_text_default).encode


def text_packet(kind: PacketType, namespace: str, data: list[Any],
                ident: int | None = None) -> str | None:
    """The text of an EVENT or ACK packet whose arguments ``data`` hold no
    binary value, in one pass of the JSON encoder; None when they hold one (then
    :func:`encode` makes the attachments)."""
    try:
        body = _dumps_text(data)
    except _Binary:
        return None
    head = str(int(kind)) if namespace == "/" else f"{int(kind)}{namespace},"
    return head + body if ident is None else f"{head}{ident}{body}"


def has_binary(data: Any) -> bool:
    if isinstance(data, bytes | bytearray | memoryview):
        return True
    if isinstance(data, list | tuple | Args):
        return any(has_binary(item) for item in data)
    if isinstance(data, dict):
        return any(has_binary(value) for value in data.values())
    return False


#: The largest ack id a JavaScript client can count to exactly (2**53 - 1).
_MAX_SAFE_INTEGER = 2**53 - 1
#: ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and "٣".
_DIGITS = "0123456789"


def _parse_text(text: str) -> tuple[Packet, int]:
    if not text or text[0] not in _DIGITS:
        raise SocketIOError("packet must start with a type digit")
    kind_num = int(text[0])
    if kind_num > PacketType.BINARY_ACK:
        raise SocketIOError(f"unknown packet type {kind_num}")
    kind = PacketType(kind_num)
    i = 1
    attachments = 0
    if kind in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
        dash = text.find("-", i)
        count = text[i:dash]
        if dash == -1 or not 0 < len(count) <= 9 or not all(c in _DIGITS for c in count):
            raise SocketIOError("binary packet without attachment count")
        attachments = int(text[i:dash])
        i = dash + 1
    namespace = "/"
    if i < len(text) and text[i] == "/":
        comma = text.find(",", i)
        end = comma if comma != -1 else len(text)
        namespace = text[i:end]
        i = end + 1 if comma != -1 else end
    start = i
    while i < len(text) and text[i] in _DIGITS:
        i += 1
    if i - start > 16:  # past JavaScript's safe integers (and int()'s digit limit)
        raise SocketIOError("ack id out of range")
    ack_id = int(text[start:i]) if i > start else None
    if ack_id is not None and ack_id > _MAX_SAFE_INTEGER:
        raise SocketIOError("ack id out of range")
    data: Any = None
    if i < len(text):
        try:
            data = jsontext.loads(text[i:])
        except ValueError:
            raise SocketIOError("packet data is not valid JSON") from None
    return Packet(kind, namespace, data, ack_id), attachments


class Decoder:
    """Turns Engine.IO message data into packets, joining binary attachments."""

    def __init__(self, max_attachments: int = 10) -> None:
        self.max_attachments = max_attachments
        self._pending: Packet | None = None
        self._expected = 0
        self._buffers: list[bytes] = []

    def feed(self, message: str | bytes) -> Packet | None:
        """Return a complete packet, or None while attachments are awaited."""
        if isinstance(message, bytes):
            if self._pending is None:
                raise SocketIOError("unexpected binary attachment")
            self._buffers.append(message)
            if len(self._buffers) < self._expected:
                return None
            packet = self._pending
            buffers = self._buffers
            self._pending, self._buffers, self._expected = None, [], 0
            return _join(packet, buffers)
        if self._pending is not None:
            raise SocketIOError("text packet while binary attachments were awaited")
        packet, attachments = _parse_text(message)
        _validate(packet)
        if attachments:
            if attachments > self.max_attachments:
                raise SocketIOError("too many binary attachments")
            self._pending, self._expected = packet, attachments
            return None
        if packet.type in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
            packet = _join(packet, [])
        return packet


def _join(packet: Packet, buffers: list[bytes]) -> Packet:
    """``packet`` with its placeholders replaced by ``buffers``."""
    try:
        return attrs.evolve(packet, data=_reconstruct(packet.data, buffers))
    except RecursionError:
        raise SocketIOError("packet data nested too deeply") from None


def _validate(packet: Packet) -> None:
    kind = packet.type
    if kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
        if not isinstance(packet.data, list) or not packet.data:
            raise SocketIOError("event data must be a non-empty array")
        if not isinstance(packet.data[0], str):
            raise SocketIOError("event name must be a string")
    elif kind in (PacketType.ACK, PacketType.BINARY_ACK):
        if packet.id is None or not isinstance(packet.data, list):
            raise SocketIOError("ack needs an id and an array")
    elif kind == PacketType.CONNECT:
        if packet.data is not None and not isinstance(packet.data, dict):
            raise SocketIOError("connect payload must be an object")
    elif kind == PacketType.CONNECT_ERROR:
        raise SocketIOError("clients do not send CONNECT_ERROR")
