"""Event declarations: name, payload class, handler, rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .config import Rate
from .errors import INVALID_PAYLOAD, ClientError
from .structure import first_error, make_converter

if TYPE_CHECKING:
    from .session import Session

Handler = Callable[["Session", Any], Awaitable[Any]]

_converter = make_converter()


@attrs.frozen
class EventSpec:
    name: str
    direction: Literal["in", "out"]
    #: attrs class of the payload; ``None`` accepts any JSON value as is.
    payload: type | None = None
    handler: Handler | None = None
    #: Default per-connection rate limit; ``[limits.events]`` overrides it.
    rate: Rate | None = None
    doc: str = ""
    #: Name of the plugin that declared it (filled in at registration).
    plugin: str = ""

    def structure(self, data: Any) -> Any:
        """Turn the JSON payload into an instance of ``payload``."""
        if self.payload is None:
            return data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ClientError(INVALID_PAYLOAD, "payload must be a JSON object", field="data")
        try:
            return _converter.structure(data, self.payload)
        except Exception as exc:
            err = first_error(exc)
            raise ClientError(INVALID_PAYLOAD, f"{err.field}: {err.message}" if err.field
                              else err.message, field=err.field or None) from None


class Deferred:
    """A handler's answer that comes later, without holding up the client's next
    events: return ``Deferred(fn)`` and the transport acks with ``await fn()``
    when it is done. Answers still go out in the order the events came.

    The chat plugin queues a message for the batched write and defers the ack,
    so a client's next messages join the same batch instead of waiting.
    """

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        self._fn = fn

    async def wait(self) -> Any:
        result = await self._fn()
        return unstructure(result) if attrs.has(type(result)) else result


def unstructure(value: Any) -> Any:
    """attrs instances (and containers of them) to JSON-ready values."""
    return _converter.unstructure(value)


def incoming(name: str, payload: type | None, handler: Handler, *,
             rate: Rate | None = None, doc: str = "") -> EventSpec:
    """Declare a client-to-server event handled by ``handler(session, payload)``.

    The handler's return value (attrs instances are unstructured) is the ack;
    raising :class:`ClientError` answers an error with its code.
    """
    return EventSpec(name, "in", payload, handler, rate, doc)


def outgoing(name: str, payload: type | None = None, *, doc: str = "") -> EventSpec:
    """Declare a server-to-client event (for documentation and listing)."""
    return EventSpec(name, "out", payload, None, None, doc)
