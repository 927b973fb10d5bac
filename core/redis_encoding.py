"""What the Redis broker writes in Redis, and reads back.

Publications and saved sessions are JSON with two marks: bytes as
``{"\\0b": base64}`` and several arguments as ``{"\\0a": [...]}``. The
data's own keys that begin with NUL get one more NUL in front when stored
(and lose it when read), so that data a publisher sent in those shapes is
never taken for a mark. Both are rare: only a text holding an escaped NUL
(``\\u0000``) is walked for them. Also here: stream entry ids.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from .args import Args
from .broker import Publication

_MARK = "\x00"
_BYTES = "\x00b"
_ARGS = "\x00a"


def _default(value: Any) -> Any:
    if isinstance(value, Args):
        return {_ARGS: list(value.values)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {_BYTES: base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _escaped(value: Any) -> Any:
    """``value`` with one NUL more in front of every dict key that begins with
    one (copied where there are such keys, else the same objects)."""
    if isinstance(value, dict):
        return {(_MARK + key if isinstance(key, str) and key.startswith(_MARK) else key):
                _escaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    if isinstance(value, Args):
        return Args(*(_escaped(item) for item in value.values))
    return value


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if _BYTES in obj:
            return base64.b64decode(obj[_BYTES], validate=True)
        if _ARGS in obj:
            return Args(*obj[_ARGS])
    if any(key.startswith(_MARK) for key in obj):
        return {(key[1:] if key.startswith(_MARK) else key): item for key, item in obj.items()}
    return obj


def dumps(value: Any) -> str:
    text = json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)
    if "\\u0000" in text:  # (a mark, or a NUL of the data's: its keys escaped)
        text = json.dumps(_escaped(value), default=_default, separators=(",", ":"),
                          ensure_ascii=False)
    return text


def loads(text: str | bytes) -> Any:
    marked = (b"\\u0000" in text) if isinstance(text, bytes) else ("\\u0000" in text)
    return json.loads(text, object_hook=_hook) if marked else json.loads(text)


def encode_publication(p: Publication) -> str:
    return dumps([p.tenant, p.room, p.event, p.data, p.exclude, p.skip_room])


def decode_publication(text: str | bytes) -> Publication:
    tenant, room, event, data, exclude, skip_room = loads(text)
    return Publication(tenant, room, event, data, exclude, skip_room)


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


#: A stream entry id as Redis writes it: two unsigned 64-bit numbers.
_ENTRY_ID = re.compile(r"(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})")


def is_entry_id(value: str) -> bool:
    """Whether ``value`` is an entry id Redis would accept in ``XRANGE`` (a
    client's recovery offset is checked before it gets there: ``int`` also
    takes spaces, underscores, signs and other scripts' digits)."""
    if _ENTRY_ID.fullmatch(value) is None:
        return False
    ms, _, seq = value.partition("-")
    return int(ms) < 2**64 and int(seq) < 2**64
