"""Rooms: who may join what, room names, and what reaches whom (tenant isolation,
publications through ``POST /api/v1/emit``)."""

from __future__ import annotations

from typing import Any

import pytest
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, ErrorReply, Harness, TestClient, make_config

TENANT_A_KEY = "key-of-tenant-a-0123456789"
MAX_ROOMS = 8


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({
        "rooms": {"public_patterns": ["lobby:*"], "max_rooms_per_connection": MAX_ROOMS},
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "all"},
                     {"key": TENANT_A_KEY, "tenant": "ta", "name": "tenant a"}],
    })


async def join_refused(client: TestClient, room: Any) -> ErrorReply:
    with pytest.raises(ErrorReply) as refused:
        await client.request("room:join", {"room": room})
    return refused.value


async def emit(switchboard: Harness, body: Any, key: str = TEST_API_KEY) -> tuple[int, Any]:
    response = await switchboard.http().post(
        "/api/v1/emit", json=body, headers=switchboard.api_headers(key))
    return response.status_code, await response.get_json()


async def nothing_more(client: TestClient, event: str) -> None:
    """Let the server run a while, then check ``event`` did not arrive."""
    await client.settle(1)
    assert client.received(event) == []


# -- who may join -----------------------------------------------------------------


@pytest.mark.parametrize("room", ["lead:1", "ticket:42", "deal:7", "tenant:t1",
                                  "tenant:t1:agents", "queue:sales.br@x-1"])
async def test_agent_can_join_any_room_of_its_tenant(switchboard: Harness, room: str) -> None:
    agent = await switchboard.connect(user="ann", tenant="t1", role="agent")
    assert await agent.request("room:join", {"room": room}) == {"room": room}


@pytest.mark.parametrize("room", ["lead:1", "ticket:42", "user:someone-else", "tenant:t1:agents",
                                  "tenant:other", "tenant:other:agents"])
async def test_customer_is_refused_rooms_that_are_not_theirs(
        switchboard: Harness, room: str) -> None:
    customer = await switchboard.connect(user="carl", tenant="t1", role="customer")
    refused = await join_refused(customer, room)
    assert refused.code == "forbidden"
    assert refused.data["room"] == room


@pytest.mark.parametrize("room", ["user:carl", "tenant:t1"])
async def test_customer_can_join_its_own_user_and_tenant_rooms(
        switchboard: Harness, room: str) -> None:
    customer = await switchboard.connect(user="carl", tenant="t1", role="customer")
    assert await customer.request("room:join", {"room": room}) == {"room": room}


async def test_agent_cannot_join_another_tenants_room(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="t1", role="admin")
    assert (await join_refused(agent, "tenant:t2")).code == "forbidden"
    assert (await join_refused(agent, "tenant:t2:agents")).code == "forbidden"


async def test_agent_cannot_join_another_users_room(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="t1", role="agent")
    assert (await join_refused(agent, "user:bob")).code == "forbidden"


async def test_refused_join_delivers_nothing_from_that_room(switchboard: Harness) -> None:
    customer = await switchboard.connect(user="carl", tenant="t1", role="customer")
    await join_refused(customer, "lead:1")
    status, _ = await emit(switchboard, {"event": "lead:moved", "tenant": "t1", "room": "lead:1"})
    assert status == 202
    await nothing_more(customer, "lead:moved")


async def test_public_pattern_lets_a_customer_join(switchboard: Harness) -> None:
    customer = await switchboard.connect(user="carl", tenant="t1", role="customer")
    assert await customer.request("room:join", {"room": "lobby:main"}) == {"room": "lobby:main"}
    assert (await join_refused(customer, "lobbyist:main")).code == "forbidden"


@pytest.mark.parametrize("room", ["has space", "", "x" * 257, "lead/1", "lead:1\n", "ünïcode"])
async def test_invalid_room_name_is_answered_invalid_room(switchboard: Harness, room: str) -> None:
    agent = await switchboard.connect(role="agent")
    refused = await join_refused(agent, room)
    assert refused.code == "invalid_room"
    assert refused.field == "room"


async def test_room_name_of_200_characters_is_valid(switchboard: Harness) -> None:
    agent = await switchboard.connect(role="agent")
    room = "x" * 200
    assert await agent.request("room:join", {"room": room}) == {"room": room}


