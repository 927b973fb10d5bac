"""Seed 003 unchanged, end to end: the sysZap frontend opens
ws://HOST/ws?companyId=..&userId=.. with no token (its backend vouches for it
through the connect proxy, as shipped in config/seeds/syszap.toml) and
watches its WhatsApp session go from QR code to connected, and its first
customer arrive, all emitted by the whatsapp plugin from the bridge's
webhooks (the provider simulator, over real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from backends import Backend, backend_fixture  # noqa: F401  (the backend fixture)
from switchboard.core.config import Config, load_config, merge, structure_config
from switchboard.testing import TEST_API_KEY, TEST_SECRET, Harness
from switchboard.whatsapp_simulator import Simulator
from trio_websocket import WebSocketConnection, open_websocket_url
from whatsapps import CUSTOMER, bridge_settings, simulator  # noqa: F401  (the simulator)

SEED = Path(__file__).parent.parent / "config" / "seeds" / "syszap.toml"
COMPANY = "company-1"


@pytest.fixture
def switchboard_config(backend: Backend) -> Config:
    environ = {"SWITCHBOARD_PLUGINS__PROXY__CONNECT_URL":
               json.dumps(backend.url("/switchboard/connect"))}
    shipped = attrs.asdict(load_config(SEED, environ))
    return structure_config(merge(shipped, {
        "auth": {"secret": TEST_SECRET},
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"}],
        "store": {"url": "sqlite://"}, "server": {"port": 0},
        # the simulator's bridge is on this machine
        "plugins": {"whatsapp": {"bridge_hosts": ["127.0.0.1"]}}}))


async def next_of(ws: WebSocketConnection, kind: str, **data: Any) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            frame = json.loads(await ws.get_message())
            if frame["type"] == kind and all(frame["data"].get(k) == v
                                             for k, v in data.items()):
                return dict(frame["data"])


async def test_the_syszap_frontend_sees_its_session_and_customers_from_the_plugin(
        switchboard_live: Harness, backend: Backend,
        simulator: Simulator) -> None:  # noqa: F811
    backend.on("/switchboard/connect", lambda body: {"result": {
        "user": body["query"]["userId"], "tenant": body["query"]["companyId"],
        "role": "agent"}})
    simulator.config.bridge_webhook = switchboard_live.http_url(
        f"/api/v1/whatsapp/webhooks/{COMPANY}/s1")
    http = switchboard_live.http()
    host, port = switchboard_live.server.addresses[0]
    async with open_websocket_url(f"ws://{host}:{port}/ws?companyId={COMPANY}&userId=user-7",
                                  extra_headers=[("Cookie", "sz_session=x")]) as ws:
        # the sysZap backend's SessionController, now through Switchboard's API
        created = await http.post("/api/v1/whatsapp/sessions", headers={
            "Authorization": f"Bearer {TEST_API_KEY}"}, json={
            "tenant": COMPANY, "id": "s1", "provider": "bridge",
            "bridge": bridge_settings(simulator)})
        assert created.status_code == 201
        await http.post("/api/v1/whatsapp/sessions/s1/start", headers={
            "Authorization": f"Bearer {TEST_API_KEY}"}, json={"tenant": COMPANY})
        assert (await next_of(ws, "session_status", status="connecting"))["sessionId"] == "s1"
        first = await next_of(ws, "qr_code")
        second = await next_of(ws, "qr_code")  # rotated by the bridge
        assert first["qrCode"] != second["qrCode"]
        assert second["qrCode"].startswith("data:image/png;base64,")
        await simulator.scan()
        await next_of(ws, "session_status", status="connected")
        await simulator.bridge_event("messages.upsert", {
            "key": {"remoteJid": f"{CUSTOMER}@s.whatsapp.net", "fromMe": False,
                    "id": "3EB0SEED"}, "pushName": "Ana",
            "message": {"conversation": "Quero fazer um pedido"}})
        client = await next_of(ws, "new_client")
        assert (client["Name"], client["WhatsApp_Number"]) == ("Ana", CUSTOMER)
        message = await next_of(ws, "new_message")
        assert (message["Body"], message["Client"]["Name"]) == ("Quero fazer um pedido", "Ana")
