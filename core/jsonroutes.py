"""Plugin JSON routes without the web framework.

A plugin route that backends call many times a second (the desk's ticket
creation) pays more for the framework than for its own work: hypercorn writes
a response in several sends, quart sets up a request context per request.
A plugin may declare such a route with ``switchboard_json_routes``: an exact
method and path, an API key, a JSON body in, a status and a JSON value out.
The server then serves it on a keep-alive connection by reading the request
itself and answering with a single write, like ``POST /api/v1/emit``.

The plugin keeps the same route in its blueprint (for the API documents, and
for what this path does not take: chunked bodies, ``Expect``, another route on
the same connection, which all go to hypercorn with the bytes already read),
and both call the same handler, so the HTTP API behaves the same either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .broker import BrokerUnavailable
from .config import ApiKey
from .errors import ClientError, server_failure
from .http import ERROR_STATUS, find_api_key, presented_key, tenant_for_key
from .protocol import jsontext
from .store import StoreUnavailable
from .supervise import log_failure
from .transport.front import HeadError, PrefixedStream, RequestHead, read_head, refuse

if TYPE_CHECKING:
    from .app import App

__all__ = ["JsonHandler", "JsonRequest", "JsonRoutes", "serve_json_call"]

log = logging.getLogger("switchboard.http")

_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


@attrs.frozen
class JsonRequest:
    """A request to a JSON route: the API key it presented and its body."""

    api_key: ApiKey
    data: Any

    def tenant(self, given: str | None) -> str:
        """The tenant the request acts on: ``given`` (from its body or query),
        else the tenant of a tenant-scoped key (as ``api_key_tenant``)."""
        return tenant_for_key(self.api_key, given)


#: A JSON route's handler: the JSON answer of a request and its status (in
#: this order, as a quart view returns them, so that the plugin's blueprint
#: route may return what it gives). A :class:`ClientError` it raises is
#: answered with its code's status.
JsonHandler = Callable[[JsonRequest], Awaitable[tuple[Any, int]]]
FallBack = Callable[[trio.abc.Stream, RequestHead], Awaitable[None]]


def _response(status: int, body: Any, *, close: bool, retry_after: bool = False) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            f"{'retry-after: 1' + chr(13) + chr(10) if retry_after else ''}"
            f"{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n")
    return head.encode() + payload


async def serve_json_call(app: App, handler: JsonHandler, what: str, key: ApiKey | None,
                          body: bytes) -> tuple[int, Any]:
    """Call ``handler`` for a request that presented ``key`` (None: no valid
    key) with ``body``: the status and JSON answer, errors as the HTTP API
    answers them (a failure of the server is logged and answered 500/503)."""
    if key is None:
        return 401, {"code": "unauthorized", "message": "a valid API key is required"}
    try:
        data = jsontext.loads(body)
    except (ValueError, UnicodeDecodeError):
        app.metrics.client_errors.labels("invalid_json").inc()
        return 400, {"code": "invalid_json", "message": "request body must be JSON"}
    try:
        answer, status = await handler(JsonRequest(key, data))
    except ClientError as exc:
        app.metrics.client_errors.labels(exc.code).inc()
        return ERROR_STATUS.get(exc.code, 400), exc.to_dict()
    except (StoreUnavailable, BrokerUnavailable) as exc:
        error = server_failure(exc, what)
        app.metrics.client_errors.labels(error.code).inc()
        return 503, error.to_dict()
    return status, answer


class JsonRoutes:
    """The JSON routes the plugins declared, served on a connection while its
    requests are for them (see the module)."""

    def __init__(self, app: App, routes: Mapping[tuple[str, str], JsonHandler],
                 fallback: FallBack) -> None:
        self.app = app
        self.routes = dict(routes)
        self.fallback = fallback

    def _handler(self, head: RequestHead) -> JsonHandler | None:
        if ("transfer-encoding" in head.headers or "expect" in head.headers
                or head.content_length is None):
            return None
        return self.routes.get((head.method, head.path))

    async def serve(self, stream: trio.abc.Stream, head: RequestHead) -> None:
        """Serve requests on this connection while they are for these routes,
        then hand it to the HTTP framework; the stream is closed at the end."""
        try:
            await self._serve(stream, head)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _serve(self, stream: trio.abc.Stream, head: RequestHead) -> None:
        app = self.app
        limits = app.config.http
        while True:
            handler = self._handler(head)
            if handler is None:
                await self.fallback(PrefixedStream(stream, head.raw), head)
                return
            length = head.content_length
            assert length is not None
            close = (head.version == "HTTP/1.0"
                     or head.headers.get("connection", "").lower() == "close")
            if length > limits.max_body:
                await stream.send_all(_response(413, {
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
            what = f"{head.method} {head.path}"
            try:
                presented = presented_key(head.headers.get("x-api-key", ""),
                                          head.headers.get("authorization", ""))
                key = find_api_key(app.config.api_keys, presented) if presented else None
                status, answer = await serve_json_call(app, handler, what, key, data[:length])
            except Exception as exc:  # a bug: this request fails alone, with a 500
                app.metrics.connection_failures.inc()
                log_failure(what, exc)
                status, answer, close = 500, {"code": "internal_error",
                                              "message": "the request failed on the server"}, True
            await stream.send_all(_response(status, answer, close=close,
                                            retry_after=status == 503))
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
