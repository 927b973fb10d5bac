"""Encoding of server-to-client WebSocket frames (RFC 6455), sans-IO.

Server frames are never masked, so a frame depends only on its payload: fan-out
encodes it once and writes the same bytes to every member of a room. Incoming
frames are parsed by wsproto.
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def text_frame(text: str | bytes) -> bytes:
    return encode_frame(text.encode() if isinstance(text, str) else text, OP_TEXT)


def close_frame(code: int, reason: str = "") -> bytes:
    body = struct.pack("!H", code) + reason.encode()[:123]
    return encode_frame(body, OP_CLOSE)


def ping_frame(payload: bytes = b"") -> bytes:
    return encode_frame(payload, OP_PING)
