"""attrs validators for the fields of event payloads and HTTP bodies.

What the store can keep, checked where the value arrives, so that a bad value
is an ``invalid_payload`` error naming the field instead of a database error:
identifiers are 1 to :data:`MAX_ID_LENGTH` characters without control
characters, free text holds no NUL (PostgreSQL text cannot), and ids and
cursors fit a signed 64-bit integer column.

>>> @attrs.frozen
... class Ref:
...     conversationId: str = attrs.field(validator=identifier)
...     before: int | None = attrs.field(
...         default=None, validator=attrs.validators.optional(row_id))
"""

from __future__ import annotations

import re
from typing import Any

import attrs

__all__ = ["MAX_ID_LENGTH", "MAX_ROW_ID", "check_identifier", "identifier", "max_length",
           "row_id", "text"]

#: Longest identifier (user, tenant, conversation, client message id, role).
MAX_ID_LENGTH = 200
#: Largest id or cursor (a signed 64-bit integer column).
MAX_ROW_ID = 2**63 - 1

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _fail(attribute: attrs.Attribute[Any], message: str) -> None:
    # (message, attribute): how the payload structuring names the field
    raise ValueError(message, attribute)


def identifier(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """attrs validator: 1 to :data:`MAX_ID_LENGTH` characters, no control characters."""
    problem = check_identifier(value)
    if problem is not None:
        _fail(attribute, problem)


def text(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """attrs validator: no NUL character (PostgreSQL text cannot hold it)."""
    if "\x00" in value:
        _fail(attribute, "must not contain NUL characters")


def max_length(limit: int) -> Any:
    """A validator: at most ``limit`` characters (naming the field, unlike attrs' max_len)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
        if len(value) > limit:
            _fail(attribute, f"longer than {limit} characters")

    return check


def between(low: int, high: int) -> Any:
    """A validator: an integer from ``low`` to ``high`` (naming the field), for a
    value stored in a column narrower than :func:`row_id`'s (PostgreSQL's
    ``integer`` holds up to 2**31-1)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
        if not low <= value <= high:
            _fail(attribute, f"must be between {low} and {high}")

    # (what the API documents say of the field)
    check.json_schema = {"minimum": low, "maximum": high}  # type: ignore[attr-defined]
    return check


def row_id(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    """attrs validator: an id or cursor from 0 to :data:`MAX_ROW_ID`."""
    if not 0 <= value <= MAX_ROW_ID:
        _fail(attribute, f"must be between 0 and {MAX_ROW_ID}")


def check_identifier(value: str) -> str | None:
    """What is wrong with ``value`` as an identifier, or None (for values that do
    not come through a payload class: path parameters, token claims)."""
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        return f"must be 1 to {MAX_ID_LENGTH} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None
