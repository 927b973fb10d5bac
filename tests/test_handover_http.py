"""The handover plugin's HTTP API for backends, its service for other plugins
and its domain hook; the atomic accept raced through the service. Every test
runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio
from handovers import (  # noqa: F401  (fixtures are found by name)
    T2_KEY,
    agent,
    conversation,
    customer,
    database,
    handover_settings,
    history_texts,
    switchboard_config,
)
from switchboard.core import ClientError, ConfigError, HandoverChange, hookimpl
from switchboard.core.server import Server
from switchboard.testing import Harness, make_config


async def call(switchboard: Harness, method: str, path: str, body: Any = None, *,
               key: str | None = None) -> tuple[int, Any]:
    http = switchboard.http()
    headers = switchboard.api_headers(key) if key else switchboard.api_headers()
    response = await http.open(path, method=method, json=body, headers=headers)
    return response.status_code, await response.get_json()


async def created(switchboard: Harness, conv_id: str = "c1", **extra: Any) -> dict[str, Any]:
    status, body = await call(switchboard, "POST", "/api/v1/handovers", {
        "tenant": "t1", "conversationId": conv_id, "requestedBy": "helpbot",
        "reason": "asked for a human", **extra})
    assert status == 201, body
    return body


async def test_a_backend_creates_gets_and_accepts_a_request(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    await conversation(switchboard)
    carl = await customer(switchboard)
    body = await created(switchboard, priority="urgent")
    assert body["status"] == "pending" and body["requesterRole"] == "bot"
    assert body["priority"] == "urgent" and body["requestedBy"] == "helpbot"
    assert (await ana.expect("handover:new_request"))["id"] == body["id"]
    status, shown = await call(switchboard, "GET", f"/api/v1/handovers/{body['id']}?tenant=t1")
    assert (status, shown) == (200, body)

    status, accepted = await call(switchboard, "POST",
                                  f"/api/v1/handovers/{body['id']}/accept",
                                  {"tenant": "t1", "agentId": "ana", "agentName": "Ana"})
    assert status == 200 and accepted["assignee"] == "ana"
    assert (await carl.expect("handover:accepted"))["assignee"] == "ana"
    assert (await ana.expect("handover:accepted"))["assignee"] == "ana"
    status, again = await call(switchboard, "POST", f"/api/v1/handovers/{body['id']}/accept",
                               {"tenant": "t1", "agentId": "bob"})
    assert status == 409 and again["code"] == "conflict"
    assert again["request"]["assignee"] == "ana" and again["request"]["status"] == "accepted"
    assert (await history_texts(switchboard))[-1] == ("system", "Ana joined the conversation.")


async def test_a_backend_transfers_resolves_and_cancels(switchboard: Harness) -> None:
    bob = await agent(switchboard, "bob")
    await conversation(switchboard)
    await conversation(switchboard, "c2")
    first = await created(switchboard)
    await call(switchboard, "POST", f"/api/v1/handovers/{first['id']}/accept",
               {"tenant": "t1", "agentId": "ana"})
    status, moved = await call(switchboard, "POST", f"/api/v1/handovers/{first['id']}/transfer",
                               {"tenant": "t1", "toAgentId": "bob", "note": "VIP",
                                "by": "ana"})
    assert status == 200 and moved["assignee"] == "bob" and moved["note"] == "VIP"
    assert (await bob.expect("handover:transferred"))["previousAssignee"] == "ana"
    status, resolved = await call(switchboard, "POST",
                                  f"/api/v1/handovers/{first['id']}/resolve",
                                  {"tenant": "t1", "returnToBot": True})
    assert status == 200 and resolved["status"] == "resolved" and resolved["returnedToBot"]
    second = await created(switchboard, "c2")
    status, cancelled = await call(switchboard, "POST",
                                   f"/api/v1/handovers/{second['id']}/cancel",
                                   {"tenant": "t1", "reason": "customer left"})
    assert status == 200 and cancelled["status"] == "cancelled"
    assert (await bob.expect("handover:cancelled"))["id"] == second["id"]
    status, refused = await call(switchboard, "POST",
                                 f"/api/v1/handovers/{second['id']}/resolve", {"tenant": "t1"})
    assert status == 409 and refused["request"]["status"] == "cancelled"


async def test_bad_requests_are_4xx_naming_the_field(switchboard: Harness) -> None:
    await conversation(switchboard)
    cases: list[tuple[str, str, Any, int, str | None]] = [
        ("POST", "/api/v1/handovers", {"tenant": "t1", "conversationId": "c1"}, 400,
         "requestedBy"),
        ("POST", "/api/v1/handovers", {"tenant": "t1", "requestedBy": "b"}, 400,
         "conversationId"),
        ("POST", "/api/v1/handovers", {"tenant": "t1", "requestedBy": "b", "leadId": "c1",
                                       "priority": 3}, 400, "priority"),
        ("POST", "/api/v1/handovers", {"tenant": "t1", "requestedBy": "b", "leadId": "c1",
                                       "queue": "a b"}, 400, "queue"),
        ("POST", "/api/v1/handovers", {"requestedBy": "b", "leadId": "c1"}, 400, "tenant"),
        ("POST", "/api/v1/handovers", {"tenant": "t1", "requestedBy": "b", "leadId": "zz"},
         404, None),
        ("POST", "/api/v1/handovers", [1, 2], 400, None),
        ("GET", "/api/v1/handovers/12345?tenant=t1", None, 404, None),
        ("GET", "/api/v1/handovers/abc?tenant=t1", None, 404, None),
        ("GET", "/api/v1/handovers/99999999999999999999999?tenant=t1", None, 404, None),
        ("GET", "/api/v1/handovers?tenant=t1&status=open", None, 400, "status"),
        ("GET", "/api/v1/handovers?tenant=t1&limit=0", None, 400, "limit"),
        ("GET", "/api/v1/handovers?tenant=t1&after=-1", None, 400, "after"),
        ("GET", "/api/v1/handovers?tenant=t1&queue=a%20b", None, 400, "queue"),
        ("POST", "/api/v1/handovers/1/accept", {"tenant": "t1"}, 400, "agentId"),
        ("POST", "/api/v1/handovers/1/transfer", {"tenant": "t1", "toAgentId": "a",
                                                  "toQueue": "q"}, 400, "toAgentId"),
        ("POST", "/api/v1/handovers/1/resolve", {"tenant": "t1", "returnToBot": "yes"}, 400,
         "returnToBot"),
    ]
    for method, path, body, expected, field in cases:
        status, answer = await call(switchboard, method, path, body)
        assert status == expected, (path, body, answer)
        assert answer.get("field") == field, (path, body, answer)
    response = await switchboard.http().get("/api/v1/handovers?tenant=t1")
    assert response.status_code == 401


async def test_a_tenant_key_sees_and_changes_only_its_tenant(switchboard: Harness) -> None:
    await conversation(switchboard)
    body = await created(switchboard)
    status, _ = await call(switchboard, "GET", f"/api/v1/handovers/{body['id']}", key=T2_KEY)
    assert status == 404
    status, _ = await call(switchboard, "GET", f"/api/v1/handovers/{body['id']}?tenant=t1",
                           key=T2_KEY)
    assert status == 403
    status, listed = await call(switchboard, "GET", "/api/v1/handovers", key=T2_KEY)
    assert status == 200 and listed["items"] == []
    for action in ("accept", "transfer", "cancel", "resolve"):
        status, _ = await call(switchboard, "POST", f"/api/v1/handovers/{body['id']}/{action}",
                               {"agentId": "x"} if action == "accept"
                               else {"toAgentId": "x"} if action == "transfer" else {},
                               key=T2_KEY)
        assert status == 404, action
    status, _ = await call(switchboard, "POST", "/api/v1/handovers",
                           {"tenant": "t1", "leadId": "c1", "requestedBy": "b"}, key=T2_KEY)
    assert status == 403
    stored = await switchboard.app.service("handover").get("t1", body["id"])
    assert stored.status == "pending" and stored.version == 1


async def test_the_list_filters_and_pages(switchboard: Harness) -> None:
    for i in range(5):
        await conversation(switchboard, f"c{i}")
        await created(switchboard, f"c{i}", queue="billing" if i % 2 else None,
                      priority="high" if i == 4 else "normal")
    path = "/api/v1/handovers?tenant=t1&limit=3"
    status, page = await call(switchboard, "GET", path)
    assert status == 200
    assert [r["conversationId"] for r in page["items"]] == ["c0", "c1", "c2"]
    status, page = await call(switchboard, "GET", f"{path}&after={page['nextAfter']}")
    assert [r["conversationId"] for r in page["items"]] == ["c3", "c4"]
    assert page["nextAfter"] is None
    status, page = await call(switchboard, "GET", "/api/v1/handovers?tenant=t1&queue=billing")
    assert [r["conversationId"] for r in page["items"]] == ["c1", "c3"]
    status, page = await call(switchboard, "GET", "/api/v1/handovers?tenant=t1&priority=high")
    assert [r["conversationId"] for r in page["items"]] == ["c4"]
    _, page = await call(switchboard, "GET",
                         "/api/v1/handovers?tenant=t1&conversationId=c2&status=pending")
    assert [r["conversationId"] for r in page["items"]] == ["c2"]
    await call(switchboard, "POST", f"/api/v1/handovers/{page['items'][0]['id']}/cancel",
               {"tenant": "t1"})
    _, page = await call(switchboard, "GET", "/api/v1/handovers?tenant=t1")
    assert [r["conversationId"] for r in page["items"]] == ["c0", "c1", "c3", "c4"]
    _, page = await call(switchboard, "GET", "/api/v1/handovers?tenant=t1&status=cancelled")
    assert [r["conversationId"] for r in page["items"]] == ["c2"]
    _, page = await call(switchboard, "GET", "/api/v1/handovers?tenant=t1&status=all")
    assert len(page["items"]) == 5


# -- the service and the hook ------------------------------------------------------


class Recorder:
    """Records every switchboard_handover_changed."""

    def __init__(self) -> None:
        self.changes: list[HandoverChange] = []

    @hookimpl
    def switchboard_handover_changed(self, change: HandoverChange) -> None:
        self.changes.append(change)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def switchboard_plugins(recorder: Recorder) -> Mapping[str, object]:
    return {"recorder": recorder}


async def test_every_change_is_reported_with_its_source(switchboard: Harness,
                                                        recorder: Recorder) -> None:
    service = switchboard.app.service("handover")
    ana = await agent(switchboard, "ana")
    await conversation(switchboard)
    request = await service.request("t1", "c1", requested_by="helpbot", reason="refund",
                                    queue="billing")
    await ana.request("handover:accept", {"requestId": request.id})
    await call(switchboard, "POST", f"/api/v1/handovers/{request.id}/transfer",
               {"tenant": "t1", "toAgentId": "bob", "by": "ana"})
    resolved = await service.resolve("t1", request.id, by="bob")
    await ana.settle(1)
    assert [(c.action, c.source, c.actor) for c in recorder.changes] == [
        ("requested", "plugin", "helpbot"), ("accepted", "socket", "ana"),
        ("transferred", "http", "ana"), ("resolved", "plugin", "bob")]
    assert recorder.changes[2].previous_assignee == "ana"
    assert recorder.changes[-1].request == resolved and resolved.status == "resolved"
    assert await service.open_request("t1", "c1") is None
    assert await service.get("t1", request.id) == resolved


async def test_the_service_refuses_bad_arguments_naming_them(switchboard: Harness) -> None:
    service = switchboard.app.service("handover")
    await conversation(switchboard)
    calls: list[tuple[Any, str]] = [
        (service.request("", "c1", requested_by="b"), "tenant_id"),
        (service.request("t1", "c 1", requested_by="b"), "conversation_id"),
        (service.request("t1", "c1", requested_by="b", priority="asap"), "priority"),  # type: ignore[arg-type]
        (service.request("t1", "c1", requested_by="b", queue="a b"), "queue"),
        (service.request("t1", "c1", requested_by="b", reason="x" * 1001), "reason"),
        (service.accept("t1", "1", "ana"), "request_id"),  # type: ignore[arg-type]
        (service.accept("t1", 1, ""), "agent_id"),
        (service.transfer("t1", 1), "to_agent"),
        (service.resolve("t1", 1, return_to_bot="yes"), "return_to_bot"),  # type: ignore[arg-type]
        (service.pending("t1", limit=0), "limit"),
    ]
    for pending_call, field in calls:
        with pytest.raises(ClientError) as refused:
            await pending_call
        assert (refused.value.code, refused.value.field) == ("invalid_payload", field)
    with pytest.raises(ClientError) as missing:
        await service.request("t1", "nope", requested_by="b")
    assert missing.value.code == "not_found"
    with pytest.raises(ClientError) as missing:
        await service.accept("t1", 424242, "ana")
    assert missing.value.code == "not_found"


async def test_many_accepts_at_once_through_the_service_one_wins(switchboard: Harness) -> None:
    service = switchboard.app.service("handover")
    await conversation(switchboard)
    request = await service.request("t1", "c1", requested_by="helpbot")
    outcomes: dict[str, str] = {}

    async def accept(agent_id: str) -> None:
        try:
            await service.accept("t1", request.id, agent_id)
            outcomes[agent_id] = "won"
        except ClientError as exc:
            assert exc.extra["request"]["status"] == "accepted"
            outcomes[agent_id] = exc.code

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(accept, f"agent{i}")
    assert sorted(outcomes.values()) == ["conflict"] * 7 + ["won"]
    stored = await service.get("t1", request.id)
    assert stored is not None and outcomes[stored.assignee or ""] == "won"
    assert stored.version == 2
    pending = await service.pending("t1")
    assert pending == []


def test_without_the_chat_plugin_the_start_up_fails_naming_it() -> None:
    async def start() -> None:
        server = Server(make_config({"plugins": {"chat": {"enabled": False}}}))
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: server.run(listen=False,
                                                               task_status=task_status))
            server.shutdown()

    with pytest.raises(BaseExceptionGroup) as refused:
        trio.run(start)
    assert refused.group_contains(LookupError, match="handover.*'chat'", depth=None)


@pytest.mark.parametrize(("section", "key"), [
    ({"escalate_after": -1.0}, "plugins.handover.escalate_after"),
    ({"max_escalations": -1}, "plugins.handover.max_escalations"),
    ({"poll_interval": 0.0}, "plugins.handover.poll_interval"),
    ({"system_sender": ""}, "plugins.handover.system_sender"),
    ({"escalate_afer": 3.0}, "plugins.handover.escalate_afer"),
])
def test_bad_settings_stop_the_start_naming_them(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Server(make_config({"plugins": {"handover": section}}))
    assert refused.value.key == key
