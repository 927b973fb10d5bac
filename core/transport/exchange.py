"""Every phase of an HTTP/1.1 exchange served by hypercorn has a deadline.

hypercorn's own keep-alive timer does not end idle connections here, and it
bounds neither a request head trickled on a kept-alive connection nor a body
sent a byte a second. Each connection handed to hypercorn therefore runs
inside a cancel scope whose deadline follows the phase of the exchange:

=============  ==================================================  =======================
phase          from                                                deadline
=============  ==================================================  =======================
head           the first byte of a request                         ``server.handshake_timeout``
body           the app starting on the request                     ``http.body_timeout``
responding     the last byte of the body                           none (the app decides:
                                                                   a long poll waits)
idle           the end of the response                             ``http.keep_alive_timeout``
=============  ==================================================  =======================

A response that goes out before the request's body has all been received
(the app refused it without reading it) closes the connection
(``Connection: close``): hypercorn drops the rest of such a body and would
never read the next request of a kept-alive connection.

The connection's stream reports bytes arriving (:meth:`ExchangeTimer.data_received`)
and an ASGI wrapper (:func:`timed_asgi`) reports the request starting, its
body complete and the response complete. The same wrapper ends a request
whose app raises with one log line and a 500, instead of hypercorn's
tracebacks.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from ..supervise import log_failure

log = logging.getLogger("switchboard.http")

#: Seconds left to write out the last response of a connection the client
#: asked to close: hypercorn closes it once written; this bounds a write that
#: does not end.
CLOSE_GRACE = 1.0
#: Key of the connection's timer in the ASGI scope's ``state``.
TIMER_KEY = "switchboard.exchange_timer"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Phase(enum.Enum):
    HEAD = "head"
    BODY = "body"
    RESPONDING = "responding"
    IDLE = "idle"


class ExchangeTimer:
    """The deadline of one connection, moved along by its phases (sans-IO but
    for the cancel scope it sets)."""

    def __init__(self, scope: trio.CancelScope, *, head: float, body: float,
                 keep_alive: float) -> None:
        self.scope = scope
        self._limits = {Phase.HEAD: head, Phase.BODY: body, Phase.RESPONDING: math.inf,
                        Phase.IDLE: keep_alive}
        self.phase = Phase.HEAD
        self._enter(Phase.HEAD)

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self.scope.deadline = trio.current_time() + self._limits[phase]

    def data_received(self) -> None:
        if self.phase is Phase.IDLE:
            self._enter(Phase.HEAD)

    def request_started(self) -> None:
        self._enter(Phase.BODY)

    def request_complete(self) -> None:
        if self.phase is Phase.BODY:
            self._enter(Phase.RESPONDING)

    def response_complete(self, *, last: bool = False) -> None:
        """The app has sent its response; ``last`` when the connection ends
        with it (``Connection: close``, HTTP/1.0): then only the time to write
        it out is left."""
        self._enter(Phase.IDLE)
        if last:
            self.scope.deadline = min(self.scope.deadline, trio.current_time() + CLOSE_GRACE)

    @property
    def overran(self) -> str | None:
        """What took too long, once the scope has been cancelled by its deadline."""
        if not self.scope.cancelled_caught:
            return None
        return {Phase.HEAD: "request head", Phase.BODY: "request body",
                Phase.IDLE: "idle keep-alive"}.get(self.phase)


def _closes(scope: Scope) -> bool:
    """Does the client want the connection closed after this exchange?"""
    connection = b""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"connection":
            connection += b"," + value.lower()
    tokens = {token.strip() for token in connection.split(b",")}
    if scope.get("http_version") == "1.0":
        return b"keep-alive" not in tokens
    return b"close" in tokens


def _has_body(scope: Scope) -> bool:
    """Does the request come with a body (a non-zero Content-Length, or chunks)?"""
    for name, value in scope.get("headers") or ():
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length"
                                            and value.strip() not in (b"0", b"")):
            return True
    return False


def timed_asgi(app: Any) -> Any:
    """``app`` (an ASGI application) reporting each exchange's phases to the connection's timer, and
    answering 500 (logged once) when it raises before responding."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        timer: ExchangeTimer | None = (scope.get("state") or {}).get(TIMER_KEY)
        if timer is not None:
            timer.request_started()
        last = _closes(scope)
        responded = False
        received = not _has_body(scope)

        async def timed_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.disconnect" or (
                    message["type"] == "http.request" and not message.get("more_body")):
                received = True
                if timer is not None:
                    timer.request_complete()
            return message

        async def timed_send(message: Message) -> None:
            nonlocal responded, last
            responded = True
            if message["type"] == "http.response.start" and not received and not last:
                # Answered before the request's body has all come (a refused
                # key, an unknown session): hypercorn drops the rest of the
                # body and never reads the next request on this connection.
                # The client is told to use a new one.
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"connection", b"close")]}
                last = True
            if timer is not None and message["type"] == "websocket.accept":
                timer.request_complete()  # a WebSocket lasts as long as its app wants
            if timer is not None and message["type"] in (
                    "http.response.body", "websocket.http.response.body") \
                    and not message.get("more_body"):
                # Before the send: the app is cancelled as soon as hypercorn has
                # taken the last part, which may interrupt this await.
                timer.response_complete(last=last)
            await send(message)

        try:
            await app(scope, timed_receive, timed_send)
        except Exception as exc:
            log_failure(f"{scope.get('method', '')} {scope.get('path', '')}", exc)
            if scope["type"] == "http" and not responded:
                body = json.dumps({"code": "internal_error",
                                   "message": "the request failed on the server"}).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})

    return asgi
