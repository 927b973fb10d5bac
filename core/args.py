"""Several arguments of one event or answer (:class:`Args`), and how the
protocols carry them. No dependency on the rest of the core: the protocol
codecs use it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs


@attrs.frozen(init=False, repr=False)
class Args:
    """Several arguments for one event or answer, where a single value would
    be one argument::

        session.emit("call:ringing", Args(call_id, caller))  # on("call:ringing", (id, from) => ...)
        return Args(None, result)  # the ack: a callback's (err, result)
        await app.publish(tenant, room, "x", Args(1, b"..."))  # binary arguments too

    Accepted as the data of ``Session.emit``, ``App.publish`` and
    ``Session.call``, and as a handler's return value (the ack). Socket.IO
    sends each value as its own argument (``Args()`` sends none); the plain
    WebSocket envelope carries them as a JSON array in ``data``.
    """

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        self.__attrs_init__(values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Args({', '.join(map(repr, self.values))})"


def argument_list(data: Any) -> list[Any]:
    """Every argument of ``data``: an :class:`Args`' values, or the arguments a
    plain WebSocket envelope's ``data`` carries (a JSON array is the list; no
    data or null is none; any other value is one argument)."""
    if isinstance(data, Args):
        return list(data.values)
    if data is None:
        return []
    if isinstance(data, list):
        return data
    return [data]


def wire_arguments(value: Any) -> list[Any]:
    """The Socket.IO arguments of an emitted value or an answer: an
    :class:`Args`' values, any other value as the one argument."""
    return list(value.values) if isinstance(value, Args) else [value]


def json_default(value: Any) -> Any:
    """``default`` of the JSON encoders: an :class:`Args` inside a value is a
    JSON array (at the top of an envelope's ``data`` too)."""
    if isinstance(value, Args):
        return list(value.values)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
