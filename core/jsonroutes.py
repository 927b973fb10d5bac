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
from .transport.front import RequestHead
from .transport.jsonhttp import Answerer, FallBack, is_simple, serve_json_requests

if TYPE_CHECKING:
    from .app import App

__all__ = ["JsonHandler", "JsonRequest", "JsonRoutes", "serve_json_call"]

log = logging.getLogger("switchboard.http")



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
        app.metrics.client_error("invalid_json")
        return 400, {"code": "invalid_json", "message": "request body must be JSON"}
    try:
        answer, status = await handler(JsonRequest(key, data))
    except ClientError as exc:
        app.metrics.client_error(exc.code)
        return ERROR_STATUS.get(exc.code, 400), exc.to_dict()
    except (StoreUnavailable, BrokerUnavailable) as exc:
        error = server_failure(exc, what)
        app.metrics.client_error(error.code)
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
        if not is_simple(head):
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
        await serve_json_requests(self.app, stream, head, self._answerer, self.fallback,
                                  retry_after_503=True)

    def _answerer(self, head: RequestHead) -> Answerer | None:
        handler = self._handler(head)
        if handler is None:
            return None

        async def answer(head: RequestHead, body: bytes) -> tuple[int, Any]:
            presented = presented_key(head.headers.get("x-api-key", ""),
                                      head.headers.get("authorization", ""))
            key = find_api_key(self.app.config.api_keys, presented) if presented else None
            return await serve_json_call(self.app, handler, f"{head.method} {head.path}",
                                         key, body)
        return answer
