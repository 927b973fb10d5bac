"""Event declarations: name, payload class, handler, rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

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

    __slots__ = ("_fn", "source", "transform")

    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        self._fn = fn
        #: Set by :meth:`of`: what completes the answer, without a task.
        self.source: Completion | None = None
        self.transform: Callable[[Any], Any] = _same

    @classmethod
    def of(cls, source: Completion, transform: Callable[[Any], Any] | None = None) -> Deferred:
        """The answer is ``transform(outcome)`` of ``source``, a queued write (such
        as :class:`~switchboard.core.batching.Pending`) that calls back when done.

        The transport sends it from that callback, in order with the
        connection's other answers, with no task waiting for it: the cheap
        path for a handler that only queues a write.
        """

        finish = transform or _same

        # (the closure must not hold the Deferred: a reference cycle per answer
        # leaves the cyclic garbage collector a pause-making amount of work)
        async def wait() -> Any:
            await source.wait()
            return finish(source.outcome())

        deferred = cls(wait)
        deferred.source = source
        deferred.transform = finish
        return deferred

    def settled(self) -> Any:
        """With a source that is done: the answer (raises what the source raised)."""
        assert self.source is not None
        return _answer(self.transform(self.source.outcome()))

    async def wait(self) -> Any:
        return _answer(await self._fn())


class Completion(Protocol):
    """Something that completes later and says so: a queued write."""

    def add_done_callback(self, callback: Callable[[], None]) -> None: ...

    def outcome(self) -> Any: ...

    async def wait(self) -> Any: ...


def _same(value: Any) -> Any:
    return value


def _answer(result: Any) -> Any:
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
