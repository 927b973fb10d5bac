"""The plain WebSocket protocol: JSON envelopes ``{"type", "data", "id"}``, sans-IO.

Client to server::

    {"type": "room:join", "data": {"room": "ticket:42"}, "id": 7}

Server to client: events ``{"type": "user:online", "data": {...}}``; the answer
to a frame with an ``id`` is ``{"type": "ack", "id": 7, "data": ...}`` or
``{"type": "error", "id": 7, "data": {"code", "message", "field"?}}``; a
``ping`` with an ``id`` is answered ``{"type": "pong", "id": 7, "data": ...}``.
Every answer to a frame with a valid ``id`` carries it, errors about the frame
itself included (a missing ``type``, an unknown key). The first server frame
is ``{"type": "session", "data": {"sid", "heartbeat_interval",
"heartbeat_timeout", "user_id", "tenant_id", "role"}}``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ..args import json_default
from ..errors import INVALID_FRAME, INVALID_JSON, ClientError
from . import jsontext

#: Strict JSON out: a NaN or infinity (from a plugin) is an error here, not a
#: frame that clients' parsers reject. An ``Args`` of several arguments is a
#: JSON array, in ``data`` or inside it.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=json_default).encode


@attrs.frozen
class Frame:
    type: str
    data: Any = None
    id: int | str | None = None


class FrameError(ClientError):
    """A frame that is not a valid envelope; ``id`` is its ``id`` when that
    much could be read, so that the error frame answers the right request."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 id: int | str | None = None) -> None:
        super().__init__(code, message, field=field)
        self.id = id


def decode(text: str | bytes) -> Frame:
    """Parse one client frame; raise :class:`FrameError` if it is not an envelope."""
    try:
        obj = jsontext.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise FrameError(INVALID_JSON, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError(INVALID_FRAME, "frame must be a JSON object")
    ident = obj.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, int | str)):
        raise FrameError(INVALID_FRAME, "'id' must be a number or a string", field="id")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise FrameError(INVALID_FRAME, "frame needs a string 'type'", field="type", id=ident)
    extra = set(obj) - {"type", "data", "id"}
    if extra:
        raise FrameError(INVALID_FRAME, f"unknown key {sorted(extra)[0]!r}",
                         field=sorted(extra)[0], id=ident)
    return Frame(kind, obj.get("data"), ident)


def encode_event(event: str, data: Any) -> bytes:
    return _dumps({"type": event, "data": data}).encode()


def encode_request(event: str, data: Any, ident: str) -> bytes:
    """A server event that asks for an answer: the client replies ``{"type": "ack", "id"}``."""
    return _dumps({"type": event, "data": data, "id": ident}).encode()


def encode_pong(data: Any, ident: int | str | None) -> bytes:
    """The answer to a ``ping``: its ``data`` back, and its ``id`` when it had one."""
    if ident is None:
        return encode_event("pong", data)
    return _dumps({"type": "pong", "id": ident, "data": data}).encode()


def encode_ack(ident: int | str, data: Any) -> bytes:
    return _dumps({"type": "ack", "id": ident, "data": data}).encode()


def encode_error(error: ClientError, ident: int | str | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "data": error.to_dict()}
    if ident is not None:
        frame["id"] = ident
    return _dumps(frame).encode()
