"""The publish fast path: ``POST /api/v1/emit`` without the web framework.

A backend publishing one event per request at 1,000 requests/s spends most of
the server's time in the framework (hypercorn writes a response in several
sends, quart sets up a request context). This handler reads the request
itself, publishes, and answers with a single write, on a keep-alive
connection. Anything it does not handle (chunked bodies, ``Expect``, another
route on the same connection) is handed to hypercorn with the bytes already
read, so the HTTP API behaves the same either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..broker import BrokerUnavailable
from ..errors import ClientError, server_failure
from ..http import ERROR_STATUS, find_api_key, presented_key, publish_emits
from ..protocol import jsontext
from ..supervise import log_failure
from .front import HeadError, PrefixedStream, RequestHead, read_head, refuse

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("switchboard.http")
_REASONS = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            413: "Payload Too Large", 500: "Internal Server Error"}
FallBack = Callable[[trio.abc.Stream, RequestHead], Awaitable[None]]


def _response(status: int, body: dict[str, Any], *, close: bool) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            f"{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n")
    return head.encode() + payload


def _error(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


async def _answer(app: App, head: RequestHead, body: bytes) -> tuple[int, dict[str, Any]]:
    presented = presented_key(head.headers.get("x-api-key", ""),
                              head.headers.get("authorization", ""))
    key = find_api_key(app.config.api_keys, presented) if presented else None
    if key is None:
        return 401, _error(401, "unauthorized", "a valid API key is required")
    try:
        data = jsontext.loads(body)
    except (ValueError, UnicodeDecodeError):
        app.metrics.client_errors.labels("invalid_json").inc()
        return 400, _error(400, "invalid_json", "request body must be JSON")
    try:
        published = await publish_emits(app, key, data)
    except ClientError as exc:
        app.metrics.client_errors.labels(exc.code).inc()
        status = ERROR_STATUS.get(exc.code, 400)
        return status, exc.to_dict()
    except BrokerUnavailable as exc:  # (earlier items of a list may have gone out)
        error = server_failure(exc, "POST /api/v1/emit")
        app.metrics.client_errors.labels(error.code).inc()
        return 503, error.to_dict()
    return 202, {"published": published}


def _simple(head: RequestHead) -> bool:
    """Requests this path serves itself; the others go to hypercorn."""
    return (head.method == "POST" and head.path == "/api/v1/emit"
            and "transfer-encoding" not in head.headers and "expect" not in head.headers
            and head.content_length is not None)


async def serve_publish(app: App, stream: trio.abc.Stream, head: RequestHead,
                        fallback: FallBack) -> None:
    """Serve ``POST /api/v1/emit`` requests on this connection while they come."""
    while True:
        if not _simple(head):
            await fallback(PrefixedStream(stream, head.raw), head)
            return
        length = head.content_length
        assert length is not None
        close = (head.version == "HTTP/1.0"
                 or head.headers.get("connection", "").lower() == "close")
        limits = app.config.http
        if length > limits.max_body:
            await stream.send_all(_response(413, _error(
                413, "payload_too_large", f"request body over {limits.max_body} bytes"),
                close=True))
            return
        data = head.raw[head.body_start:]
        with trio.move_on_after(limits.body_timeout) as body_timeout:
            while len(data) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
        if body_timeout.cancelled_caught:
            return
        try:
            status, answer = await _answer(app, head, data[:length])
        except Exception as exc:  # a bug: this request fails alone, with a 500
            app.metrics.connection_failures.inc()
            log_failure("POST /api/v1/emit", exc)
            status, answer, close = 500, _error(500, "internal_error",
                                                "the request failed on the server"), True
        await stream.send_all(_response(status, answer, close=close))
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
