"""Parsing JSON that a client sent: bounded nesting, one error type.

``json.loads`` recurses once per nesting level: text nested a few hundred
levels deep parses, and then fails later, deeper in the stack, when the same
value is encoded again (a broadcast, an ack). Client JSON nested deeper than
:data:`MAX_DEPTH` is therefore refused where it is parsed. Counting brackets
first keeps this free for the usual frame: only text with more than
``MAX_DEPTH`` brackets is walked.

``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259): Python's
parser takes them, but members of a room and backends with strict parsers
would reject the frames they end up in, so they are refused here too, with
numbers too large for a float (``2e308``), which would become infinities. So is
a lone surrogate escape (``"\\ud800"``): it parses into a string that cannot
be encoded as UTF-8 again (an echo, a broadcast, a database row). Only text
with a ``\\ud`` escape in it is walked for them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "loads"]

#: Deepest nesting of arrays and objects accepted in client JSON.
MAX_DEPTH = 100


def loads(text: str | bytes) -> Any:
    """``json.loads`` that raises ``ValueError`` (never ``RecursionError``) for
    malformed text and for nesting deeper than :data:`MAX_DEPTH`."""
    try:
        if isinstance(text, str):
            value = _decode(text)
        else:
            value = _decode(text.decode(json.detect_encoding(text), "surrogatepass"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if _brackets(text) > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if _may_have_surrogates(text) and _has_lone_surrogate(value):
        raise ValueError("JSON string with a lone surrogate (not Unicode text)")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float; one too large for a float (``2e308``) would
    become an infinity, which no JSON can carry on."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


#: One decoder for every call (``json.loads`` with options builds a new one,
#: and its scanner, each time: a cost per frame).
_decode = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float).decode

_SURROGATE = re.compile("[\ud800-\udfff]")


def _may_have_surrogates(text: str | bytes) -> bool:
    if isinstance(text, str):
        return "\\ud" in text or "\\uD" in text
    return b"\\ud" in text or b"\\uD" in text


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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
