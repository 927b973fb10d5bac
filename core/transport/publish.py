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

import logging
from typing import TYPE_CHECKING, Any

import trio

from ..broker import BrokerUnavailable
from ..errors import ClientError, server_failure
from ..http import ERROR_STATUS, find_api_key, presented_key, publish_emits
from ..protocol import jsontext
from .front import RequestHead
from .jsonhttp import Answerer, FallBack, is_simple, serve_json_requests
from .wschannel import written_here

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("switchboard.http")


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
        app.metrics.client_error("invalid_json")
        return 400, _error(400, "invalid_json", "request body must be JSON")
    try:
        with written_here():  # (out before the answer, without a task for it)
            published = await publish_emits(app, key, data)
    except ClientError as exc:
        app.metrics.client_error(exc.code)
        status = ERROR_STATUS.get(exc.code, 400)
        return status, exc.to_dict()
    except BrokerUnavailable as exc:  # (earlier items of a list may have gone out)
        error = server_failure(exc, "POST /api/v1/emit")
        app.metrics.client_error(error.code)
        return 503, error.to_dict()
    return 202, {"published": published}


async def serve_publish(app: App, stream: trio.abc.Stream, head: RequestHead,
                        fallback: FallBack) -> None:
    """Serve ``POST /api/v1/emit`` requests on this connection while they come."""

    def answerer_of(head: RequestHead) -> Answerer | None:
        if head.method == "POST" and head.path == "/api/v1/emit" and is_simple(head):
            return lambda head, body: _answer(app, head, body)
        return None

    await serve_json_requests(app, stream, head, answerer_of, fallback, retry_after_503=False)
