"""The HTTP API over the in-process harness: health, metrics, stats, emit, presence."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from switchboard.core.config import Config
from switchboard.testing import Harness, TestClient, make_config

ACME_KEY = "acme-only-key-0123456789"
GRACE = 10.0


@pytest.fixture
def switchboard_config() -> Config:
    """The test config plus an API key limited to tenant ``acme``."""
    return make_config({"api_keys": [
        {"key": "test-api-key-0123456789", "tenant": "*", "name": "tests"},
        {"key": ACME_KEY, "tenant": "acme", "name": "acme"},
    ], "plugins": {"presence": {"grace_period": GRACE}}})


async def get_json(switchboard: Harness, path: str, *, key: str | None = None,
                   auth: bool = True) -> tuple[int, Any]:
    headers = (switchboard.api_headers(key) if key else switchboard.api_headers()) \
        if auth else {}
    response = await switchboard.http().get(path, headers=headers)
    return response.status_code, await response.get_json()


async def emit(switchboard: Harness, body: Any = None, *, data: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    http = switchboard.http()
    headers = switchboard.api_headers() if headers is None else headers
    if data is not None:
        response = await http.post("/api/v1/emit", data=data, headers=headers)
    else:
        response = await http.post("/api/v1/emit", json=body, headers=headers)
    return response.status_code, await response.get_json()


# -- health, readiness, metrics ---------------------------------------------------


async def test_health_answers_ok(switchboard: Harness) -> None:
    assert await get_json(switchboard, "/health", auth=False) == (200, {"status": "ok"})


async def test_ready_answers_ready_while_running(switchboard: Harness) -> None:
    assert await get_json(switchboard, "/ready", auth=False) == (200, {"status": "ready"})


async def test_ready_answers_503_once_shutting_down(switchboard: Harness) -> None:
    client = await switchboard.connect()  # keeps the drain going while we ask
    switchboard.server.shutdown()
    status, body = await get_json(switchboard, "/ready", auth=False)
    assert (status, body["code"]) == (503, "shutting_down")
    await client.expect_closed()


async def test_metrics_are_prometheus_text_with_the_connection_gauge(
        switchboard: Harness) -> None:
    await switchboard.connect()
    await switchboard.connect(user="u2")
    response = await switchboard.http().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = (await response.get_data()).decode()
    assert "# TYPE switchboard_connections gauge" in text
    assert 'switchboard_connections{protocol="ws"} 2.0' in text


# -- stats -------------------------------------------------------------------------


async def test_stats_count_connections_rooms_and_users_per_tenant(
        switchboard: Harness) -> None:
    await switchboard.connect(user="alice", tenant="acme", role="customer")
    await switchboard.connect(user="alice", tenant="acme", role="customer")
    agent = await switchboard.connect(user="olga", tenant="acme", role="agent")
    await agent.request("room:join", {"room": "lead:9"})
    await switchboard.connect(user="bob", tenant="globex", role="customer")
    status, stats = await get_json(switchboard, "/api/v1/stats")
    assert status == 200
    assert (stats["connections"], stats["users_online"]) == (4, 3)
    # acme: user:alice, user:olga, tenant:acme, tenant:acme:agents, lead:9
    assert stats["tenants"]["acme"] == {"connections": 3, "rooms": 5, "users_online": 2}
    # globex: user:bob, tenant:globex
    assert stats["tenants"]["globex"] == {"connections": 1, "rooms": 2, "users_online": 1}
    assert stats["rooms"] == 7
    assert stats["protocols"] == {"ws": 4}


async def test_stats_forget_closed_connections(switchboard: Harness) -> None:
    client = await switchboard.connect(user="alice", tenant="acme")
    await client.close()
    await client.settle()
    _, stats = await get_json(switchboard, "/api/v1/stats")
    assert (stats["connections"], stats["rooms"], stats["tenants"]) == (0, 0, {})


async def test_stats_without_an_api_key_is_401_json(switchboard: Harness) -> None:
    status, body = await get_json(switchboard, "/api/v1/stats", auth=False)
    assert status == 401
    assert body["code"] == "unauthorized"
    assert body["message"]


async def test_stats_with_a_wrong_api_key_is_401(switchboard: Harness) -> None:
    status, body = await get_json(switchboard, "/api/v1/stats",
                                  key="not-a-configured-key-000")
    assert (status, body["code"]) == (401, "unauthorized")


async def test_stats_accept_the_x_api_key_header(switchboard: Harness) -> None:
    response = await switchboard.http().get("/api/v1/stats",
                                            headers={"X-API-Key": ACME_KEY})
    assert response.status_code == 200


async def test_tenant_scoped_key_only_sees_its_tenant(switchboard: Harness) -> None:
    await switchboard.connect(user="alice", tenant="acme", role="customer")
    await switchboard.connect(user="bob", tenant="globex", role="customer")
    status, stats = await get_json(switchboard, "/api/v1/stats", key=ACME_KEY)
    assert status == 200
    acme = {"acme": {"connections": 1, "rooms": 2, "users_online": 1}}
    assert stats == {"tenants": acme, "nodes": {switchboard.app.node_id: {"tenants": acme}}}


async def test_tenant_scoped_key_sees_zeros_for_an_idle_tenant(switchboard: Harness) -> None:
    await switchboard.connect(user="bob", tenant="globex", role="customer")
    _, stats = await get_json(switchboard, "/api/v1/stats", key=ACME_KEY)
    idle = {"acme": {"connections": 0, "rooms": 0, "users_online": 0}}
    assert stats == {"tenants": idle, "nodes": {switchboard.app.node_id: {"tenants": idle}}}


# -- errors ------------------------------------------------------------------------


async def test_unknown_route_is_404_json(switchboard: Harness) -> None:
    status, body = await get_json(switchboard, "/api/v1/nothing-here", auth=False)
    assert status == 404
    assert body["code"] == "not_found"
    assert isinstance(body["message"], str) and body["message"]


async def test_wrong_method_is_405_json(switchboard: Harness) -> None:
    response = await switchboard.http().get("/api/v1/emit", headers=switchboard.api_headers())
    assert response.status_code == 405
    assert (await response.get_json())["code"] == "method_not_allowed"


# -- emit -----------------------------------------------------------------------------


async def test_emit_with_invalid_json_is_400_invalid_json(switchboard: Harness) -> None:
    status, body = await emit(switchboard, data=b"{not json")
    assert (status, body["code"]) == (400, "invalid_json")


async def test_a_body_nested_too_deep_is_400_invalid_json_on_any_route(
        switchboard: Harness) -> None:
    status, body = await emit(switchboard, data=b"[" * 4_000)
    assert (status, body["code"]) == (400, "invalid_json")
    # parses, but nested past the limit (and deep enough to break encoding it again)
    deep = b"[" * 940 + b"]" * 940
    status, body = await emit(switchboard, data=b'{"event":"x","tenant":"t1","user":"u1",'
                                                 b'"data":' + deep + b"}")
    assert (status, body["code"]) == (400, "invalid_json")
    status, body = await emit(switchboard, {"event": "x", "tenant": "t1", "user": "u1",
                                            "data": [[[["four levels are fine"]]]]})
    assert status == 202
    response = await switchboard.http().post(
        "/api/v1/notifications", data=b'{"tenant":' + b"[" * 4_000,
        headers=switchboard.api_headers())
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "invalid_json"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_nan_and_infinity_are_400_invalid_json_and_never_published(
        switchboard: Harness, constant: bytes) -> None:
    member = await switchboard.connect(user="u1", tenant="t1")
    status, body = await emit(switchboard, data=b'{"event":"x","tenant":"t1","user":"u1",'
                                                 b'"data":[' + constant + b"]}")
    assert (status, body["code"]) == (400, "invalid_json")
    response = await switchboard.http().post(
        "/api/v1/notifications", headers=switchboard.api_headers(),
        data=b'{"tenant":"t1","user":"u1","title":"t","message":"m","data":{"x":'
             + constant + b"}}")
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "invalid_json"
    await member.settle(1)
    assert member.received("x") == []


async def test_an_emit_of_more_events_than_allowed_is_refused_whole(
        switchboard: Harness) -> None:
    member = await switchboard.connect(user="u1", tenant="t1")
    limit = switchboard.config.http.max_emit_items
    batch = [{"event": "x", "tenant": "t1", "user": "u1", "data": n} for n in range(limit + 1)]
    status, body = await emit(switchboard, batch)
    assert (status, body["code"], body["max"]) == (400, "too_many_events", limit)
    await member.settle(1)
    assert member.received("x") == []


async def test_an_emit_of_the_largest_batch_reaches_members_without_cutting_them(
        switchboard: Harness) -> None:
    # 1.1 MB for each member, more than its outbox holds: the publisher must let
    # the members' writers run between slices of the batch
    members = [await switchboard.connect(user=f"u{i}", tenant="t1") for i in range(20)]
    limit = switchboard.config.http.max_emit_items
    batch = [{"event": "tick", "tenant": "t1", "data": {"n": n, "pad": "x" * 1100}}
             for n in range(limit)]
    status, body = await emit(switchboard, batch)
    assert (status, body) == (202, {"published": limit})
    for member in members:
        ticks = [await member.expect("tick") for _ in range(limit)]
        assert [t["n"] for t in ticks] == list(range(limit))
        assert member.close_code is None


async def test_emit_without_an_api_key_is_401(switchboard: Harness) -> None:
    status, body = await emit(switchboard, {"event": "x", "tenant": "acme"}, headers={})
    assert (status, body["code"]) == (401, "unauthorized")


async def test_emit_with_a_missing_field_names_it(switchboard: Harness) -> None:
    status, body = await emit(switchboard, {"event": "order:paid"})
    assert (status, body["code"], body["field"]) == (400, "invalid_payload", "tenant")


async def test_emit_reaches_the_users_devices(switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme", role="customer")
    bob = await switchboard.connect(user="bob", tenant="acme", role="customer")
    status, body = await emit(switchboard, {"event": "order:paid", "tenant": "acme",
                                            "user": "alice", "data": {"order": 7}})
    assert (status, body) == (202, {"published": 1})
    assert await alice.expect("order:paid") == {"order": 7}
    await bob.settle()
    assert bob.received("order:paid") == []


async def test_emit_to_a_room_and_to_a_tenant_in_one_request(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="olga", tenant="acme", role="agent")
    await agent.request("room:join", {"room": "lead:9"})
    customer = await switchboard.connect(user="alice", tenant="acme", role="customer")
    status, body = await emit(switchboard, [
        {"event": "lead:updated", "tenant": "acme", "room": "lead:9", "data": 1},
        {"event": "announcement", "tenant": "acme", "data": "hello"},
    ])
    assert (status, body) == (202, {"published": 2})
    assert await agent.expect("lead:updated") == 1
    assert await agent.expect("announcement") == "hello"
    assert await customer.expect("announcement") == "hello"
    assert customer.received("lead:updated") == []


async def test_tenant_scoped_key_cannot_emit_to_another_tenant(switchboard: Harness) -> None:
    bob = await switchboard.connect(user="bob", tenant="globex")
    status, body = await emit(switchboard, {"event": "x", "tenant": "globex"},
                              headers=switchboard.api_headers(ACME_KEY))
    assert (status, body["code"]) == (403, "forbidden")
    await bob.settle()
    assert bob.received("x") == []


# -- presence ------------------------------------------------------------------------------


async def test_presence_lists_the_users_online_in_a_tenant(switchboard: Harness) -> None:
    await switchboard.connect(user="alice", tenant="acme", role="customer")
    await switchboard.connect(user="alice", tenant="acme", role="customer")
    await switchboard.connect(user="bob", tenant="globex", role="customer")
    status, body = await get_json(switchboard, "/api/v1/presence/acme")
    assert status == 200
    assert body == {"users": [
        {"userId": "alice", "status": "online", "devices": 2, "lastSeen": None}]}


async def test_presence_of_a_connected_user(switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme", role="customer")
    await alice.request("presence:update", {"status": "busy"})
    status, body = await get_json(switchboard, "/api/v1/presence/acme/alice")
    assert status == 200
    assert (body["userId"], body["status"], body["devices"]) == ("alice", "busy", 1)


async def disconnect_for_good(client: TestClient) -> tuple[float, float]:
    """Close ``client`` and let the grace period pass; return wall-clock bounds of
    the moment it left."""
    before = time.time()
    await client.close()
    after = time.time()
    await trio.sleep(GRACE + 1)
    return before, after


async def test_presence_of_a_user_gone_past_the_grace_period_comes_from_the_database(
        switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme", role="customer")
    before, after = await disconnect_for_good(alice)
    status, body = await get_json(switchboard, "/api/v1/presence/acme/alice")
    assert status == 200
    assert (body["userId"], body["status"], body["devices"]) == ("alice", "offline", 0)
    assert before <= body["lastSeen"] <= after
    row = await switchboard.app.store.fetch_one(
        sa.text("SELECT last_seen FROM presence_last_seen "
                "WHERE tenant_id = 'acme' AND user_id = 'alice'"))
    assert row is not None and row["last_seen"] == body["lastSeen"]


async def test_user_gone_past_the_grace_period_is_not_listed_online(
        switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme", role="customer")
    await disconnect_for_good(alice)
    assert await get_json(switchboard, "/api/v1/presence/acme") == (200, {"users": []})


async def test_presence_of_an_unknown_user_is_404(switchboard: Harness) -> None:
    status, body = await get_json(switchboard, "/api/v1/presence/acme/nobody")
    assert (status, body["code"]) == (404, "not_found")


async def test_presence_is_per_tenant(switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme", role="customer")
    await disconnect_for_good(alice)
    status, _ = await get_json(switchboard, "/api/v1/presence/globex/alice")
    assert status == 404


async def test_presence_needs_an_api_key(switchboard: Harness) -> None:
    status, body = await get_json(switchboard, "/api/v1/presence/acme", auth=False)
    assert (status, body["code"]) == (401, "unauthorized")


async def test_tenant_scoped_key_cannot_read_another_tenants_presence(
        switchboard: Harness) -> None:
    await switchboard.connect(user="bob", tenant="globex", role="customer")
    for path in ("/api/v1/presence/globex", "/api/v1/presence/globex/bob"):
        status, body = await get_json(switchboard, path, key=ACME_KEY)
        assert (status, body["code"]) == (403, "forbidden"), path
