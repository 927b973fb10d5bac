"""A publish to every tenant (system-wide announcements, sysZap's
broadcastToAll): only an API key for every tenant may, and it reaches every
tenant's sessions."""

from __future__ import annotations

import httpx
import pytest
import trio
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, Harness, make_config

from tests.redis_nodes import (
    TIMEOUT,
    cluster_config,
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
)

ACME_KEY = "acme-only-key-0123456"


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "all"},
                                     {"key": ACME_KEY, "tenant": "acme", "name": "acme"}]})


async def test_a_key_for_every_tenant_announces_to_every_tenant(switchboard: Harness) -> None:
    acme = await switchboard.connect("ann", "acme", role="agent")
    globex = await switchboard.connect("gus", "globex", role="customer")
    response = await switchboard.http().post(
        "/api/v1/emit", headers=switchboard.api_headers(),
        json={"event": "announcement", "tenant": "*", "data": "maintenance at 22:00"})
    assert (response.status_code, await response.get_json()) == (202, {"published": 1})
    assert await acme.expect("announcement") == "maintenance at 22:00"
    assert await globex.expect("announcement") == "maintenance at 22:00"


async def test_a_tenant_key_may_not_announce_to_every_tenant(switchboard: Harness) -> None:
    globex = await switchboard.connect("gus", "globex")
    response = await switchboard.http().post(
        "/api/v1/emit", headers=switchboard.api_headers(ACME_KEY),
        json={"event": "announcement", "tenant": "*", "data": "mine"})
    assert response.status_code == 403
    await globex.settle(1)
    assert globex.received("announcement") == []


async def test_every_tenant_takes_no_room_or_user(switchboard: Harness) -> None:
    for extra, field in (({"room": "lead:1"}, "room"), ({"user": "ann"}, "user")):
        response = await switchboard.http().post(
            "/api/v1/emit", headers=switchboard.api_headers(),
            json={"event": "x", "tenant": "*", **extra})
        body = await response.get_json()
        assert (response.status_code, body["code"], body["field"]) == (
            400, "invalid_payload", field)


async def test_the_publish_fast_path_announces_to_every_tenant_too(
        switchboard_live: Harness) -> None:
    acme = await switchboard_live.connect("ann", "acme")
    globex = await switchboard_live.connect("gus", "globex")
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(switchboard_live.http_url("/api/v1/emit"),
                                   headers=switchboard_live.api_headers(),
                                   json={"event": "announcement", "tenant": "*", "data": 1})
    assert response.status_code == 202
    assert await acme.expect("announcement") == 1
    assert await globex.expect("announcement") == 1


async def test_every_tenant_on_every_node_of_a_redis_cluster(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix), nursery, 2)
        clients = [await nodes[0].connect("ann", "acme"), await nodes[1].connect("gus", "globex"),
                   await nodes[1].connect("bob", "acme")]
        response = await nodes[0].http().post(
            "/api/v1/emit", headers=nodes[0].api_headers(),
            json={"event": "announcement", "tenant": "*", "data": "maintenance"})
        assert response.status_code == 202
        for client in clients:
            assert await client.expect("announcement", timeout=TIMEOUT) == "maintenance"
        await clients[0].settle(0.5)
        assert not any(client.received("announcement") for client in clients)  # once each
        for node in nodes:
            await node.stop()
