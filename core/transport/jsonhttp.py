"""JSON requests on a kept-alive connection, without the web framework.

The shared loop of the fast paths (``POST /api/v1/emit`` in
:mod:`.publish`, the plugins' JSON routes in :mod:`..jsonroutes`): read a
request's body, answer it with one write, read the next head, for as long as
the connection's requests are ones the fast path serves; the first that is
not goes to the framework with the bytes already read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..supervise import log_failure
from .front import HeadError, PrefixedStream, RequestHead, read_head, refuse
from .wschannel import write_queued_now

if TYPE_CHECKING:
    from ..app import App

_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
#: Where a request the fast path does not serve goes (the framework).
FallBack = Callable[[trio.abc.Stream, RequestHead], Awaitable[None]]
#: The answer (status, JSON body) to a request's head and whole body.
Answerer = Callable[[RequestHead, bytes], Awaitable[tuple[int, Any]]]


def json_response(status: int, body: Any, *, close: bool, retry_after: bool = False,
                  keep_alive: float = 0.0) -> bytes:
    """A whole HTTP/1.1 response with a JSON body, as one piece of bytes.

    ``keep_alive``: the seconds an idle kept-alive connection stays open,
    told to the client (``keep-alive: timeout=N``, whole seconds, rounded
    down) so that it stops reusing the connection before the server closes
    it: a request sent just as the server closes would otherwise fail
    (Node's ``http.Agent``, for one, reads the hint)."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    connection = "close" if close else "keep-alive"
    if not close and keep_alive >= 1:
        connection += f"\r\nkeep-alive: timeout={int(keep_alive)}"
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            f"{'retry-after: 1' + chr(13) + chr(10) if retry_after else ''}"
            f"connection: {connection}\r\n\r\n")
    return head.encode() + payload


def is_simple(head: RequestHead) -> bool:
    """A request whose whole body the fast path can read: a known length, no
    chunks, no ``Expect``."""
    return ("transfer-encoding" not in head.headers and "expect" not in head.headers
            and head.content_length is not None)


async def serve_json_requests(app: App, stream: trio.abc.Stream, head: RequestHead,
                              answerer_of: Callable[[RequestHead], Answerer | None],
                              fallback: FallBack, *, retry_after_503: bool) -> None:
    """Answer the connection's requests while ``answerer_of(head)`` has an
    answerer for them; hand the first that has none to ``fallback``. A body
    over ``http.max_body`` is 413 and ends the connection; a slow body or an
    idle connection past its timeout ends it quietly; an answerer that fails
    fails its request alone (500, connection closed)."""
    limits = app.config.http
    while True:
        answerer = answerer_of(head)
        if answerer is None:
            await fallback(PrefixedStream(stream, head.raw), head)
            return
        length = head.content_length
        assert length is not None
        close = (head.version == "HTTP/1.0"
                 or head.headers.get("connection", "").lower() == "close")
        if length > limits.max_body:
            await stream.send_all(json_response(413, {
                "code": "payload_too_large",
                "message": f"request body over {limits.max_body} bytes"}, close=True))
            return
        data = head.raw[head.body_start:]
        if len(data) < length:  # (usually the body came with the head)
            with trio.move_on_after(limits.body_timeout) as body_timeout:
                while len(data) < length:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
            if body_timeout.cancelled_caught:
                return
        try:
            status, answer = await answerer(head, data[:length])
        except Exception as exc:  # a bug: this request fails alone, with a 500
            app.metrics.connection_failures.inc()
            log_failure(f"{head.method} {head.path}", exc)
            status, answer, close = 500, {"code": "internal_error",
                                          "message": "the request failed on the server"}, True
        write_queued_now()  # what it published goes out before its answer
        await stream.send_all(json_response(status, answer, close=close,
                                            retry_after=retry_after_503 and status == 503,
                                            keep_alive=limits.keep_alive_timeout))
        if close:
            return
        try:
            with trio.fail_after(limits.keep_alive_timeout):
                head = await read_head(stream, data[length:])
        except HeadError as exc:
            await refuse(stream, exc)
            return
        except trio.TooSlowError:
            return
