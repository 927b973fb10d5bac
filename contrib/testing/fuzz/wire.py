"""Reading what the server answered: HTTP statuses, WebSocket frames, the JSON
inside Socket.IO and Engine.IO packets."""

from __future__ import annotations

import json
import re
from typing import Any

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def http_statuses(data: bytes) -> tuple[list[int], bytes]:
    """Statuses of the HTTP responses at the start of ``data``, and the bytes
    after a 101 answer (WebSocket frames), if any."""
    statuses: list[int] = []
    pos = 0
    while pos < len(data):
        match = _STATUS.match(data, pos)
        if match is None:  # a body we could not skip (a HEAD answer): look further
            match = _STATUS.search(data, pos)
            if match is None or data[match.start() - 2:match.start()] != b"\r\n":
                break
        status = int(match.group(1))
        statuses.append(status)
        end = data.find(b"\r\n\r\n", match.start())
        if end == -1:
            break
        head = data[match.start():end].decode("latin-1").lower()
        pos = end + 4
        if status == 101:
            return statuses, data[pos:] if "upgrade: websocket" in head else b""
        length = re.search(r"\r\ncontent-length:\s*(\d+)", head)
        if length and not 100 <= status < 200 and status not in (204, 304):
            pos += int(length.group(1))
        elif "transfer-encoding: chunked" in head:
            while (line_end := data.find(b"\r\n", pos)) != -1:
                try:
                    size = int(data[pos:line_end].split(b";")[0], 16)
                except ValueError:
                    break
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
    return statuses, b""


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the whole server frames in ``data``."""
    frames = []
    pos = 0
    while len(data) - pos >= 2:
        opcode, second = data[pos] & 0x0F, data[pos + 1]
        length, start = second & 0x7F, pos + 2
        if length == 126:
            length, start = int.from_bytes(data[start:start + 2], "big"), start + 2
        elif length == 127:
            length, start = int.from_bytes(data[start:start + 8], "big"), start + 8
        if second & 0x80:
            start += 4
        if start + length > len(data):
            break
        frames.append((opcode, data[start:start + length]))
        pos = start + length
    return frames


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant: {name}")


def json_problem(text: str | bytes) -> str | None:
    """Why ``text`` is not strict JSON (RFC 8259: no NaN or Infinity), or None."""
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply to parse"
    return None


def socketio_json(packet: str) -> str | None:
    """The JSON part of a Socket.IO packet's text (after type, attachments,
    namespace and ack id), or None."""
    i = 1
    if packet[:1] in ("5", "6") and (dash := packet.find("-")) != -1:
        i = dash + 1
    if packet[i:i + 1] == "/":
        comma = packet.find(",", i)
        if comma == -1:
            return None
        i = comma + 1
    while i < len(packet) and packet[i] in "0123456789":
        i += 1
    return packet[i:] or None


def engineio_json(packet: str) -> str | None:
    """The JSON carried by an Engine.IO text packet (open or message), or None."""
    if packet.startswith("0"):
        return packet[1:] or None
    if packet.startswith("4"):
        return socketio_json(packet[1:])
    return None
