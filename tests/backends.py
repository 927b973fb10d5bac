"""A real HTTP backend for the tests of what Switchboard calls out to (proxies,
webhooks, an identity provider's JWKS): a quart-trio app served by hypercorn
on an ephemeral 127.0.0.1 port, in the test's own Trio run. Each route's
answer is a function the test sets; every call is recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

#: What a route's function returns: a JSON-able value (200), or
#: ``(status, body)`` where a ``bytes`` body is sent as it is.
Answer = Any
Route = Callable[[dict[str, Any]], Awaitable[Answer] | Answer]


@attrs.define
class Call:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Backend:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.calls: list[Call] = []
        self.base_url = ""
        #: Set to make every route hang until it is set again (a backend that
        #: accepts the connection and never answers).
        self.hang = trio.Event()
        self.hang.set()
        self._arrived = trio.Event()
        app = QuartTrio(__name__)

        @app.route("/<path:path>", methods=["GET", "POST"])
        async def answer(path: str) -> Response:
            body = await request.get_data(as_text=False)
            assert isinstance(body, bytes)
            self.calls.append(Call("/" + path, request.method, dict(request.headers), body))
            self._arrived.set()
            self._arrived = trio.Event()
            await self.hang.wait()
            route = self.routes.get("/" + path)
            if route is None:
                return Response('{"error": "no such route"}', status=404)
            result = route(json.loads(body) if body else {})
            if isinstance(result, Awaitable):
                result = await result
            status, payload = result if isinstance(result, tuple) else (200, result)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            return Response(data, status=status, content_type="application/json")

        self.app = app

    def url(self, path: str) -> str:
        return self.base_url + path

    def on(self, path: str, route: Route) -> None:
        self.routes[path] = route

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def wait_calls(self, path: str, count: int, *, timeout: float = 60.0) -> list[Call]:
        """The calls to ``path`` once there are at least ``count`` of them."""
        with trio.fail_after(timeout):
            while len(self.calls_to(path)) < count:
                await self._arrived.wait()
        return self.calls_to(path)


@pytest.fixture(name="backend")
async def backend_fixture(nursery: trio.Nursery) -> AsyncIterator[Backend]:
    """A backend on an ephemeral port (import ``backend_fixture`` to use it)."""
    made = Backend()
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    stop = trio.Event()
    binds = await nursery.start(lambda task_status: serve(
        made.app, config, shutdown_trigger=stop.wait, task_status=task_status))
    made.base_url = binds[0]
    yield made
    made.hang.set()
    stop.set()


class InProcess(httpx.AsyncBaseTransport):
    """httpx requests answered by a quart app in-process, through quart's test
    client: no socket, so the mock clock only moves when the test lets it."""

    def __init__(self, app: QuartTrio) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        client = self.app.test_client()
        body = await request.aread()
        response = await client.open(
            request.url.raw_path.decode(), method=request.method, data=body,
            headers={k: v for k, v in request.headers.items()
                     if k.lower() not in ("host", "content-length", "transfer-encoding")})
        return httpx.Response(response.status_code, headers=list(response.headers.items()),
                              content=await response.get_data(as_text=False))
