"""The desk's tickets: created over HTTP or by agents, changed with versions,
announced to the agents and the customer, joined under a policy, isolated per
tenant. Every test runs on SQLite and on a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
from databases import database_url
from desk import ACME_KEY, call, desk_config, new_ticket, put_queue
from switchboard.core import ChatService, TicketChange, hookimpl
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield desk_config(url)


class Recorder:
    def __init__(self) -> None:
        self.changes: list[TicketChange] = []

    @hookimpl
    def switchboard_ticket_changed(self, change: TicketChange) -> None:
        self.changes.append(change)


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"recorder": Recorder()}


# -- creating --------------------------------------------------------------------


async def test_tickets_are_numbered_per_tenant(switchboard: Harness) -> None:
    first = await new_ticket(switchboard)
    second = await new_ticket(switchboard)
    other = await new_ticket(switchboard, tenant="globex")
    assert (first["number"], second["number"], other["number"]) == (1, 2, 1)
    assert first["status"] == "open" and first["priority"] == "normal"
    assert first["version"] == 1 and first["channel"] == "web"
    assert first["conversationId"] == "ticket-" + first["id"]


async def test_concurrent_creations_get_distinct_numbers(switchboard: Harness) -> None:
    numbers: list[int] = []

    async def create() -> None:
        numbers.append((await new_ticket(switchboard))["number"])

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(create)
    assert sorted(numbers) == list(range(1, 9))


async def test_a_new_ticket_reaches_the_agents_and_the_customer_only(
        switchboard: Harness) -> None:
    agent = await switchboard.connect("ana", "acme", "agent")
    customer = await switchboard.connect("cust-1", "acme", "customer")
    stranger = await switchboard.connect("cust-2", "acme", "customer")
    foreign = await switchboard.connect("olga", "globex", "agent")
    ticket = await new_ticket(switchboard, channel="whatsapp", tags=["vip"])
    for client in (agent, customer):
        created = await client.expect("ticket:created")
        assert created["ticket"] == ticket and created["by"] is None
    await switchboard.connect("probe", "acme", "agent")  # lets deliveries settle
    assert stranger.received("ticket:created") == []
    assert foreign.received("ticket:created") == []


async def test_http_creation_with_the_first_message_of_the_customer(
        switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard, channel="whatsapp",
                              message={"text": "Oi", "clientId": "wamid.1"})
    assert ticket["message"]["content"] == {"text": "Oi"}
    chat: ChatService = switchboard.app.service("chat")
    history = await chat.history("acme", ticket["conversationId"])
    assert [(m.sender_id, m.content) for m in history.messages] == [("cust-1", {"text": "Oi"})]


async def test_agents_create_tickets_over_the_socket(switchboard: Harness) -> None:
    agent = await switchboard.connect("ana", "acme", "agent")
    answer = await agent.request("ticket:create", {"subject": "Call back", "customerId": "c9",
                                                   "priority": "high"})
    assert answer["ticket"]["priority"] == "high" and answer["ticket"]["number"] == 1
    assert (await agent.expect("ticket:created"))["by"] == "ana"
    customer = await switchboard.connect("c9", "acme", "customer")
    with pytest.raises(ErrorReply) as refused:
        await customer.request("ticket:create", {"subject": "x", "customerId": "c9"})
    assert refused.value.code == "forbidden"


# -- changing ------------------------------------------------------------------------


async def test_status_changes_are_announced_with_the_previous_status(
        switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    agent = await switchboard.connect("ana", "acme", "agent")
    customer = await switchboard.connect("cust-1", "acme", "customer")
    answer = await agent.request("ticket:set_status", {"ticketId": ticket["id"],
                                                       "status": "pending", "version": 1})
    assert answer["ticket"]["status"] == "pending" and answer["ticket"]["version"] == 2
    for client in (agent, customer):
        event = await client.expect("ticket:status")
        assert event["previousStatus"] == "open" and event["ticket"]["status"] == "pending"
        assert event["by"] == "ana"


async def test_a_stale_version_is_a_conflict_with_the_current_ticket(
        switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    agent = await switchboard.connect("ana", "acme", "agent")
    await agent.request("ticket:update", {"ticketId": ticket["id"], "version": 1,
                                          "subject": "Printer still on fire"})
    with pytest.raises(ErrorReply) as stale:
        await agent.request("ticket:update", {"ticketId": ticket["id"], "version": 1,
                                              "priority": "urgent"})
    assert stale.value.code == "conflict"
    assert stale.value.data["ticket"]["version"] == 2
    assert stale.value.data["ticket"]["subject"] == "Printer still on fire"
    response = await call(switchboard, "PATCH", f"/api/v1/tickets/{ticket['id']}",
                          {"tenant": "acme", "version": 1, "status": "resolved"}, status=409)
    assert response["code"] == "conflict" and response["ticket"]["status"] == "open"


async def test_of_two_agents_taking_a_ticket_one_wins(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    ana = await switchboard.connect("ana", "acme", "agent")
    bob = await switchboard.connect("bob", "acme", "agent")
    results: dict[str, Any] = {}

    async def take(name: str, client: Any) -> None:
        try:
            results[name] = await client.request("ticket:assign", {"ticketId": ticket["id"]})
        except ErrorReply as exc:
            results[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "ana", ana)
        nursery.start_soon(take, "bob", bob)
    errors = [r for r in results.values() if isinstance(r, ErrorReply)]
    wins = [r for r in results.values() if not isinstance(r, ErrorReply)]
    assert len(errors) == 1 and len(wins) == 1
    assert errors[0].code == "conflict"
    winner = wins[0]["ticket"]["assigneeId"]
    assert errors[0].data["ticket"]["assigneeId"] == winner
    assert wins[0]["ticket"]["status"] == "in_progress"
    stored = await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
    assert stored["assigneeId"] == winner and stored["version"] == 2


async def test_assignment_goes_to_the_assignee_and_the_agents(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    bob = await switchboard.connect("bob", "acme", "agent")
    assigned = await call(switchboard, "POST", f"/api/v1/tickets/{ticket['id']}/assign",
                          {"tenant": "acme", "assigneeId": "bob", "by": "lead"}, status=200)
    assert assigned["assigneeId"] == "bob"
    event = await bob.expect("ticket:assigned")
    assert event["ticket"]["assigneeId"] == "bob" and event["previousAssigneeId"] is None
    assert event["by"] == "lead"


async def test_a_transfer_note_reaches_agents_but_not_the_customer(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "billing", [])
    ticket = await new_ticket(switchboard, assigneeId="ana")
    agent = await switchboard.connect("ana", "acme", "agent")
    customer = await switchboard.connect("cust-1", "acme", "customer")
    answer = await agent.request("ticket:transfer", {
        "ticketId": ticket["id"], "queueId": "billing", "note": "refund asked"})
    assert answer["ticket"]["queueId"] == "billing"
    assert answer["ticket"]["assigneeId"] is None and answer["ticket"]["status"] == "open"
    seen = await agent.expect("ticket:transferred")
    assert seen["note"] == "refund asked" and seen["previousAssigneeId"] == "ana"
    assert seen["previousQueueId"] is None
    told = await customer.expect("ticket:transferred")
    assert "note" not in told and told["ticket"]["queueId"] == "billing"


async def test_transfer_to_an_unknown_queue_is_not_found(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    agent = await switchboard.connect("ana", "acme", "agent")
    with pytest.raises(ErrorReply) as missing:
        await agent.request("ticket:transfer", {"ticketId": ticket["id"], "queueId": "nope"})
    assert missing.value.code == "not_found"


async def test_close_and_reopen(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    agent = await switchboard.connect("ana", "acme", "agent")
    closed = await agent.request("ticket:close", {"ticketId": ticket["id"], "note": "done"})
    assert closed["ticket"]["status"] == "closed" and closed["ticket"]["closedAt"] is not None
    assert (await agent.expect("ticket:closed"))["note"] == "done"
    with pytest.raises(ErrorReply) as closed_already:
        await agent.request("ticket:assign", {"ticketId": ticket["id"]})
    assert closed_already.value.code == "conflict"
    reopened = await agent.request("ticket:reopen", {"ticketId": ticket["id"]})
    assert reopened["ticket"]["status"] == "open" and reopened["ticket"]["closedAt"] is None
    assert (await agent.expect("ticket:reopened"))["previousStatus"] == "closed"
    with pytest.raises(ErrorReply) as open_already:
        await agent.request("ticket:reopen", {"ticketId": ticket["id"]})
    assert open_already.value.code == "conflict"


async def test_http_changes_are_announced_like_socket_ones(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    agent = await switchboard.connect("ana", "acme", "agent")
    path = f"/api/v1/tickets/{ticket['id']}"
    await call(switchboard, "PATCH", path, {"tenant": "acme", "priority": "urgent",
                                            "tags": ["vip", "vip", "late"]}, status=200)
    updated = await agent.expect("ticket:updated")
    assert updated["ticket"]["priority"] == "urgent"
    assert updated["ticket"]["tags"] == ["vip", "late"]
    await call(switchboard, "POST", path + "/close", {"tenant": "acme"}, status=200)
    assert (await agent.expect("ticket:closed"))["ticket"]["status"] == "closed"
    await call(switchboard, "POST", path + "/reopen", {"tenant": "acme"}, status=200)
    assert (await agent.expect("ticket:reopened"))["ticket"]["status"] == "open"


async def test_every_change_is_reported_to_the_hook(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    await call(switchboard, "POST", f"/api/v1/tickets/{ticket['id']}/close",
               {"tenant": "acme", "by": "ana"}, status=200)
    await switchboard.app.notifications_done()
    recorder = switchboard.app.plugins.pm.get_plugin("recorder")
    kinds = [(c.kind, c.by, c.ticket.status) for c in recorder.changes]
    assert kinds == [("created", None, "open"), ("closed", "ana", "closed")]
    assert recorder.changes[1].previous.status == "open"


async def test_customers_see_their_own_tickets_and_change_none(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    owner = await switchboard.connect("cust-1", "acme", "customer")
    other = await switchboard.connect("cust-2", "acme", "customer")
    assert (await owner.request("ticket:get", {"ticketId": ticket["id"]}))["ticket"]["id"] \
        == ticket["id"]
    with pytest.raises(ErrorReply) as hidden:
        await other.request("ticket:get", {"ticketId": ticket["id"]})
    assert hidden.value.code == "not_found"
    with pytest.raises(ErrorReply) as refused:
        await owner.request("ticket:close", {"ticketId": ticket["id"]})
    assert refused.value.code == "forbidden"


# -- rooms ------------------------------------------------------------------------------


async def test_the_ticket_room_admits_agents_and_the_customer(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    agent = await switchboard.connect("ana", "acme", "agent")
    owner = await switchboard.connect("cust-1", "acme", "customer")
    other = await switchboard.connect("cust-2", "acme", "customer")
    for client in (agent, owner):
        joined = await client.request("ticket:join", {"ticketId": ticket["id"]})
        assert joined["success"] is True and joined["ticket"]["id"] == ticket["id"]
    refused = await other.request("ticket:join", {"ticketId": ticket["id"]})
    assert refused["success"] is False and refused["error"]["code"] == "forbidden"
    with pytest.raises(ErrorReply) as by_room:
        await other.request("room:join", {"room": f"ticket:{ticket['id']}"})
    assert by_room.value.code == "forbidden"
    # the conversation's messages reach who joined
    await call(switchboard, "POST", f"/api/v1/conversations/{ticket['conversationId']}/messages",
               {"tenant": "acme", "senderId": "cust-1", "senderRole": "customer",
                "content": {"text": "hello?"}}, status=201)
    assert (await agent.expect("message:new"))["content"] == {"text": "hello?"}
    left = await agent.request("ticket:leave", {"ticketId": ticket["id"]})
    assert left == {"success": True, "ticketId": ticket["id"]}


async def test_unknown_and_foreign_tickets_are_not_found(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    foreign = await switchboard.connect("olga", "globex", "agent")
    for ticket_id in (ticket["id"], "no-such-ticket"):
        answer = await foreign.request("ticket:join", {"ticketId": ticket_id})
        assert answer["success"] is False and answer["error"]["code"] == "not_found"
        with pytest.raises(ErrorReply) as hidden:
            await foreign.request("ticket:set_status", {"ticketId": ticket_id,
                                                        "status": "closed"})
        assert hidden.value.code == "not_found"
    await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=globex",
               status=404)
    await call(switchboard, "POST", f"/api/v1/tickets/{ticket['id']}/close",
               {"tenant": "globex"}, status=404)
    stored = await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
    assert stored["status"] == "open"


# -- listing -----------------------------------------------------------------------------


async def test_listing_filters_and_pages_newest_first(switchboard: Harness) -> None:
    for n in range(5):
        await new_ticket(switchboard, priority="high" if n % 2 else "low",
                         customerId=f"c{n % 2}")
    await new_ticket(switchboard, tenant="globex")
    page = await call(switchboard, "GET", "/api/v1/tickets?tenant=acme&limit=2", status=200)
    assert [t["number"] for t in page["items"]] == [5, 4] and page["nextBefore"] == 4
    rest = await call(switchboard, "GET", "/api/v1/tickets?tenant=acme&limit=2&before=4")
    assert [t["number"] for t in rest["items"]] == [3, 2]
    last = await call(switchboard, "GET", "/api/v1/tickets?tenant=acme&limit=2&before=2")
    assert [t["number"] for t in last["items"]] == [1] and last["nextBefore"] is None
    mine = await call(switchboard, "GET", "/api/v1/tickets?tenant=acme&customerId=c1")
    assert [t["number"] for t in mine["items"]] == [4, 2]
    agent = await switchboard.connect("ana", "acme", "agent")
    listed = await agent.request("ticket:list", {"status": "open", "limit": 10})
    assert [t["number"] for t in listed["items"]] == [5, 4, 3, 2, 1]


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"customerId": "c1"}, "subject"),
    ({"subject": "x"}, "customerId"),
    ({"subject": "", "customerId": "c1"}, "subject"),
    ({"subject": "x", "customerId": "c1", "priority": "whenever"}, "priority"),
    ({"subject": "x", "customerId": "c1", "tags": ["a\x00"]}, "tags"),
    ({"subject": "x" * 600, "customerId": "c1"}, "subject"),
    ({"subject": "x", "customerId": "", "channel": "web"}, "customerId"),
    ({"subject": "x", "customerId": "c1", "queueId": "a b"}, "queueId"),
])
async def test_bad_creations_name_the_field(switchboard: Harness, body: dict[str, Any],
                                            field: str) -> None:
    answer = await call(switchboard, "POST", "/api/v1/tickets", {"tenant": "acme", **body},
                        status=400)
    assert answer["code"] == "invalid_payload" and answer["field"] == field


async def test_bad_requests_never_fail_on_the_server(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard)
    path = f"/api/v1/tickets/{ticket['id']}"
    assert (await call(switchboard, "PATCH", path, {"tenant": "acme", "status": "gone"},
                       status=400))["field"] == "status"
    assert (await call(switchboard, "PATCH", path, {"tenant": "acme"}, status=400)
            )["code"] == "invalid_payload"
    assert (await call(switchboard, "GET", "/api/v1/tickets?tenant=acme&limit=0",
                       status=400))["field"] == "limit"
    assert (await call(switchboard, "GET", "/api/v1/tickets?tenant=acme&before=x",
                       status=400))["field"] == "before"
    await call(switchboard, "POST", path + "/transfer", {"tenant": "acme"}, status=400)
    await call(switchboard, "POST", path + "/assign", {"tenant": "acme", "version": -1},
               status=400)
    await call(switchboard, "GET", "/api/v1/tickets/x?tenant=globex", key=ACME_KEY, status=403)
    agent = await switchboard.connect("ana", "acme", "agent")
    for payload in (None, [], {"ticketId": 7}, {"ticketId": ticket["id"], "status": 3}):
        with pytest.raises(ErrorReply) as bad:
            await agent.request("ticket:set_status", payload)
        assert bad.value.code == "invalid_payload"
    with pytest.raises(ErrorReply) as bad_status:
        await agent.request("ticket:set_status", {"ticketId": ticket["id"], "status": "x"})
    assert bad_status.value.field == "status"


DESK_EVENTS = ["ticket:join", "ticket:leave", "ticket:get", "ticket:list", "ticket:create",
               "ticket:update", "ticket:set_status", "ticket:assign", "ticket:transfer",
               "ticket:close", "ticket:reopen", "agent:status", "agent:list", "queue:list"]
JUNK: list[Any] = [None, 7, "x", [], [1, 2], {"ticketId": None}, {"ticketId": "x" * 300},
                   {"ticketId": "a\x00b"}, {"ticketId": "nope", "version": "one"},
                   {"ticketId": "nope", "version": 2**70}, {"status": {"a": 1}},
                   {"subject": ["x"], "customerId": "c"}, {"limit": 10**9},
                   {"ticketId": "nope", "tags": "vip"}, {"ticketId": "nope", "note": 5}]


async def test_junk_is_refused_with_a_code_and_never_fails_on_the_server(
        switchboard: Harness) -> None:
    agent = await switchboard.connect("ana", "acme", "agent")
    customer = await switchboard.connect("cust-1", "acme", "customer")
    for client in (agent, customer):
        for name in DESK_EVENTS:
            for payload in JUNK:
                await trio.sleep(1.1)  # (mock time) under every rate limit
                try:
                    await client.request(name, payload)
                except ErrorReply as exc:
                    assert exc.code in ("invalid_payload", "not_found", "forbidden"), \
                        (name, payload, exc.data)
    # still serving, nothing stored
    assert (await agent.request("ticket:list", {}))["items"] == []
    for body in (None, [], "x", {"tenant": "acme", "subject": None, "customerId": "c"}):
        response = await switchboard.http().post("/api/v1/tickets", json=body,
                                                  headers=switchboard.api_headers())
        assert response.status_code == 400
    response = await switchboard.http().post("/api/v1/tickets", data=b"\xff{",
                                             headers=switchboard.api_headers())
    assert response.status_code == 400


class TestUnknownTicketsDeferred:
    """``unknown_tickets = "defer"`` (the default): rooms of tickets the desk
    does not know follow the other policies, as before the desk."""

    @pytest.fixture(params=["sqlite"])
    def switchboard_config(self, request: pytest.FixtureRequest,
                           tmp_path: Path) -> Iterator[Config]:
        with database_url(request.param, tmp_path, tables=True) as url:
            yield desk_config(url, {"unknown_tickets": "defer"})

    async def test_agents_join_rooms_of_tickets_kept_elsewhere(self, switchboard: Harness
                                                               ) -> None:
        agent = await switchboard.connect("ana", "acme", "agent")
        customer = await switchboard.connect("cust-1", "acme", "customer")
        assert await agent.request("room:join", {"room": "ticket:42"}) == {"room": "ticket:42"}
        joined = await agent.request("ticket:join", {"ticketId": "43"})
        assert joined == {"success": True, "ticketId": "43", "ticket": None}
        refused = await customer.request("ticket:join", {"ticketId": "43"})
        assert refused["success"] is False and refused["error"]["code"] == "forbidden"
        # a ticket the desk knows still follows the desk's policy
        ticket = await new_ticket(switchboard, customerId="cust-9")
        refused = await customer.request("ticket:join", {"ticketId": ticket["id"]})
        assert refused["error"]["code"] == "forbidden"
