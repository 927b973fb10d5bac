"""The simulator's server (see the package docstring)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from typing import Any

import attrs
import httpx
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

#: Seconds the simulator waits for the switchboard to answer one of its webhooks.
WEBHOOK_TIMEOUT = 30.0

@attrs.define
class SimulatorConfig:
    #: Cloud API side: the number, its token, the app's secret (signs webhooks),
    #: and where the app's webhooks go (the session's webhook URL).
    phone_number_id: str = "100200300"
    access_token: str = "sim-access-token"
    app_secret: str = "sim-app-secret"
    cloud_webhook: str | None = None
    #: Bridge side: the instance, its API key (sent in webhook bodies), and
    #: where its webhooks go.
    instance: str = "sim"
    bridge_api_key: str = "sim-bridge-key"
    bridge_webhook: str | None = None
    #: Seconds between QR rotations of the bridge.
    qr_interval: float = 20.0
    #: Fire sent/delivered status webhooks after each accepted Cloud send.
    statuses: bool = True
    #: Fire them before answering the send (as Meta may: the webhook can beat
    #: the API's answer).
    statuses_first: bool = False


@attrs.define
class Received:
    """A send request the simulator got (accepted or not)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int
    #: When it came (Trio's clock).
    at: float = 0.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Simulator:
    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        #: Every send request, in order; ``accepted`` only those answered 200.
        self.requests: list[Received] = []
        self.port = 0
        self.state = "close"
        self.qr_codes: list[str] = []
        self._failures: list[int] = []
        #: Media a customer sent: media id -> (MIME type, bytes).
        self.media: dict[str, tuple[str, bytes]] = {}
        #: Seconds a 429 answer asks to wait (``Retry-After``), if set.
        self.retry_after: float | None = None
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._serving: trio.CancelScope | None = None
        self._qr_scope: trio.CancelScope | None = None
        # webhooks to the switchboard: a busy test machine can take longer than
        # httpx's default 5 s to answer one
        self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT)
        self._arrived = trio.Event()
        self.app = self._make_app()

    # -- running ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]

    def attach(self, nursery: trio.Nursery) -> None:
        """Run the simulator's own tasks (status webhooks, QR rotation) in
        ``nursery`` without listening: for a caller that serves :attr:`app`
        in-process (an ASGI transport)."""
        self._nursery = nursery

    async def start(self, nursery: trio.Nursery, port: int = 0) -> None:
        """Listen on 127.0.0.1 (``port`` 0: an ephemeral one), in ``nursery``."""
        self._nursery = nursery
        self.port = port
        await self.up()

    async def down(self) -> None:
        """Close the port: sends fail with a network error until :meth:`up`."""
        if self._serving is not None:
            self._serving.cancel()
            self._serving = None
            await trio.lowlevel.checkpoint()

    async def up(self) -> None:
        """Listen (again, on the same port once it had one)."""
        assert self._nursery is not None, "start() first"
        self._serving = await self._nursery.start(self._serve)

    async def _serve(self, *, task_status: trio.TaskStatus[trio.CancelScope]
                     = trio.TASK_STATUS_IGNORED) -> None:
        config = HyperConfig()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.1
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                binds = await inner.start(serve, self.app, config)
                self.port = int(binds[0].rsplit(":", 1)[1])
                task_status.started(scope)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- what a test (or a person) does --------------------------------------------------

    async def wait_requests(self, count: int, *, accepted: bool = False) -> list[Received]:
        """The send requests (or the accepted ones) once there are ``count``."""
        while len(self.accepted if accepted else self.requests) < count:
            await self._arrived.wait()
            self._arrived = trio.Event()
        return self.accepted if accepted else self.requests

    def fail_next(self, status: int, count: int = 1) -> None:
        """The next ``count`` sends answer ``status`` (429, 500...)."""
        self._failures.extend([status] * count)

    async def customer_writes(self, wa_id: str, text: str, *, name: str = "Ana",
                              kind: str = "text", extra: dict[str, Any] | None = None,
                              message_id: str | None = None) -> httpx.Response:
        """A customer's message, as the Cloud API's signed webhook."""
        message: dict[str, Any] = {"from": wa_id, "id": message_id or self._wamid(),
                                   "timestamp": str(int(time.time())), "type": kind}
        message[kind] = extra if extra is not None else {"body": text}
        return await self.cloud_webhook({
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [message]})

    async def cloud_webhook(self, value: dict[str, Any], *,
                            secret: str | None = None) -> httpx.Response:
        """POST a Cloud API webhook whose ``value`` is given, signed with the
        app secret (or ``secret``)."""
        c = self.config
        body = cloud_body(c.phone_number_id, value)
        assert c.cloud_webhook, "no cloud_webhook configured"
        return await self._client.post(c.cloud_webhook, content=body, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(secret or c.app_secret, body)})

    async def bridge_event(self, event: str, data: Any) -> httpx.Response:
        c = self.config
        assert c.bridge_webhook, "no bridge_webhook configured"
        return await self._client.post(c.bridge_webhook, json=bridge_body(
            c.instance, c.bridge_api_key, event, data, self.base_url))

    async def scan(self) -> None:
        """The phone scans the QR code: the bridge is linked."""
        if self._qr_scope is not None:
            self._qr_scope.cancel()
        self.state = "open"
        await self.bridge_event("connection.update", {"instance": self.config.instance,
                                                      "state": "open", "statusReason": 200})

    # -- the HTTP side -------------------------------------------------------------------

    def _wamid(self) -> str:
        return f"wamid.SIM{next(self._ids):08d}{secrets.token_hex(4)}"

    def _new_qr(self) -> str:
        code = f"2@{secrets.token_urlsafe(24)},{secrets.token_urlsafe(8)},{len(self.qr_codes)}"
        self.qr_codes.append(code)
        return code

    async def _rotate(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                      ) -> None:
        with trio.CancelScope() as scope:
            self._qr_scope = scope
            task_status.started()
            while self.state == "connecting":
                await trio.sleep(self.config.qr_interval)
                await self.bridge_event("qrcode.updated", {"qrcode": {
                    "instance": self.config.instance, "code": self._new_qr(),
                    "pairingCode": None}})

    def _make_app(self) -> QuartTrio:
        app = QuartTrio("whatsapp_simulator")
        sim = self

        def json_response(status: int, body: Any) -> Response:
            return Response(json.dumps(body), status=status, content_type="application/json")

        async def record(status: int) -> None:
            body = await request.get_json(force=True, silent=True)
            sim.requests.append(Received(request.method, request.path, dict(request.headers),
                                         body, status, trio.current_time()))
            sim._arrived.set()

        @app.post("/<version>/<number>/messages")
        async def graph_send(version: str, number: str) -> Response:
            c = sim.config
            if request.headers.get("Authorization") != f"Bearer {c.access_token}" \
                    or number != c.phone_number_id:
                await record(401)
                return json_response(401, {"error": {
                    "message": "Invalid OAuth access token.", "type": "OAuthException",
                    "code": 190, "fbtrace_id": "SIM"}})
            if sim._failures:
                status = sim._failures.pop(0)
                await record(status)
                code = 130429 if status == 429 else 131000
                response = json_response(status, {"error": {
                    "message": "Rate limit hit" if status == 429 else "Something went wrong",
                    "type": "OAuthException", "code": code, "fbtrace_id": "SIM"}})
                if status == 429 and sim.retry_after is not None:
                    response.headers["Retry-After"] = f"{sim.retry_after:g}"
                return response
            body = await request.get_json(force=True, silent=True) or {}
            if body.get("messaging_product") != "whatsapp" or not body.get("to"):
                await record(400)
                return json_response(400, {"error": {
                    "message": "(#100) Invalid parameter", "type": "OAuthException",
                    "code": 100, "error_data": {"messaging_product": "whatsapp",
                                                "details": "to and messaging_product"},
                    "fbtrace_id": "SIM"}})
            await record(200)
            wamid = sim._wamid()
            if c.statuses and c.cloud_webhook and c.statuses_first:
                await sim._statuses(wamid, str(body["to"]))
            elif c.statuses and c.cloud_webhook and sim._nursery is not None:
                sim._nursery.start_soon(sim._statuses, wamid, str(body["to"]))
            return json_response(200, {"messaging_product": "whatsapp",
                                       "contacts": [{"input": body["to"],
                                                     "wa_id": body["to"]}],
                                       "messages": [{"id": wamid}]})

        @app.get("/<version>/<node>")
        async def graph_node(version: str, node: str) -> Response:
            """The number (its details), or a media id (where to download it)."""
            c = sim.config
            if request.headers.get("Authorization") != f"Bearer {c.access_token}":
                return json_response(401, {"error": {
                    "message": "Invalid OAuth access token.", "type": "OAuthException",
                    "code": 190, "fbtrace_id": "SIM"}})
            if node == c.phone_number_id:
                return json_response(200, {"display_phone_number": "15550000000",
                                           "id": node})
            if node in sim.media:
                mime, data = sim.media[node]
                return json_response(200, {
                    "messaging_product": "whatsapp", "url": f"{sim.base_url}/sim/media/{node}",
                    "mime_type": mime, "sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": len(data), "id": node})
            return json_response(400, {"error": {
                "message": f"Unsupported get request. Object with ID '{node}' does not exist",
                "type": "GraphMethodException", "code": 100, "error_subcode": 33,
                "fbtrace_id": "SIM"}})

        @app.get("/sim/media/<node>")
        async def media_download(node: str) -> Response:
            if request.headers.get("Authorization") != f"Bearer {sim.config.access_token}":
                return Response(b"", status=401)
            if node not in sim.media:
                return Response(b"", status=404)
            mime, data = sim.media[node]
            return Response(data, status=200, content_type=mime)

        @app.get("/instance/connect/<instance>")
        async def connect(instance: str) -> Response:
            if request.headers.get("apikey") != sim.config.bridge_api_key:
                return json_response(401, {"status": 401, "error": "Unauthorized"})
            if sim.state == "open":
                return json_response(200, {"instance": {"instanceName": instance,
                                                        "state": "open"}})
            sim.state = "connecting"
            code = sim._new_qr()
            if sim._nursery is not None and sim.config.bridge_webhook:
                await sim._nursery.start(sim._rotate)
            return json_response(200, {"pairingCode": None, "code": code, "count": 1})

        @app.post("/instance/restart/<instance>")
        async def restart(instance: str) -> Response:
            if request.headers.get("apikey") != sim.config.bridge_api_key:
                return json_response(401, {"status": 401, "error": "Unauthorized"})
            sim.state = "close" if sim.state != "open" else "open"
            return json_response(200, {"instance": {"instanceName": instance,
                                                    "state": sim.state}})

        @app.delete("/instance/logout/<instance>")
        async def logout(instance: str) -> Response:
            if request.headers.get("apikey") != sim.config.bridge_api_key:
                return json_response(401, {"status": 401, "error": "Unauthorized"})
            if sim._qr_scope is not None:
                sim._qr_scope.cancel()
            sim.state = "close"
            return json_response(200, {"status": "SUCCESS", "error": False,
                                       "response": {"message": "Instance logged out"}})

        @app.post("/message/<kind>/<instance>")
        async def bridge_send(kind: str, instance: str) -> Response:
            if request.headers.get("apikey") != sim.config.bridge_api_key:
                await record(401)
                return json_response(401, {"status": 401, "error": "Unauthorized"})
            if sim._failures:
                status = sim._failures.pop(0)
                await record(status)
                return json_response(status, {"status": status, "error": "Error",
                                              "response": {"message": ["simulated"]}})
            body = await request.get_json(force=True, silent=True) or {}
            await record(200)
            return json_response(201, {"key": {"remoteJid": f"{body.get('number')}"
                                                            "@s.whatsapp.net",
                                               "fromMe": True, "id": sim._wamid()},
                                       "status": "PENDING"})

        @app.post("/sim/inbound")
        async def inbound() -> Response:
            body = await request.get_json(force=True, silent=True) or {}
            answer = await sim.customer_writes(str(body.get("from", "5511987654321")),
                                               str(body.get("text", "Hello!")),
                                               name=str(body.get("name", "Ana")))
            return json_response(200, {"webhookStatus": answer.status_code})

        @app.post("/sim/scan")
        async def scan() -> Response:
            await sim.scan()
            return json_response(200, {"state": sim.state})

        @app.post("/sim/fail")
        async def fail() -> Response:
            body = await request.get_json(force=True, silent=True) or {}
            sim.fail_next(int(body.get("status", 500)), int(body.get("count", 1)))
            return json_response(200, {"failing": len(sim._failures)})

        @app.get("/sim/requests")
        async def requests() -> Response:
            return json_response(200, [attrs.asdict(r) for r in sim.requests])

        return app

    async def _statuses(self, wamid: str, to: str) -> None:
        for status in ("sent", "delivered"):
            await trio.sleep(0.01)
            try:
                await self.cloud_webhook({"statuses": [{
                    "id": wamid, "status": status, "timestamp": str(int(time.time())),
                    "recipient_id": to}]})
            except httpx.HTTPError:
                return  # (Meta would retry; the simulator lets it go)


def cloud_body(phone_number_id: str, value: dict[str, Any]) -> bytes:
    """A Cloud API webhook body for one change of ``value`` (messages, statuses...)."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": "WABA-SIM", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000",
                         "phone_number_id": phone_number_id}, **value}}]}]}).encode()


def bridge_body(instance: str, api_key: str, event: str, data: Any,
                server_url: str = "") -> dict[str, Any]:
    """A bridge webhook body (Evolution API's envelope)."""
    return {"event": event, "instance": instance, "data": data,
            "date_time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "server_url": server_url, "apikey": api_key}
