"""Strict cattrs structuring shared by config files and event payloads.

cattrs' default converter is forgiving (``bool("no")`` is ``True``, ``int("7")``
is ``7``); at the edges of the service a value of the wrong type is an error
that names the field instead.
"""

from __future__ import annotations

import re
from typing import Any

import cattrs
from cattrs import transform_error
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.v import format_exception


class StructureError(ValueError):
    """A value could not be structured; ``field`` is the dotted path of the first bad key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _strict(kind: type, accept: tuple[type, ...]) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accept):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return hook


def make_converter() -> cattrs.Converter:
    """A converter that rejects unknown keys and never coerces between types."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    return converter


def _format(exc: BaseException, kind: type | None) -> str:
    """cattrs' messages, but keep what a validator said instead of "invalid value"."""
    if isinstance(exc, ValueError | TypeError) and kind is None and exc.args:
        attribute = exc.args[1] if len(exc.args) > 1 else None
        name = getattr(attribute, "name", None)
        message = str(exc.args[0])
        return f"{name}: {message}" if isinstance(name, str) else message
    return format_exception(exc, kind)


_LITERAL_ERROR = re.compile(r"unknown error \((.+) not in literal typing\.Literal\[(.*)\]\)")


def first_error(exc: BaseException, prefix: str = "") -> StructureError:
    """Turn a cattrs error tree into its first concrete problem, with the dotted path."""
    if not isinstance(exc, ClassValidationError | IterableValidationError):
        return StructureError(prefix, str(exc) or type(exc).__name__)
    line = transform_error(exc, path="$", format_exception=_format)[0]
    message, _, where = line.rpartition(" @ ")
    parts = [p for p in re.split(r"\.|\[|\]", where.removeprefix("$")) if p]
    named = re.fullmatch(r"(\w+): (.*)", message)
    if named and not message.startswith(("invalid value", "invalid type")):
        parts.append(named.group(1))
        message = named.group(2)
    if prefix:
        parts.insert(0, prefix)
    extra = re.fullmatch(r"extra fields found \((.+)\)", message)
    if extra:
        parts.append(extra.group(1).split(", ")[0])
        message = "unknown key"
    elif message == "required field missing":
        message = "required"
    elif literal := re.fullmatch(_LITERAL_ERROR, message):
        message = f"{literal.group(1)!r} is not one of {literal.group(2)}"
    return StructureError(".".join(p.strip("'\"") for p in parts), message)