@pytest.mark.parametrize("room", [5, None, ["lead:1"], {"id": 1}, True])
async def test_room_that_is_not_a_string_is_answered_invalid_payload_naming_room(
        switchboard: Harness, room: Any) -> None:
    agent = await switchboard.connect(role="agent")
    refused = await join_refused(agent, room)
    assert refused.code == "invalid_payload"
    assert refused.field == "room"


async def test_leaving_with_an_invalid_room_name_is_answered_invalid_room(
        switchboard: Harness) -> None:
    agent = await switchboard.connect(role="agent")
    with pytest.raises(ErrorReply) as refused:
        await agent.request("room:leave", {"room": "no spaces please"})
    assert refused.value.code == "invalid_room"


async def test_connection_may_be_in_at_most_max_rooms(switchboard: Harness) -> None:
    agent = await switchboard.connect(role="agent")
    # An agent starts in three rooms: user:{id}, tenant:{id} and tenant:{id}:agents.
    for n in range(MAX_ROOMS - 3):
        await agent.request("room:join", {"room": f"lead:{n}"})
    refused = await join_refused(agent, "lead:overflow")
    assert refused.code == "forbidden"
    assert "too many rooms" in refused.data["message"]
    # Joining a room it is already in is not a new room; leaving one frees a place.
    assert await agent.request("room:join", {"room": "lead:0"}) == {"room": "lead:0"}
    await agent.request("room:leave", {"room": "lead:0"})
    assert await agent.request("room:join", {"room": "lead:overflow"}) == {
        "room": "lead:overflow"}


async def test_room_limit_is_per_connection(switchboard: Harness) -> None:
    first = await switchboard.connect(user="ann", role="agent")
    for n in range(MAX_ROOMS - 3):
        await first.request("room:join", {"room": f"lead:{n}"})
    second = await switchboard.connect(user="ann", role="agent")
    assert await second.request("room:join", {"room": "lead:new"}) == {"room": "lead:new"}


# -- what reaches whom ------------------------------------------------------------


async def test_room_publication_reaches_only_members_of_that_tenants_room(
        switchboard: Harness) -> None:
    in_a = await switchboard.connect(user="ann", tenant="ta", role="agent")
    in_b = await switchboard.connect(user="bob", tenant="tb", role="agent")
    outsider_a = await switchboard.connect(user="ola", tenant="ta", role="agent")
    await in_a.request("room:join", {"room": "lead:1"})
    await in_b.request("room:join", {"room": "lead:1"})
    status, body = await emit(switchboard, {"event": "lead:moved", "tenant": "ta",
                                            "room": "lead:1", "data": {"stage": "won"}})
    assert (status, body) == (202, {"published": 1})
    assert await in_a.expect("lead:moved") == {"stage": "won"}
    await nothing_more(in_b, "lead:moved")
    await nothing_more(outsider_a, "lead:moved")


async def test_emit_to_a_user_reaches_every_device_of_that_user_only(
        switchboard: Harness) -> None:
    phone = await switchboard.connect(user="ann", tenant="t1", role="customer")
    laptop = await switchboard.connect(user="ann", tenant="t1", role="customer")
    namesake = await switchboard.connect(user="ann", tenant="t2", role="customer")
    other = await switchboard.connect(user="bob", tenant="t1", role="agent")
    status, _ = await emit(switchboard, {"event": "notification", "tenant": "t1",
                                         "user": "ann", "data": {"title": "Hi"}})
    assert status == 202
    assert await phone.expect("notification") == {"title": "Hi"}
    assert await laptop.expect("notification") == {"title": "Hi"}
    await nothing_more(namesake, "notification")
    await nothing_more(other, "notification")


async def test_emit_to_a_tenant_reaches_everyone_in_it_and_no_one_else(
        switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="t1", role="agent")
    customer = await switchboard.connect(user="carl", tenant="t1", role="customer")
    elsewhere = await switchboard.connect(user="dan", tenant="t2", role="agent")
    status, _ = await emit(switchboard, {"event": "announcement", "tenant": "t1",
                                         "data": "maintenance at 22:00"})
    assert status == 202
    assert await agent.expect("announcement") == "maintenance at 22:00"
    assert await customer.expect("announcement") == "maintenance at 22:00"
    await nothing_more(elsewhere, "announcement")


