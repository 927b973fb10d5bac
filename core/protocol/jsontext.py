"""Parsing JSON that a client sent: bounded nesting, one error type.

``json.loads`` recurses once per nesting level: text nested a few hundred
levels deep parses, and then fails later, deeper in the stack, when the same
value is encoded again (a broadcast, an ack). Client JSON nested deeper than
:data:`MAX_DEPTH` is therefore refused where it is parsed. Counting brackets
first keeps this free for the usual frame: only text with more than
``MAX_DEPTH`` brackets is walked.

``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259): Python's
parser takes them, but members of a room and backends with strict parsers
would reject the frames they end up in, so they are refused here too.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "loads"]

#: Deepest nesting of arrays and objects accepted in client JSON.
MAX_DEPTH = 100


def loads(text: str | bytes) -> Any:
    """``json.loads`` that raises ``ValueError`` (never ``RecursionError``) for
    malformed text and for nesting deeper than :data:`MAX_DEPTH`."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if _brackets(text) > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
