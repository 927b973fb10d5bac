"""Rank keys: the order of the cards of a stage without renumbering it.

A rank is a string compared as plain bytes (the column is ``COLLATE "C"``
on PostgreSQL). Between any two ranks there is always another one, so a card
moved between two neighbours takes a rank between theirs and nothing else
changes: a column of a thousand cards is reordered by writing one row.

This is David Greenspan's fractional indexing (the algorithm of
``rocicorp/fractional-indexing``), written out here because no maintained
Python package of it exists: a rank is a variable-length integer part (its
first letter says how many base-62 digits follow: ``a0``..``az``, ``b00``..,
and ``Zz``.. downwards) and an optional fractional part that never ends with
``0``. Appending at either end of a column increments the integer part, so
the keys grow with the logarithm of the number of cards; only repeatedly
inserting into the same gap grows a key, by about one digit per six moves.
"""

from __future__ import annotations

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE = {digit: n for n, digit in enumerate(DIGITS)}
_SMALLEST_INTEGER = "A" + "0" * 26
#: Longest rank accepted (from storage or a client): a sane bound, far away.
MAX_RANK_LENGTH = 200


def _integer_length(head: str) -> int:
    if "a" <= head <= "z":
        return ord(head) - ord("a") + 2
    if "A" <= head <= "Z":
        return ord("Z") - ord(head) + 2
    raise ValueError(f"invalid rank head {head!r}")


def is_rank(value: object) -> bool:
    """Whether ``value`` is a rank :func:`between` can have produced."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_RANK_LENGTH:
        return False
    if any(c not in _VALUE for c in value) or value == _SMALLEST_INTEGER:
        return False
    try:
        length = _integer_length(value[0])
    except ValueError:
        return False
    return len(value) >= length and not (len(value) > length and value.endswith("0"))


def between(low: str | None, high: str | None) -> str:
    """A rank strictly between ``low`` and ``high`` (None: no bound on that side).

    Raises ``ValueError`` unless both are ranks (or None) and ``low < high``.
    """
    if (low is not None and not is_rank(low)) or (high is not None and not is_rank(high)):
        raise ValueError(f"not ranks: {low!r}, {high!r}")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"{low!r} is not before {high!r}")
    if low is None:
        if high is None:
            return "a0"
        integer = high[:_integer_length(high[0])]
        if integer == _SMALLEST_INTEGER:
            return integer + _midpoint("", high[len(integer):])
        if integer < high:
            return integer
        lower = _decrement(integer)
        if lower is None:
            raise ValueError("no rank before the smallest")
        return lower
    integer = low[:_integer_length(low[0])]
    fraction = low[len(integer):]
    if high is None:
        higher = _increment(integer)
        return integer + _midpoint(fraction, None) if higher is None else higher
    high_integer = high[:_integer_length(high[0])]
    if integer == high_integer:
        return integer + _midpoint(fraction, high[len(integer):])
    higher = _increment(integer)
    if higher is None:
        raise ValueError("no rank after the largest")
    return higher if higher < high else integer + _midpoint(fraction, None)


def _midpoint(a: str, b: str | None) -> str:
    """A fraction between ``a`` ("" for none) and ``b`` (None for none), ``a < b``."""
    if b is not None:
        n = 0  # the common prefix (``a`` padded with zeros) stays
        while n < len(b) and (a[n] if n < len(a) else "0") == b[n]:
            n += 1
        if n > 0:
            return b[:n] + _midpoint(a[n:], b[n:])
    low = _VALUE[a[0]] if a else 0
    high = _VALUE[b[0]] if b is not None else len(DIGITS)
    if high - low > 1:
        return DIGITS[(low + high) // 2]
    if b is not None and len(b) > 1:  # consecutive first digits
        return b[0]
    return DIGITS[low] + _midpoint(a[1:], None)


def _increment(integer: str) -> str | None:
    head, digits = integer[0], list(integer[1:])
    for i in reversed(range(len(digits))):
        value = _VALUE[digits[i]] + 1
        if value < len(DIGITS):
            digits[i] = DIGITS[value]
            return head + "".join(digits)
        digits[i] = "0"
    if head == "Z":
        return "a0"
    if head == "z":
        return None
    head = chr(ord(head) + 1)
    if head > "a":
        digits.append("0")
    else:
        digits.pop()
    return head + "".join(digits)


def _decrement(integer: str) -> str | None:
    head, digits = integer[0], list(integer[1:])
    for i in reversed(range(len(digits))):
        value = _VALUE[digits[i]] - 1
        if value >= 0:
            digits[i] = DIGITS[value]
            return head + "".join(digits)
        digits[i] = "z"
    if head == "a":
        return "Zz"
    if head == "A":
        return None
    head = chr(ord(head) - 1)
    if head < "Z":
        digits.append("z")
    else:
        digits.pop()
    return head + "".join(digits)