async def test_emit_of_a_list_publishes_each_item(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="t1", role="agent")
    await agent.request("room:join", {"room": "ticket:7"})
    status, body = await emit(switchboard, [
        {"event": "ticket:updated", "tenant": "t1", "room": "ticket:7", "data": 1},
        {"event": "ticket:updated", "tenant": "t1", "room": "ticket:7", "data": 2},
    ])
    assert (status, body) == (202, {"published": 2})
    assert await agent.expect("ticket:updated") == 1
    assert await agent.expect("ticket:updated") == 2


async def test_api_key_of_one_tenant_cannot_publish_to_another(switchboard: Harness) -> None:
    in_b = await switchboard.connect(user="bob", tenant="tb", role="agent")
    status, body = await emit(switchboard, {"event": "x", "tenant": "tb"}, key=TENANT_A_KEY)
    assert status == 403
    assert body["code"] == "forbidden"
    await nothing_more(in_b, "x")


async def test_api_key_of_one_tenant_can_publish_to_its_own(switchboard: Harness) -> None:
    in_a = await switchboard.connect(user="ann", tenant="ta", role="agent")
    status, _ = await emit(switchboard, {"event": "x", "tenant": "ta", "data": 1},
                           key=TENANT_A_KEY)
    assert status == 202
    assert await in_a.expect("x") == 1


async def test_list_with_one_item_for_another_tenant_publishes_nothing(
        switchboard: Harness) -> None:
    in_a = await switchboard.connect(user="ann", tenant="ta", role="agent")
    status, _ = await emit(switchboard, [{"event": "x", "tenant": "ta"},
                                         {"event": "x", "tenant": "tb"}], key=TENANT_A_KEY)
    assert status == 403
    await nothing_more(in_a, "x")


async def test_emit_without_a_valid_api_key_is_401(switchboard: Harness) -> None:
    status, body = await emit(switchboard, {"event": "x", "tenant": "t1"},
                              key="wrong-key-0123456789abc")
    assert (status, body["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"tenant": "t1"}, "invalid_payload", "event"),
    ({"event": "x"}, "invalid_payload", "tenant"),
    ({"event": 5, "tenant": "t1"}, "invalid_payload", "event"),
    ({"event": "x", "tenant": "t1", "user": 7}, "invalid_payload", "user"),
    ({"event": "x", "tenant": "t1", "colour": "red"}, "invalid_payload", "colour"),
    ({"event": "x", "tenant": "t1", "user": "ann", "room": "lead:1"}, "invalid_payload", "room"),
    ({"event": "x", "tenant": "t1", "room": "bad room"}, "invalid_room", "room"),
    ([{"event": "x", "tenant": "t1"}, {"tenant": "t1"}], "invalid_payload", "1.event"),
    ("just a string", "invalid_payload", None),
])
async def test_emit_body_errors_are_400_with_code_and_field(
        switchboard: Harness, body: Any, code: str, field: str | None) -> None:
    status, answer = await emit(switchboard, body)
    assert status == 400
    assert answer["code"] == code
    assert answer.get("field") == field
    assert answer["message"]


async def test_emit_body_that_is_not_json_is_400_invalid_json(switchboard: Harness) -> None:
    response = await switchboard.http().post(
        "/api/v1/emit", data=b"{nope", headers=switchboard.api_headers())
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "invalid_json"


async def test_leaving_a_room_stops_delivery(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="t1", role="agent")
    await agent.request("room:join", {"room": "lead:1"})
    await emit(switchboard, {"event": "lead:moved", "tenant": "t1", "room": "lead:1", "data": 1})
    assert await agent.expect("lead:moved") == 1
    assert await agent.request("room:leave", {"room": "lead:1"}) == {"room": "lead:1"}
    await emit(switchboard, {"event": "lead:moved", "tenant": "t1", "room": "lead:1", "data": 2})
    await nothing_more(agent, "lead:moved")


async def test_leaving_a_room_one_is_not_in_is_acked(switchboard: Harness) -> None:
    agent = await switchboard.connect(role="agent")
    assert await agent.request("room:leave", {"room": "lead:404"}) == {"room": "lead:404"}


async def test_a_disconnected_client_leaves_its_rooms(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="t1", role="agent")
    await agent.request("room:join", {"room": "lead:1"})
    await agent.close()
    await agent.settle(1)
    assert switchboard.server.hub.rooms.members("t1", "lead:1") == set()
    assert switchboard.server.hub.sessions == {}
