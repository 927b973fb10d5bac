"""Strict cattrs structuring shared by config files and event payloads.

cattrs' default converter is forgiving (``bool("no")`` is ``True``, ``int("7")``
is ``7``); at the edges of the service a value of the wrong type is an error
that names the field instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
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


class _NotFinite(ValueError):
    """A float that is NaN or infinite (its message is kept as it is)."""


def _finite_float(value: Any, _: Any) -> float:
    """A float, and a number: not NaN or infinite (TOML writes both as ``nan``
    and ``inf``; no setting or payload means either, and a deadline of NaN
    stops Trio)."""
    try:
        number = float(_strict(float, (int, float))(value, _))
    except OverflowError:  # (an int past the largest float)
        raise _NotFinite("must be a finite number, not this large") from None
    if not math.isfinite(number):
        raise _NotFinite(f"must be a finite number, not {number}")
    return number


def make_converter() -> cattrs.Converter:
    """A converter that rejects unknown keys and never coerces between types
    (floats are finite numbers)."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _finite_float)
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    return converter


def _format(exc: BaseException, kind: type | None) -> str:
    """cattrs' messages, but keep what a validator said instead of "invalid value"."""
    if isinstance(exc, ValueError | TypeError) and (kind is None or isinstance(
            exc, _NotFinite)) and exc.args:
        return str(exc.args[0])
    return format_exception(exc, kind)


_LITERAL_ERROR = re.compile(r"unknown error \((.+) not in literal typing\.Literal\[(.*)\]\)")
_converter = make_converter()


@attrs.frozen
class _Leaf:
    """The first concrete problem in a cattrs error tree."""

    exc: BaseException
    #: Keys and indexes from the structured value down to the problem.
    path: list[str]
    #: The type being structured where a field failed (None: a class refused).
    kind: type | None = None
    #: When the class itself refused its values (a validator, a post-init
    #: check): the class and the data it was given.
    cls: type | None = None
    data: Any = None


def _leaves(exc: BaseException, data: Any, path: list[str]) -> list[_Leaf]:
    """Every problem, in the order of ``cattrs.transform_error``."""
    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        out: list[_Leaf] = []
        for sub, inote in with_notes:
            where = [*path, str(inote.index)]
            if isinstance(sub, ClassValidationError | IterableValidationError):
                out += _leaves(sub, _item(data, inote.index), where)
            else:
                out.append(_Leaf(sub, where, inote.type))
        return out + [_Leaf(other, path) for other in without]
    if isinstance(exc, ClassValidationError):
        attr_notes, refused = exc.group_exceptions()
        out = []
        for sub, anote in attr_notes:
            where = [*path, anote.name]
            if isinstance(sub, ClassValidationError | IterableValidationError):
                out += _leaves(sub, _item(data, anote.name), where)
            else:
                out.append(_Leaf(sub, where, anote.type))
        return out + [_Leaf(other, path, cls=exc.cl, data=data) for other in refused]
    return [_Leaf(exc, path)]


def _item(data: Any, key: Any) -> Any:
    if isinstance(data, Mapping):
        return data.get(key)
    if isinstance(data, list | tuple) and isinstance(key, int) and 0 <= key < len(data):
        return data[key]
    return None


def _refusing_field(leaf: _Leaf) -> str | None:
    """Which field of ``leaf.cls`` its checks refused, when the error does not say.

    attrs runs validators in ``__init__``, after cattrs has structured every
    field, so the error carries no field name unless the validator put one
    in (``ValueError(message, attribute)``, as ``attrs.validators.in_`` and
    :mod:`switchboard.core.validators` do) or raised an error with a ``key``
    (:class:`~switchboard.core.config.ConfigError`). Otherwise each field's
    validator is run again, in order, on the structured values without
    ``__init__``: the first that refuses is the field.
    """
    exc, cls = leaf.exc, leaf.cls
    for name in ("key", "field"):
        named = getattr(exc, name, None)
        if isinstance(named, str) and named:
            return named
    attribute = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(attribute, attrs.Attribute):
        return attribute.name
    if cls is None or not attrs.has(cls) or not isinstance(leaf.data, Mapping):
        return None
    try:
        attrs.resolve_types(cls)
        fields = attrs.fields(cls)
        instance = object.__new__(cls)
        for field in fields:
            if field.init and field.name in leaf.data:
                value = _converter.structure(leaf.data[field.name], field.type)
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                factory = field.default.factory
                value = factory(instance) if field.default.takes_self else factory()
            elif field.default is not attrs.NOTHING:
                value = field.default
            else:
                return None
            object.__setattr__(instance, field.name, value)
    except Exception:  # the values cannot be rebuilt: leave the field unnamed
        return None
    for field in fields:
        if field.validator is None:
            continue
        try:
            field.validator(instance, field, getattr(instance, field.name))
        except Exception:
            return str(field.name)
    return None


def first_error(exc: BaseException, prefix: str = "", data: Any = None) -> StructureError:
    """Turn a cattrs error tree into its first concrete problem, with the dotted path.

    ``data`` is what was structured: with it, a check of a class that does not
    name its field (an attrs validator such as ``attrs.validators.gt(0)``) is
    still attributed to the field it refused.
    """
    return all_errors(exc, prefix, data)[0]


def all_errors(exc: BaseException, prefix: str = "", data: Any = None) -> list[StructureError]:
    """Every concrete problem of a cattrs error tree, each with its dotted path
    (see :func:`first_error`); never empty."""
    if not isinstance(exc, ClassValidationError | IterableValidationError):
        return [StructureError(prefix, str(exc) or type(exc).__name__)]
    errors = [error for leaf in _leaves(exc, data, []) for error in _errors(leaf, prefix)]
    return errors or [StructureError(prefix, str(exc) or type(exc).__name__)]


def _errors(leaf: _Leaf, prefix: str) -> list[StructureError]:
    parts = [prefix, *leaf.path] if prefix else list(leaf.path)
    if isinstance(leaf.exc, ForbiddenExtraKeysError):
        return [StructureError(".".join([*parts, extra]), "unknown key")
                for extra in sorted(leaf.exc.extra_fields)]
    message = _format(leaf.exc, leaf.kind)
    if leaf.cls is not None and (field := _refusing_field(leaf)) is not None:
        parts.append(field)
        message = str(getattr(leaf.exc, "message", "") or message)
    if message == "required field missing":
        message = "required"
    elif literal := re.fullmatch(_LITERAL_ERROR, message):
        message = f"{literal.group(1)!r} is not one of {literal.group(2)}"
    return [StructureError(".".join(parts), message)]
