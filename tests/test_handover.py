"""The handover plugin over the socket: a customer (or a bot) asks for a human,
the first agent to accept wins, transfers, cancellation, resolution, errors
and tenant isolation. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime

import pytest
import trio
from handovers import (  # noqa: F401  (fixtures are found by name)
    agent,
    conversation,
    customer,
    database,
    error_of,
    handover_settings,
    history_texts,
    switchboard_config,
)
from switchboard.testing import ErrorReply, Harness, TestClient


async def requested(switchboard: Harness, **extra: object) -> tuple[TestClient, dict]:
    """Conversation c1 of carl (customer) and helpbot; carl asks for a human."""
    await conversation(switchboard)
    carl = await customer(switchboard)
    ack = await carl.request("handover:request", {"leadId": "c1", "reason": "Dúvida técnica",
                                                  "priority": "high", **extra})
    return carl, ack


async def test_a_request_is_announced_to_the_agents_and_acked(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    carl, ack = await requested(switchboard)
    assert ack["status"] == "pending" and ack["leadId"] == "c1"
    assert ack["conversationId"] == "c1" and ack["requestedBy"] == "carl"
    assert ack["reason"] == "Dúvida técnica" and ack["priority"] == "high"
    assert datetime.datetime.fromisoformat(ack["timestamp"]).timestamp() == \
        pytest.approx(ack["updatedAt"])
    announced = await ana.expect("handover:new_request")
    assert announced == ack
    assert carl.received("handover:new_request") == []
    assert await history_texts(switchboard) == [
        ("system", "An agent will be with you shortly.")]


async def test_a_request_of_a_queue_is_announced_to_that_queue_only(
        switchboard: Harness) -> None:
    billing = await agent(switchboard, "ana", queue="billing")
    other = await agent(switchboard, "bob", queue="sales")
    _, ack = await requested(switchboard, queue="billing")
    assert (await billing.expect("handover:new_request"))["id"] == ack["id"]
    await other.settle(1)
    assert other.received("handover:new_request") == []


async def test_the_first_agent_to_accept_wins_and_the_other_gets_conflict(
        switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    carl, ack = await requested(switchboard)
    accepted = await ana.request("handover:accept", {"leadId": "c1", "consultantId": "ana",
                                                     "agentName": "Ana"})
    assert accepted["status"] == "accepted" and accepted["assignee"] == "ana"
    assert accepted["consultantId"] == "ana" and accepted["version"] == 2
    refused = await error_of(bob, "handover:accept", {"requestId": ack["id"]})
    assert refused.code == "conflict"
    assert refused.data["request"]["status"] == "accepted"
    assert refused.data["request"]["assignee"] == "ana"
    taken = await bob.expect("handover:taken")
    assert taken["id"] == ack["id"] and taken["assignee"] == "ana"
    told = await carl.expect("handover:accepted")
    assert told["assignee"] == "ana"
    assert ana.received("handover:taken") == []  # the accepting connection has the ack
    assert await history_texts(switchboard) == [
        ("system", "An agent will be with you shortly."),
        ("system", "Ana joined the conversation.")]
    members = await switchboard.app.service("chat").get_conversation("t1", "c1")
    assert members.participant("ana").role == "agent"
    # the agent's connection is in the conversation's room: it hears the customer
    assert (await ana.expect("message:new"))["content"] == {
        "text": "Ana joined the conversation."}
    await carl.request("message:send", {"conversationId": "c1", "type": "text",
                                        "content": {"text": "obrigado"}})
    assert (await ana.expect("message:new"))["content"] == {"text": "obrigado"}


async def test_two_agents_accepting_at_once_one_wins(switchboard: Harness) -> None:
    agents = [await agent(switchboard, f"agent{i}") for i in range(4)]
    _, ack = await requested(switchboard)
    outcomes: dict[str, str] = {}

    async def accept(client: TestClient, name: str) -> None:
        try:
            await client.request("handover:accept", {"requestId": ack["id"]})
            outcomes[name] = "won"
        except ErrorReply as exc:
            outcomes[name] = exc.code

    async with trio.open_nursery() as nursery:
        for i, client in enumerate(agents):
            nursery.start_soon(accept, client, f"agent{i}")
    assert sorted(outcomes.values()) == ["conflict", "conflict", "conflict", "won"]
    winner = next(name for name, outcome in outcomes.items() if outcome == "won")
    stored = await switchboard.app.service("handover").get("t1", ack["id"])
    assert stored.assignee == winner and stored.version == 2
    texts = [t for _, t in await history_texts(switchboard)]
    assert texts.count(f"{winner} joined the conversation.") == 1 and len(texts) == 2


async def test_a_customer_may_not_accept_transfer_or_resolve(switchboard: Harness) -> None:
    carl, ack = await requested(switchboard)
    for event, extra in (("handover:accept", {}), ("handover:transfer", {"toAgentId": "x"}),
                         ("handover:resolve", {})):
        refused = await error_of(carl, event, {"requestId": ack["id"], **extra})
        assert refused.code == "forbidden", event
    assert (await switchboard.app.service("handover").get("t1", ack["id"])).status == "pending"


async def test_an_agent_accepts_only_for_itself_but_a_supervisor_assigns(
        switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    boss = await agent(switchboard, "boss", role="supervisor")
    _, ack = await requested(switchboard)
    refused = await error_of(ana, "handover:accept", {"requestId": ack["id"],
                                                      "consultantId": "bob"})
    assert refused.code == "forbidden"
    assigned = await boss.request("handover:accept", {"requestId": ack["id"],
                                                      "agentId": "bob"})
    assert assigned["assignee"] == "bob"


async def test_requests_are_checked_and_errors_name_the_field(switchboard: Harness) -> None:
    await conversation(switchboard)
    carl = await customer(switchboard)
    stranger = await switchboard.connect(user="eve", role="customer")
    cases = [
        ({}, "invalid_payload", "leadId"),
        ({"leadId": "c1", "priority": "asap"}, "invalid_payload", "priority"),
        ({"leadId": "c1", "queue": "bad queue"}, "invalid_payload", "queue"),
        ({"leadId": "c1", "reason": "x\x00"}, "invalid_payload", "reason"),
        ({"leadId": "c1", "conversationId": "c2"}, "invalid_payload", "leadId"),
        ({"leadId": 7}, "invalid_payload", "leadId"),
        ({"leadId": "nope"}, "not_found", None),
    ]
    for payload, code, field in cases:
        await carl.settle(1)  # (within the event's rate limit)
        refused = await error_of(carl, "handover:request", payload)
        assert (refused.code, refused.field) == (code, field), payload
    await carl.settle(1)
    assert (await error_of(carl, "handover:request", "c1")).code == "invalid_payload"
    refused = await error_of(stranger, "handover:request", {"leadId": "c1"})
    assert refused.code == "forbidden"
    for payload, field in (({}, "requestId"), ({"requestId": -1}, "requestId"),
                           ({"requestId": "1"}, "requestId")):
        refused = await error_of(carl, "handover:cancel", payload)
        assert (refused.code, refused.field) == ("invalid_payload", field), payload
    assert (await error_of(carl, "handover:cancel", {"requestId": 99})).code == "not_found"


async def test_one_open_request_per_conversation(switchboard: Harness) -> None:
    carl, ack = await requested(switchboard)
    refused = await error_of(carl, "handover:request", {"leadId": "c1"})
    assert refused.code == "conflict" and refused.data["request"]["id"] == ack["id"]
    await carl.request("handover:cancel", {"leadId": "c1", "reason": "solved it"})
    again = await carl.request("handover:request", {"leadId": "c1"})
    assert again["id"] != ack["id"] and again["priority"] == "normal"


async def test_the_customer_cancels_a_pending_request(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    carl, ack = await requested(switchboard)
    await ana.expect("handover:new_request")
    eve = await switchboard.connect(user="eve", role="customer")
    assert (await error_of(eve, "handover:cancel", {"requestId": ack["id"]})).code == \
        "forbidden"
    cancelled = await carl.request("handover:cancel", {"requestId": ack["id"],
                                                       "reason": "never mind"})
    assert cancelled["status"] == "cancelled" and cancelled["note"] == "never mind"
    assert (await ana.expect("handover:cancelled"))["id"] == ack["id"]
    refused = await error_of(ana, "handover:accept", {"requestId": ack["id"]})
    assert refused.code == "conflict" and refused.data["request"]["status"] == "cancelled"
    # an accepted request is not cancelled: the agent resolves it
    again = await carl.request("handover:request", {"leadId": "c1"})
    await ana.request("handover:accept", {"requestId": again["id"]})
    assert (await error_of(carl, "handover:cancel", {"leadId": "c1"})).code == "conflict"


async def test_a_transfer_to_another_agent_with_a_note(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    carl, ack = await requested(switchboard)
    await ana.request("handover:accept", {"requestId": ack["id"], "agentName": "Ana"})
    await carl.expect("handover:accepted")
    refused = await error_of(bob, "handover:transfer", {"requestId": ack["id"],
                                                        "toAgentId": "bob"})
    assert refused.code == "forbidden"  # only the holder transfers it
    moved = await ana.request("handover:transfer", {
        "requestId": ack["id"], "toAgentId": "bob", "toAgentName": "Bob",
        "note": "billing question, invoice 42"})
    assert moved["assignee"] == "bob" and moved["status"] == "accepted"
    told = await bob.expect("handover:transferred")
    assert told["note"] == "billing question, invoice 42"
    assert told["previousAssignee"] == "ana"
    assert (await carl.expect("handover:transferred"))["assignee"] == "bob"
    members = await switchboard.app.service("chat").get_conversation("t1", "c1")
    assert members.participant("bob") is not None and members.participant("ana") is None
    assert (await history_texts(switchboard))[-1] == (
        "system", "ana transferred the conversation to Bob.")
    both = await error_of(ana, "handover:transfer", {"requestId": ack["id"]})
    assert (both.code, both.field) == ("invalid_payload", "toAgentId")
    assert (await error_of(ana, "handover:resolve", {"requestId": ack["id"]})).code == \
        "forbidden"
    resolved = await bob.request("handover:resolve", {"leadId": "c1"})
    assert resolved["status"] == "resolved"


async def test_a_transfer_to_a_queue_makes_it_pending_there(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    billing = await agent(switchboard, "bill", queue="billing")
    _, ack = await requested(switchboard)
    await ana.request("handover:accept", {"requestId": ack["id"]})
    await billing.expect("handover:new_request")  # (announced to every agent first)
    moved = await ana.request("handover:transfer", {"requestId": ack["id"],
                                                    "toQueue": "billing", "note": "invoice"})
    assert moved["status"] == "pending" and moved["queue"] == "billing"
    assert moved["assignee"] is None
    again = await billing.expect("handover:new_request")
    assert again["id"] == ack["id"] and again["note"] == "invoice"
    assert (await billing.request("handover:accept", {"leadId": "c1"}))["assignee"] == "bill"


async def test_resolving_hands_the_conversation_back_to_the_bot(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    carl, ack = await requested(switchboard)
    await ana.request("handover:accept", {"requestId": ack["id"]})
    resolved = await ana.request("handover:resolve", {"requestId": ack["id"],
                                                      "returnToBot": True})
    assert resolved["status"] == "resolved" and resolved["returnedToBot"] is True
    told = await carl.expect("handover:resolved")
    assert told["returnedToBot"] is True and told["closedAt"] is not None
    assert (await history_texts(switchboard))[-1] == (
        "system", "You are back with our virtual assistant.")
    assert (await error_of(ana, "handover:resolve", {"requestId": ack["id"]})).code == \
        "conflict"
    # the bot may ask for a human again
    assert (await carl.request("handover:request", {"leadId": "c1"}))["status"] == "pending"


async def test_agents_list_requests_with_filters_and_a_cursor(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    for i in range(5):
        await conversation(switchboard, f"c{i}", participants=(("carl", "customer"),))
        await switchboard.app.service("handover").request(
            "t1", f"c{i}", requested_by="carl", queue="billing" if i % 2 else None)
    page = await ana.request("handover:list", {"limit": 2})
    assert [r["conversationId"] for r in page["items"]] == ["c0", "c1"]
    page = await ana.request("handover:list", {"limit": 2, "after": page["nextAfter"]})
    assert [r["conversationId"] for r in page["items"]] == ["c2", "c3"]
    page = await ana.request("handover:list", {"limit": 2, "after": page["nextAfter"]})
    assert [r["conversationId"] for r in page["items"]] == ["c4"]
    assert page["nextAfter"] is None
    billing = await ana.request("handover:list", {"queue": "billing"})
    assert [r["conversationId"] for r in billing["items"]] == ["c1", "c3"]
    assert (await ana.request("handover:list", {"status": "accepted"}))["items"] == []
    refused = await error_of(ana, "handover:list", {"limit": 0})
    assert (refused.code, refused.field) == ("invalid_payload", "limit")
    carl = await switchboard.connect(user="carl", role="customer")
    assert (await error_of(carl, "handover:list", {})).code == "forbidden"


async def test_nothing_of_one_tenant_is_seen_or_changed_from_another(
        switchboard: Harness) -> None:
    outsider = await agent(switchboard, "ana", tenant="t2")
    _, ack = await requested(switchboard)
    for event, data in (("handover:accept", {"requestId": ack["id"]}),
                        ("handover:accept", {"leadId": "c1"}),
                        ("handover:cancel", {"requestId": ack["id"]}),
                        ("handover:resolve", {"requestId": ack["id"]}),
                        ("handover:transfer", {"requestId": ack["id"], "toAgentId": "ana"})):
        assert (await error_of(outsider, event, data)).code == "not_found", (event, data)
    assert (await outsider.request("handover:list", {}))["items"] == []
    assert (await error_of(outsider, "handover:request", {"leadId": "c1"})).code == \
        "not_found"
    await outsider.settle(1)
    assert outsider.received("handover:new_request") == []
    stored = await switchboard.app.service("handover").get("t1", ack["id"])
    assert stored.status == "pending" and stored.version == 1
    assert await switchboard.app.service("handover").get("t2", ack["id"]) is None


@pytest.mark.parametrize("handover_settings", [{"escalate_after": 0.0,
                                                "message_requested": "",
                                                "message_accepted": "Hi, I am {agent}!"}])
async def test_system_messages_follow_the_settings(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    _, ack = await requested(switchboard)
    await ana.request("handover:accept", {"requestId": ack["id"]})
    assert await history_texts(switchboard) == [("system", "Hi, I am ana!")]


@pytest.mark.parametrize("handover_settings", [{"escalate_after": 60.0, "max_escalations": 1}])
async def test_the_installed_plugin_escalates_on_the_mock_clock(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    _, ack = await requested(switchboard)
    assert ack["dueAt"] == pytest.approx(ack["createdAt"] + 60)
    await switchboard.advance(59)
    assert ana.received("handover:escalated") == []
    await switchboard.advance(2)
    escalated = await ana.expect("handover:escalated")
    assert escalated["escalationLevel"] == 1 and escalated["priority"] == "urgent"
    assert escalated["dueAt"] is None
