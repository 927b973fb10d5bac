"""Helpers of the whatsapp tests: the provider simulator, sessions made over
the HTTP API, signed webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from backends import InProcess
from switchboard.testing import Harness
from switchboard.whatsapp_simulator import Simulator, SimulatorConfig
from switchboard.whatsapp_simulator.server import bridge_body, cloud_body, sign

TENANT = "acme"
CUSTOMER = "5511987654321"


@pytest.fixture
async def simulator(nursery: trio.Nursery) -> AsyncIterator[Simulator]:
    """The simulator on an ephemeral 127.0.0.1 port."""
    sim = Simulator(SimulatorConfig(qr_interval=0.3))
    await sim.start(nursery)
    yield sim
    await sim.down()
    await sim.aclose()


def cloud_settings(sim: Simulator) -> dict[str, Any]:
    c = sim.config
    return {"phoneNumberId": c.phone_number_id, "accessToken": c.access_token,
            "appSecret": c.app_secret, "verifyToken": "verify-me"}


def bridge_settings(sim: Simulator) -> dict[str, Any]:
    c = sim.config
    return {"url": sim.base_url, "apiKey": c.bridge_api_key, "instance": c.instance}


async def create_session(harness: Harness, sim: Simulator, session: str = "main",
                         provider: str = "cloud", tenant: str = TENANT) -> dict[str, Any]:
    settings = cloud_settings(sim) if provider == "cloud" else bridge_settings(sim)
    response = await harness.http().post(
        "/api/v1/whatsapp/sessions", headers=harness.api_headers(),
        json={"tenant": tenant, "id": session, "provider": provider, provider: settings})
    assert response.status_code == 201, await response.get_json()
    body: dict[str, Any] = await response.get_json()
    return body


def webhook_url(harness: Harness, session: str = "main", tenant: str = TENANT) -> str:
    return harness.http_url(f"/api/v1/whatsapp/webhooks/{tenant}/{session}")


def text_message(text: str, message_id: str, wa_id: str = CUSTOMER,
                 name: str = "Ana") -> dict[str, Any]:
    return {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": message_id, "timestamp": "1700000000",
                          "type": "text", "text": {"body": text}}]}


async def post_cloud(harness: Harness, sim: Simulator, value: dict[str, Any], *,
                     session: str = "main", tenant: str = TENANT,
                     secret: str | None = None) -> Any:
    """A signed Cloud webhook through the in-process HTTP client (mock clock)."""
    body = cloud_body(sim.config.phone_number_id, value)
    return await harness.http().post(
        f"/api/v1/whatsapp/webhooks/{tenant}/{session}", data=body,
        headers={"Content-Type": "application/json",
                 "X-Hub-Signature-256": sign(secret or sim.config.app_secret, body)})


async def post_bridge(harness: Harness, sim: Simulator, event: str, data: Any, *,
                      session: str = "phone", key: str | None = None) -> Any:
    return await harness.http().post(
        f"/api/v1/whatsapp/webhooks/{TENANT}/{session}",
        json=bridge_body(sim.config.instance, key or sim.config.bridge_api_key, event, data))


def in_process(harness: Harness, sim: Simulator, nursery: trio.Nursery) -> None:
    """The plugin reaches the simulator's app in-process (mock clock tests)."""
    sim.attach(nursery)
    plugin = harness.server.plugins.pm.get_plugin("whatsapp")
    plugin.engine.client = httpx.AsyncClient(transport=InProcess(sim.app))
