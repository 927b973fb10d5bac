"""The handover flow through the reference client, socket.io-client v4 (npm) in
Node, against the server on a real port: a customer asks for a human, two
agents race to accept, the loser is told, the customer sees the system
messages in the history. Canonical events, and the Next.js CRM's frontend
through its profile (which needs no translation for them)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from socketio_fixtures import (  # noqa: F401  (fixtures are found by name)
    TIMEOUT,
    NodeClients,
    node_fixture,
    node_modules_fixture,
)
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, Harness, make_config


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"socketio": {"namespaces": ["/", "/crm"],
                                     "profiles": {"/crm": "nextcrm"}},
                        "plugins": {"handover": {"escalate_after": 0.0}}})


async def backend(live: Harness, method: str, path: str, body: Any) -> Any:
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            response = await http.request(method, live.http_url(path), json=body,
                                          headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert response.status_code < 300, response.text
    return response.json()


async def event(node: NodeClients, client: str, name: str) -> Any:
    report = await node.expect(client, "event", event=name)
    return report["args"][0] if report["args"] else None


async def race(node: NodeClients, event_name: str,
               calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Emit ``event_name`` from several clients at once (each with an ack);
    their first ack arguments, by client."""
    refs = {client: 10_000 + i for i, client in enumerate(calls)}
    for client, payload in calls.items():
        await node.send(op="emit", client=client, event=event_name, args=[payload], ack=True,
                        ref=refs[client], timeout=int(TIMEOUT * 1000))
    acks = {}
    for client, ref in refs.items():
        report = await node.expect(client, "ack", ref=ref)
        acks[client] = report["args"][0]
    return acks


@pytest.mark.parametrize("namespace", ["/", "/crm"])
async def test_a_customer_asks_two_agents_race_one_wins(
        switchboard_live: Harness, node: NodeClients, namespace: str) -> None:
    live = switchboard_live
    await backend(live, "POST", "/api/v1/conversations", {
        "tenant": "crm", "id": "lead-7", "participants": [{"userId": "carl"}]})
    for name, role in (("carl", "customer"), ("ana", "agent"), ("bob", "agent")):
        await node.connected(name, live.token(name, "crm", role), namespace=namespace)
    joined = await node.call("carl", "conversation:join", {"conversationId": "lead-7"})
    assert joined["args"][0]["success"] is True

    ack = await node.call("carl", "handover:request",
                          {"leadId": "lead-7", "reason": "Dúvida técnica", "priority": "high"})
    request = ack["args"][0]
    assert request["status"] == "pending" and request["leadId"] == "lead-7"
    for agent in ("ana", "bob"):
        announced = await event(node, agent, "handover:new_request")
        assert announced["id"] == request["id"] and announced["priority"] == "high"
        assert announced["reason"] == "Dúvida técnica"

    acks = await race(node, "handover:accept", {
        "ana": {"leadId": "lead-7", "consultantId": "ana"},
        "bob": {"leadId": "lead-7", "consultantId": "bob"}})
    winners = [name for name, answer in acks.items() if "error" not in answer]
    assert len(winners) == 1
    winner = winners[0]
    loser = "bob" if winner == "ana" else "ana"
    assert acks[winner]["status"] == "accepted" and acks[winner]["consultantId"] == winner
    refused = acks[loser]["error"]
    assert refused["code"] == "conflict" and refused["request"]["assignee"] == winner
    taken = await event(node, loser, "handover:taken")
    assert taken["id"] == request["id"] and taken["assignee"] == winner
    accepted = await event(node, "carl", "handover:accepted")
    assert accepted["consultantId"] == winner and accepted["leadId"] == "lead-7"

    history = await node.call("carl", "message:history", {"conversationId": "lead-7"})
    texts = [(m["senderRole"], m["content"]["text"]) for m in history["args"][0]["messages"]]
    assert texts == [("system", "An agent will be with you shortly."),
                     ("system", f"{winner} joined the conversation.")]

    ack = await node.call("carl", "handover:accept", {"leadId": "lead-7"})
    assert ack["args"][0]["error"]["code"] == "forbidden"
    ack = await node.call(winner, "handover:resolve", {"leadId": "lead-7",
                                                       "returnToBot": True})
    assert ack["args"][0]["status"] == "resolved"
    resolved = await event(node, "carl", "handover:resolved")
    assert resolved["returnedToBot"] is True
