"""The seed frontends' documented client flows, replayed through the real
socket.io-client against compatibility profiles."""

from __future__ import annotations

from collections.abc import Mapping
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


async def backend(live: Harness, method: str, path: str, body: Any) -> Any:
    """The seed's backend calling Switchboard's HTTP API."""
    async with httpx.AsyncClient() as http:
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
    def switchboard_config(self) -> Config:
        return make_config({"auth": {"tenant_claim": "organization_id"},
                            "socketio": {"profiles": {"/": "pytake"}}})

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
            assert ack["args"][0]["rooms"] == ["lead:123", "conversation:lead:123"]
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
