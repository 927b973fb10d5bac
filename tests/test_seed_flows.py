"""The seed frontends' documented client flows, replayed through the real
socket.io-client against compatibility profiles."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from databases import database_url
from socketio_fixtures import (  # noqa: F401  (fixtures are found by name)
    TIMEOUT,
    NodeClients,
    node_fixture,
    node_modules_fixture,
)
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, Harness, make_config


async def backend(live: Harness, method: str, path: str, body: Any) -> Any:
    """The seed's backend calling Switchboard's HTTP API."""
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            response = await http.request(method, live.http_url(path), json=body,
                                          headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert response.status_code < 300, response.text
    return response.json()


async def event(node: NodeClients, client: str, name: str) -> Any:
    report = await node.expect(client, "event", event=name)
    return report["args"][0] if report["args"] else None


class TestPyTakeFlow:
    """Seed 001: FastAPI PyTake, `io(baseUrl, {path: '/socket.io', auth: {token},
    transports: ['websocket', 'polling']})`, tokens with `organization_id`."""

    @pytest.fixture
    def switchboard_config(self, database: str) -> Config:
        return make_config({"auth": {"tenant_claim": "organization_id"},
                            "socketio": {"profiles": {"/": "pytake"}},
                            "store": {"url": database}})

    async def test_agent_chat_flow(self, switchboard_live: Harness, node: NodeClients) -> None:
        live = switchboard_live
        await backend(live, "POST", "/api/v1/conversations", {
            "tenant": "org-1", "id": "5f0c8d6e-2b1c-4b7e-9a51-3f4f4a2f9c11",
            "participants": [{"userId": "agent-1", "role": "agent"},
                             {"userId": "contact-9", "role": "customer"}]})
        conv = "5f0c8d6e-2b1c-4b7e-9a51-3f4f4a2f9c11"
        options: Mapping[str, Any] = {"path": "/socket.io",
                                      "transports": ["websocket", "polling"]}
        for name, user, role in (("agent", "agent-1", "agent"),
                                 ("viewer", "agent-2", "agent")):
            await node.connected(name, live.token(user, "org-1", role), **options)
            assert await event(node, name, "connected") == {
                "message": "Connected to PyTake WebSocket", "user_id": user}
            await node.emit(name, "join_conversation", {"conversation_id": conv})
            assert await event(node, name, "joined_conversation") == {
                "conversation_id": conv, "message": f"Joined conversation {conv}"}

        # a WhatsApp message arrives at the backend, which stores it through the API
        stored = await backend(live, "POST", f"/api/v1/conversations/{conv}/messages", {
            "tenant": "org-1", "senderId": "contact-9", "senderRole": "customer",
            "clientId": "wamid.HBgL", "type": "text", "content": {"text": "Oi, preciso de ajuda"}})
        for name in ("agent", "viewer"):
            message = await event(node, name, "message:new")
            assert message["id"] == str(stored["id"]) and message["conversation_id"] == conv
            assert message["direction"] == "inbound" and message["sender_type"] == "contact"
            assert message["message_type"] == "text"
            assert message["content"] == {"text": "Oi, preciso de ajuda"}
            assert message["whatsapp_message_id"] == "wamid.HBgL"

        await node.emit("agent", "typing_start", {"conversation_id": conv})
        assert await event(node, "viewer", "user_typing") == {
            "conversation_id": conv, "user_id": "agent-1", "typing": True}
        await node.emit("agent", "typing_stop", {"conversation_id": conv})
        assert (await event(node, "viewer", "user_typing"))["typing"] is False
        assert node.received("agent", "event", event="user_typing") == []

        await node.call("agent", "message:read", {"conversationId": conv,
                                                  "messageId": stored["id"]})
        status = await event(node, "viewer", "message:status")
        assert status["message_id"] == str(stored["id"]) and status["status"] == "read"
        assert "timestamp" in status

        await node.emit("agent", "ping", {})
        assert "timestamp" in await event(node, "agent", "pong")

        await node.emit("agent", "join_conversation", {"conversation_id": "not-mine"})
        assert "not-mine" in (await event(node, "agent", "error"))["message"]

        await node.emit("agent", "leave_conversation", {"conversation_id": conv})
        assert await event(node, "agent", "left_conversation") == {"conversation_id": conv}

    async def test_bad_token_is_refused_like_the_seed_server(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        await node.connect("x", "not-a-jwt", path="/socket.io")
        refused = await node.expect("x", "connect_error")
        assert refused["message"] == "Unauthorized"


class TestNextCRMFlow:
    """Seed 000: Next.js CRM, chat on a lead, typing, notifications, presence."""

    @pytest.fixture
    def switchboard_config(self) -> Config:
        return make_config({"socketio": {"profiles": {"/": "nextcrm"}}})

    async def test_consultant_chat_typing_and_notification_flow(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        live = switchboard_live
        # the CRM's backend creates the lead (its conversation comes with it)
        await backend(live, "POST", "/api/v1/leads", {
            "tenant": "crm", "id": "123", "title": "Lead 123", "ownerId": "consultant-1"})
        for name, user in (("consultant", "consultant-1"), ("manager", "manager-1")):
            await node.connected(name, live.token(user, "crm", "agent"))
            await node.emit(name, "authenticate", {"userId": user, "role": "consultant"})
            assert (await event(node, name, "authenticated"))["userId"] == user
            ack = await node.call(name, "lead:join", "123")
            assert ack["args"][0]["rooms"] == ["lead:123", "conversation:123"]
        online = [(await event(node, "consultant", "user:online"))["userId"] for _ in range(2)]
        assert online == ["consultant-1", "manager-1"]

        await node.emit("consultant", "chat:message",
                        {"leadId": "123", "message": "Olá!", "sender": "consultant-1",
                         "senderType": "consultant"})
        message = await event(node, "manager", "chat:new_message")
        assert message["leadId"] == "123" and message["message"] == "Olá!"
        assert message["sender"] == "consultant-1"

        await node.emit("consultant", "chat:typing",
                        {"leadId": "123", "userId": "consultant-1", "isTyping": True})
        assert await event(node, "manager", "chat:user_typing") == {
            "leadId": "123", "userId": "consultant-1", "isTyping": True}

        # the backend's emitToUser('user-123', 'notification:new', {...})
        await backend(live, "POST", "/api/v1/notifications", {
            "tenant": "crm", "user": "manager-1", "title": "Novo Lead",
            "message": "Lead qualificado aguardando", "type": "info",
            "link": "/crm/lead/456"})
        notification = await event(node, "manager", "notification:new")
        assert notification["title"] == "Novo Lead" and notification["type"] == "info"
        assert notification["link"] == "/crm/lead/456"

        await node.call("consultant", "presence:update", {"status": "busy"})
        updated = await event(node, "manager", "presence:user_updated")
        assert updated["userId"] == "consultant-1" and updated["status"] == "busy"


# -- seed 000's lead pipeline, end to end, on SQLite and PostgreSQL ---------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield url


async def ack_of(node: NodeClients, client: str, name: str, *args: Any) -> Any:
    """Emit with an ack callback; its first argument."""
    report = await node.call(client, name, *args)
    return report["args"][0] if report["args"] else None


class TestNextCRMLeadFlow:
    """Seed 000's flows on the pipeline's leads: two consultants and the
    lead's customer at once (and another customer who must see nothing)."""

    LEAD = "lead-123"

    @pytest.fixture
    def switchboard_config(self, database: str) -> Config:
        return make_config({"socketio": {"profiles": {"/": "nextcrm"}},
                            "store": {"url": database}})

    async def open(self, live: Harness, node: NodeClients) -> None:
        await backend(live, "POST", "/api/v1/leads", {
            "tenant": "crm", "id": self.LEAD, "title": "Joana - plano anual",
            "customerId": "cliente-1", "ownerId": "consultor-1", "value": 1200})
        for name, user, role in (("c1", "consultor-1", "agent"), ("c2", "consultor-2", "agent"),
                                 ("customer", "cliente-1", "customer"),
                                 ("stranger", "cliente-2", "customer")):
            await node.connected(name, live.token(user, "crm", role))
            await node.emit(name, "authenticate", {"userId": user, "role": role})
            assert (await event(node, name, "authenticated"))["userId"] == user
        for name in ("c1", "c2", "customer"):
            joined = await ack_of(node, name, "lead:join", self.LEAD)
            assert joined["rooms"] == [f"lead:{self.LEAD}", f"conversation:{self.LEAD}"]
        refused = await ack_of(node, "stranger", "lead:join", self.LEAD)
        assert refused["error"]["code"] == "forbidden"

    async def test_chat_goes_both_ways_between_the_customer_and_the_consultants(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        await self.open(switchboard_live, node)
        await node.emit("customer", "chat:message", {"leadId": self.LEAD,
                                                     "message": "Qual o prazo?"})
        for name in ("c1", "c2"):
            message = await event(node, name, "chat:new_message")
            assert message["leadId"] == self.LEAD and message["message"] == "Qual o prazo?"
            assert message["sender"] == "cliente-1" and message["senderType"] == "customer"
        await node.emit("c1", "chat:message", {"leadId": self.LEAD, "message": "Em 5 dias.",
                                               "sender": "consultor-1",
                                               "senderType": "consultant"})
        reply = await event(node, "customer", "chat:new_message")
        assert reply["message"] == "Em 5 dias." and reply["sender"] == "consultor-1"
        await node.emit("customer", "chat:typing", {"leadId": self.LEAD,
                                                    "userId": "cliente-1", "isTyping": True})
        assert await event(node, "c2", "chat:user_typing") == {
            "leadId": self.LEAD, "userId": "cliente-1", "isTyping": True}
        # the lead's chat history is stored (a consultant who reloads sees it)
        history = await backend(switchboard_live, "GET",
                                f"/api/v1/conversations/{self.LEAD}/messages?tenant=crm",
                                None)
        assert [m["content"]["text"] for m in history["messages"]] == [
            "Qual o prazo?", "Em 5 dias."]
        assert node.received("stranger", "event", event="chat:new_message") == []

    async def test_lead_updates_and_racing_status_changes_reach_every_view_once(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        live = switchboard_live
        await self.open(live, node)
        await node.emit("c2", "lead:update", {"leadId": self.LEAD, "field": "value",
                                              "value": 5000})
        for name in ("c1", "c2", "customer"):  # its author's views too
            updated = await event(node, name, "lead:updated")
            assert (updated["leadId"], updated["field"], updated["value"]) == (
                self.LEAD, "value", 5000.0)
            assert updated["updatedBy"] == "consultor-2"
        await node.emit("c1", "lead:update", {"leadId": self.LEAD, "field": "email",
                                              "value": "joana@example.com"})
        assert (await event(node, "c2", "lead:updated"))["changes"] == {
            "contact": {"email": "joana@example.com"}}

        # two consultants drag the card at once on their kanbans
        await node.emit("c1", "lead:status_change", {"leadId": self.LEAD,
                                                     "newStatus": "qualificacao"})
        await node.emit("c2", "lead:status_change", {"leadId": self.LEAD,
                                                     "newStatus": "proposta"})
        seen: dict[str, list[tuple[int, str]]] = {}
        for name in ("c1", "c2", "customer"):
            changes = [await event(node, name, "lead:status_changed") for _ in range(2)]
            seen[name] = [(c["version"], c["newStatus"]) for c in changes]
            assert {c["changedBy"] for c in changes} == {"consultor-1", "consultor-2"}
        assert seen["c1"] == seen["c2"] == seen["customer"]  # one order for everyone
        assert [v for v, _ in seen["c1"]] == sorted(v for v, _ in seen["c1"])
        lead = await backend(live, "GET", f"/api/v1/leads/{self.LEAD}?tenant=crm", None)
        assert lead["stageId"] == seen["c1"][-1][1]  # the last change shown is the state
        # a last change as a marker: events arrive in order, so a duplicate of
        # the status changes would have arrived before it
        await node.emit("c1", "lead:update", {"leadId": self.LEAD, "field": "title",
                                              "value": "Joana"})
        for name in ("c1", "c2", "customer"):
            while (await event(node, name, "lead:updated"))["field"] != "title":
                pass
            assert node.received(name, "event", event="lead:status_changed") == []
        assert node.received("stranger", "event", event="lead:status_changed") == []
        assert node.received("stranger", "event", event="lead:updated") == []

        bad = await ack_of(node, "c1", "lead:status_change", {"leadId": self.LEAD,
                                                              "newStatus": "nope"})
        assert bad["error"]["code"] == "invalid_payload"
        assert bad["error"]["field"] == "newStatus"
        refused = await ack_of(node, "customer", "lead:update",
                               {"leadId": self.LEAD, "field": "value", "value": 1})
        assert refused["error"]["code"] == "forbidden"
        missing = await ack_of(node, "c1", "lead:update",
                               {"leadId": "lead-999", "field": "value", "value": 1})
        assert missing["error"]["code"] == "not_found"

    async def test_the_customer_asks_for_a_consultant_and_one_accepts(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        """Seed 000's handover on a pipeline lead: the CRM's own events, through
        the profile unchanged, on the lead's conversation."""
        await self.open(switchboard_live, node)
        requested = await ack_of(node, "customer", "handover:request", {
            "leadId": self.LEAD, "reason": "Dúvida técnica", "priority": "high"})
        assert requested["leadId"] == self.LEAD and requested["status"] == "pending"
        for name in ("c1", "c2"):
            announced = await event(node, name, "handover:new_request")
            assert (announced["leadId"], announced["reason"]) == (self.LEAD, "Dúvida técnica")
        accepted = await ack_of(node, "c2", "handover:accept",
                                {"leadId": self.LEAD, "consultantId": "consultor-2"})
        assert accepted["status"] == "accepted" and accepted["consultantId"] == "consultor-2"
        told = await event(node, "customer", "handover:accepted")
        assert told["leadId"] == self.LEAD and told["consultantId"] == "consultor-2"
        assert node.received("stranger", "event", event="handover:new_request") == []

    async def test_a_consultant_who_leaves_the_lead_hears_no_more_of_its_chat(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        await self.open(switchboard_live, node)
        left = await ack_of(node, "c2", "lead:leave", self.LEAD)
        assert left == {"leadId": self.LEAD}
        await node.emit("customer", "chat:message", {"leadId": self.LEAD, "message": "oi"})
        assert (await event(node, "c1", "chat:new_message"))["message"] == "oi"
        await node.emit("customer", "chat:message", {"leadId": self.LEAD, "message": "2"})
        assert (await event(node, "c1", "chat:new_message"))["message"] == "2"
        assert node.received("c2", "event", event="chat:new_message") == []


async def race(node: NodeClients, calls: list[tuple[str, str, Any]]) -> list[tuple[str, int]]:
    """Emit every call (with an ack) back to back, without waiting for any
    answer: they race on the server. ``(client, ack ref)`` of each."""
    sent = []
    for n, (client, name, data) in enumerate(calls, 100_000):
        await node.send(op="emit", client=client, event=name, args=[data], ack=True, ref=n,
                        timeout=int(TIMEOUT * 1000))
        sent.append((client, n))
    return sent


class TestKanbanRaces:
    """The canonical pipeline events through socket.io-client: two consultants
    with the same board open, moves racing each other."""

    @pytest.fixture
    def switchboard_config(self, database: str) -> Config:
        return make_config({"store": {"url": database}})

    async def board(self, live: Harness, node: NodeClients) -> None:
        for name, user in (("ana", "ana"), ("bia", "bia")):
            await node.connected(name, live.token(user, "t1", "agent"))
            board = await ack_of(node, name, "pipeline:join", {})
            assert [s["id"] for s in board["stages"]][:2] == ["novo", "qualificacao"]

    async def test_racing_moves_of_one_card_one_wins_the_other_gets_its_state(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        live = switchboard_live
        await self.board(live, node)
        lead = await backend(live, "POST", "/api/v1/leads", {"tenant": "t1", "title": "ACME"})
        for name in ("ana", "bia"):
            assert (await event(node, name, "lead:created"))["leadId"] == lead["id"]
        acks = [(await node.expect(name, "ack", ref=ref))["args"][0]
                for name, ref in await race(node, [
                    ("ana", "lead:move", {"leadId": lead["id"], "stageId": "proposta",
                                          "version": 1}),
                    ("bia", "lead:move", {"leadId": lead["id"], "stageId": "ganho",
                                          "version": 1})])]
        lost = [a for a in acks if "error" in a]
        won = [a for a in acks if "error" not in a]
        assert len(lost) == 1 and len(won) == 1
        assert lost[0]["error"]["code"] == "conflict"
        assert lost[0]["error"]["lead"]["stageId"] == won[0]["stageId"]
        for name in ("ana", "bia"):
            moved = await event(node, name, "lead:moved")
            assert (moved["stageId"], moved["version"]) == (won[0]["stageId"], 2)

    async def test_cards_dropped_at_once_end_in_one_order_on_every_board(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        live = switchboard_live
        await self.board(live, node)
        anchor = await backend(live, "POST", "/api/v1/leads",
                               {"tenant": "t1", "title": "anchor", "stageId": "proposta"})
        cards = [await backend(live, "POST", "/api/v1/leads",
                               {"tenant": "t1", "title": f"card{n}"}) for n in range(8)]
        for name in ("ana", "bia"):
            for _ in range(9):
                await event(node, name, "lead:created")
        sent = await race(node, [
            ("ana" if n % 2 else "bia", "lead:move",
             {"leadId": card["id"], "stageId": "proposta", "afterId": anchor["id"],
              "version": 1}) for n, card in enumerate(cards)])
        for name, ref in sent:
            assert "error" not in (await node.expect(name, "ack", ref=ref))["args"][0]
        boards = {}
        for name in ("ana", "bia"):
            ranks = {}
            for _ in cards:
                moved = await event(node, name, "lead:moved")
                ranks[moved["leadId"]] = moved["rank"]
            boards[name] = sorted(ranks, key=lambda i: (ranks[i], i))
        assert boards["ana"] == boards["bia"]
        page = await backend(live, "GET",
                             "/api/v1/pipelines/default/stages/proposta/leads?tenant=t1", None)
        assert [lead["id"] for lead in page["leads"]] == [anchor["id"], *boards["ana"]]
