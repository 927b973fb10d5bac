"""Event declarations: name, payload class, handler, rate limit; and
:class:`Args`, several arguments of one event or answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import attrs

from .args import Args, argument_list
from .config import Rate
from .errors import INVALID_PAYLOAD, ClientError
from .structure import first_error, make_converter

if TYPE_CHECKING:
    from .session import Session

Handler = Callable[["Session", Any], Awaitable[Any]]
T = TypeVar("T")

_converter = make_converter()


# attrs instances among the values are unstructured; the Args stays an Args
_converter.register_unstructure_hook(
    Args, lambda args: Args(*(_converter.unstructure(value) for value in args.values)))


def event_data(spec: EventSpec | None, arguments: list[Any]) -> Any:
    """What a transport whose events carry argument lists (Socket.IO) hands to
    ``App.dispatch`` for an event of ``spec`` that came with ``arguments``:
    all of them (an :class:`Args`) for a handler declared with ``args=True``,
    else the first (None when there is none; the others are ignored, as a
    one-parameter JavaScript handler ignores them)."""
    if spec is not None and spec.args:
        return Args(*arguments)
    return arguments[0] if arguments else None


@attrs.frozen
class EventSpec:
    """A declared event (build it with :func:`incoming` or :func:`outgoing`)."""

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
    #: The handler takes the event's whole argument list (a ``list``) instead
    #: of one payload; ``payload`` is then None.
    args: bool = False
    #: JSON Schema of a payload that has no attrs class (``payload`` None), for
    #: the AsyncAPI document (see :func:`switchboard.core.object_schema`).
    schema: Any = None
    #: An incoming event's answer (its ack): an attrs class or a JSON Schema.
    ack: Any = None
    #: The rooms an outgoing event is published to (``conversation:{conversationId}``,
    #: ``tenant:{tenantId}:agents``, ``session`` for the one session it answers).
    rooms: tuple[str, ...] = ()

    def structure(self, data: Any) -> Any:
        """Turn the JSON payload into an instance of ``payload`` (with ``args``,
        into the list of the event's arguments)."""
        if self.args:
            return argument_list(data)
        if isinstance(data, Args):  # a one-payload handler takes the first argument
            data = data.values[0] if data.values else None
        if self.payload is None:
            return data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ClientError(INVALID_PAYLOAD, "payload must be a JSON object", field="data")
        try:
            return _converter.structure(data, self.payload)
        except Exception as exc:
            err = first_error(exc, data=data)
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


def structure_payload(data: Any, cls: type[T], field: str = "") -> T:
    """``data`` (a JSON object) as an instance of the attrs class ``cls``, with
    the same strict rules as event payloads; otherwise :class:`ClientError`
    ``invalid_payload`` naming the first bad field (under ``field``:
    ``content.url``)."""
    if not isinstance(data, dict):
        raise ClientError(INVALID_PAYLOAD, f"{field}: expected a JSON object" if field
                          else "expected a JSON object", field=field or None)
    try:
        return _converter.structure(data, cls)
    except Exception as exc:
        err = first_error(exc, field, data)
        raise ClientError(INVALID_PAYLOAD, f"{err.field}: {err.message}" if err.field
                          else err.message, field=err.field or None) from None


def unstructure(value: Any) -> Any:
    """attrs instances (and containers of them) to JSON-ready values."""
    return _converter.unstructure(value)


def incoming(name: str, payload: type | None, handler: Handler, *,
             rate: Rate | None = None, doc: str = "", args: bool = False,
             ack: Any = None, schema: Any = None) -> EventSpec:
    """Declare a client-to-server event handled by ``handler(session, payload)``.

    The payload is the event's first argument (None when it has none; a
    Socket.IO client's further arguments are ignored). With ``args=True``
    (``payload`` must be None) the handler gets every argument, as a ``list``:
    ``socket.emit("x", 1, "two")`` gives ``[1, "two"]``; a plain WebSocket
    client sends them as a JSON array in ``data``.

    The handler's return value (attrs instances are unstructured) is the ack,
    :class:`Args` for several ack arguments; raising :class:`ClientError`
    answers an error with its code. ``ack`` (an attrs class or a JSON
    Schema) and ``schema`` (the payload's JSON Schema, for a handler without a
    payload class) are for the AsyncAPI document.
    """
    if args and payload is not None:
        raise ValueError(f"event {name!r}: a handler of every argument (args=True) "
                         "takes a list, so its payload class must be None")
    return EventSpec(name, "in", payload, handler, rate, doc, args=args, ack=ack,
                     schema=schema)


def outgoing(name: str, payload: type | None = None, *, doc: str = "",
             rooms: tuple[str, ...] | list[str] = (), schema: Any = None) -> EventSpec:
    """Declare a server-to-client event (for documentation and listing): its
    payload class, or ``schema`` (a JSON Schema) when it has none, and the
    ``rooms`` it is published to."""
    return EventSpec(name, "out", payload, None, None, doc, rooms=tuple(rooms),
                     schema=schema)
