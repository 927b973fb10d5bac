"""Compatibility profiles: the seed frontends' event names over the canonical plugins."""

from __future__ import annotations

from typing import Any

import pytest
from switchboard.core.config import Config
from switchboard.testing import Harness, TestClient, make_config


async def create_conversation(switchboard: Harness, conv_id: str,
                              participants: tuple[str, ...] = ("carl", "ann")) -> None:
    response = await switchboard.http().post(
        "/api/v1/conversations", headers=switchboard.api_headers(),
        json={"tenant": "t1", "id": conv_id,
              "participants": [{"userId": p} for p in participants]})
    assert response.status_code == 201


async def post_message(switchboard: Harness, conv_id: str, sender: str, body: str,
                       role: str = "customer") -> dict[str, Any]:
    response = await switchboard.http().post(
        f"/api/v1/conversations/{conv_id}/messages", headers=switchboard.api_headers(),
        json={"tenant": "t1", "senderId": sender, "senderRole": role, "type": "text",
              "content": {"text": body}})
    assert response.status_code == 201
    message: dict[str, Any] = await response.get_json()
    return message


class TestPyTake:
    @pytest.fixture
    def switchboard_config(self) -> Config:
        return make_config({"server": {"ws_profile": "pytake"}})

    async def pytake(self, switchboard: Harness, user: str, role: str = "agent") -> TestClient:
        client = await switchboard.connect(user=user, role=role)
        assert await client.expect("connected") == {
            "message": "Connected to PyTake WebSocket", "user_id": user}
        return client

    async def test_join_conversation_is_answered_joined_conversation(
            self, switchboard: Harness) -> None:
        await create_conversation(switchboard, "c-1")
        client = await self.pytake(switchboard, "ann")
        await client.emit("join_conversation", {"conversation_id": "c-1"})
        assert await client.expect("joined_conversation") == {
            "conversation_id": "c-1", "message": "Joined conversation c-1"}
        await client.emit("leave_conversation", {"conversation_id": "c-1"})
        assert await client.expect("left_conversation") == {"conversation_id": "c-1"}

    async def test_errors_are_error_events_with_a_message(self, switchboard: Harness) -> None:
        client = await self.pytake(switchboard, "ann")
        await client.emit("join_conversation", {})
        assert (await client.expect("error"))["message"] == "conversation_id required"
        await client.emit("join_conversation", {"conversation_id": "nope"})
        assert "nope" in (await client.expect("error"))["message"]

    async def test_typing_is_broadcast_as_user_typing(self, switchboard: Harness) -> None:
        await create_conversation(switchboard, "c-1")
        ann = await self.pytake(switchboard, "ann")
        carl = await self.pytake(switchboard, "carl", role="customer")
        for client in (ann, carl):
            await client.emit("join_conversation", {"conversation_id": "c-1"})
            await client.expect("joined_conversation")
        await carl.emit("typing_start", {"conversation_id": "c-1"})
        assert await ann.expect("user_typing") == {
            "conversation_id": "c-1", "user_id": "carl", "typing": True}
        await carl.emit("typing_stop", {"conversation_id": "c-1"})
        assert (await ann.expect("user_typing"))["typing"] is False

    async def test_new_messages_and_status_arrive_in_pytake_shape(
            self, switchboard: Harness) -> None:
        await create_conversation(switchboard, "c-1")
        ann = await self.pytake(switchboard, "ann")
        await ann.emit("join_conversation", {"conversation_id": "c-1"})
        await ann.expect("joined_conversation")
        stored = await post_message(switchboard, "c-1", "carl", "olá")
        message = await ann.expect("message:new")
        assert message["id"] == str(stored["id"])
        assert message["conversation_id"] == "c-1"
        assert message["direction"] == "inbound" and message["sender_type"] == "contact"
        assert message["message_type"] == "text" and message["content"] == {"text": "olá"}
        assert message["status"] == "sent" and message["created_at"].endswith("+00:00")
        await ann.request("message:read", {"conversationId": "c-1", "messageId": stored["id"]})
        status = await ann.expect("message:status")
        assert status["message_id"] == str(stored["id"]) and status["status"] == "read"


class TestNextCRM:
    @pytest.fixture
    def switchboard_config(self) -> Config:
        return make_config({"server": {"ws_profile": "nextcrm"}})

    async def test_lead_chat_round_trip(self, switchboard: Harness) -> None:
        await create_conversation(switchboard, "123", participants=("consultant-1",))
        consultant = await switchboard.connect(user="consultant-1", role="agent")
        manager = await switchboard.connect(user="manager-1", role="agent")
        for client in (consultant, manager):
            await client.request("lead:join", "123")
        assert "conversation:123" in {
            room for s in switchboard.server.hub.sessions.values() for room in s.rooms}
        ack = await consultant.request("chat:message",
                                       {"leadId": "123", "message": "Olá!",
                                        "sender": "consultant-1"})
        assert ack["content"] == {"text": "Olá!"}
        message = await manager.expect("chat:new_message")
        assert message["leadId"] == "123" and message["message"] == "Olá!"
        assert message["sender"] == "consultant-1"

    async def test_messages_sent_back_to_back_are_acked_and_delivered_in_order(
            self, switchboard: Harness) -> None:
        """The profile's translation waits for each stored message without holding
        up the next one: acks come in order, each the stored message."""
        await create_conversation(switchboard, "123", participants=("consultant-1",))
        consultant = await switchboard.connect(user="consultant-1", role="agent")
        manager = await switchboard.connect(user="manager-1", role="agent")
        for client in (consultant, manager):
            await client.request("lead:join", "123")
        for n in range(5):
            await consultant.emit("chat:message", {"leadId": "123", "message": f"m{n}",
                                                   "sender": "consultant-1"}, id=n)
        acks = [(await consultant._wait(lambda f, n=n: f.get("id") == n, 10))["data"]
                for n in range(5)]
        assert [a["content"]["text"] for a in acks] == [f"m{n}" for n in range(5)]
        assert [a["id"] for a in acks] == sorted(a["id"] for a in acks)
        received = [(await manager.expect("chat:new_message"))["message"] for _ in range(5)]
        assert received == [f"m{n}" for n in range(5)]

    async def test_typing_and_notifications_keep_their_names(self, switchboard: Harness) -> None:
        await create_conversation(switchboard, "123", participants=("consultant-1",))
        consultant = await switchboard.connect(user="consultant-1", role="agent")
        manager = await switchboard.connect(user="manager-1", role="agent")
        for client in (consultant, manager):
            await client.request("lead:join", "123")
        await consultant.emit("chat:typing",
                              {"leadId": "123", "userId": "consultant-1", "isTyping": True})
        assert await manager.expect("chat:user_typing") == {
            "leadId": "123", "userId": "consultant-1", "isTyping": True}
        response = await switchboard.http().post(
            "/api/v1/notifications", headers=switchboard.api_headers(),
            json={"tenant": "t1", "user": "manager-1", "title": "Novo Lead",
                  "message": "Lead qualificado aguardando", "type": "info",
                  "link": "/crm/lead/456"})
        assert response.status_code == 201
        notification = await manager.expect("notification:new")
        assert notification["title"] == "Novo Lead" and notification["link"] == "/crm/lead/456"

    async def test_authenticate_must_match_the_token(self, switchboard: Harness) -> None:
        client = await switchboard.connect(user="consultant-1", role="agent")
        await client.emit("authenticate", {"userId": "consultant-1", "role": "consultant"})
        assert (await client.expect("authenticated"))["userId"] == "consultant-1"
        await client.emit("authenticate", {"userId": "someone-else", "role": "admin"})
        assert (await client.expect("error"))["message"] == "userId does not match the token"


async def test_an_unknown_profile_in_config_names_the_key() -> None:
    from switchboard.core.config import ConfigError
    from switchboard.core.server import Server

    with pytest.raises(ConfigError) as error:
        Server(make_config({"server": {"ws_profile": "nope"}}))
    assert error.value.key == "server.ws_profile"


# -- a backend publishing in a profile's own shapes, and malformed payloads ---------

PYTAKE_MESSAGE = {  # PyTake's message_dict, as its backend builds it
    "id": "0f5c6d1e-3b1a-4c8e-9f47-2a7d0c1b9e55",
    "conversation_id": "7d3e9a10-52b4-4f0e-8a61-3c2f4e5d6b7a",
    "direction": "inbound", "sender_type": "contact", "message_type": "text",
    "content": {"text": "Oi"}, "status": "received",
    "whatsapp_message_id": "wamid.HBgM", "created_at": "2026-11-29T12:00:00+00:00",
    "sent_at": None,
}


async def emit(switchboard: Harness, body: Any) -> Any:
    return await switchboard.http().post("/api/v1/emit", headers=switchboard.api_headers(),
                                         json=body)


class TestPyTakeBackendEmits:
    @pytest.fixture
    def switchboard_config(self) -> Config:
        return make_config({"server": {"ws_profile": "pytake"},
                            "plugins": {"chat": {"unknown_conversations": "defer"}}})

    async def agent_in_room(self, switchboard: Harness, room: str) -> TestClient:
        client = await switchboard.connect(user="ann", role="agent")
        await client.expect("connected")
        await switchboard.app.join(
            next(iter(switchboard.app.user_sessions("t1", "ann"))), room)
        return client

    async def test_pytake_own_message_shape_is_delivered_as_it_is(
            self, switchboard: Harness) -> None:
        room = f"conversation:{PYTAKE_MESSAGE['conversation_id']}"
        ann = await self.agent_in_room(switchboard, room)
        response = await emit(switchboard, {"tenant": "t1", "room": room,
                                            "event": "message:new", "data": PYTAKE_MESSAGE})
        assert response.status_code == 202
        assert await ann.expect("message:new") == PYTAKE_MESSAGE  # the backend's UUIDs kept

    async def test_pytake_own_status_shape_is_delivered_as_it_is(
            self, switchboard: Harness) -> None:
        ann = await self.agent_in_room(switchboard, "conversation:c-9")
        status = {"message_id": "0f5c6d1e", "status": "read",
                  "timestamp": "2026-11-29T12:00:01+00:00"}
        response = await emit(switchboard, {"tenant": "t1", "room": "conversation:c-9",
                                            "event": "message:status", "data": status})
        assert response.status_code == 202
        assert await ann.expect("message:status") == status

    async def test_the_canonical_shape_is_still_translated(self, switchboard: Harness) -> None:
        ann = await self.agent_in_room(switchboard, "conversation:c-9")
        response = await emit(switchboard, {
            "tenant": "t1", "room": "conversation:c-9", "event": "message:new",
            "data": {"id": 5, "conversationId": "c-9", "senderId": "bot-1",
                     "senderRole": "bot", "type": "text", "content": {"text": "hi"},
                     "createdAt": 1.0}})
        assert response.status_code == 202
        message = await ann.expect("message:new")
        assert message["id"] == "5" and message["conversation_id"] == "c-9"
        assert message["sender_type"] == "bot" and message["created_at"].startswith("1970")

    @pytest.mark.parametrize(("data", "field"), [
        ({"id": "m1"}, "data.conversationId"),
        ({"id": "m1", "conversation_id": 5.5}, "data.conversation_id"),
        ({"conversation_id": "c-1", "content": {}}, "data.id"),
        ({"id": "m1", "conversation_id": "c-1", "content": "text"}, "data.content"),
        ({"id": "m1", "conversationId": "c-1", "senderRole": ["agent"]}, "data.senderRole"),
        ({"id": "m1", "conversationId": "c-1", "createdAt": 1e300}, "data.createdAt"),
        ("just text", "data"),
    ])
    async def test_a_message_that_fits_neither_shape_is_a_400_naming_the_field(
            self, switchboard: Harness, data: Any, field: str) -> None:
        ann = await self.agent_in_room(switchboard, "conversation:c-1")
        response = await emit(switchboard, {"tenant": "t1", "room": "conversation:c-1",
                                            "event": "message:new", "data": data})
        assert response.status_code == 400
        body = await response.get_json()
        assert body["code"] == "invalid_payload" and body["field"] == field
        # nothing of the refused request was published; the next one is
        await emit(switchboard, {"tenant": "t1", "room": "conversation:c-1",
                                 "event": "message:new", "data": PYTAKE_MESSAGE})
        assert (await ann.expect("message:new"))["id"] == PYTAKE_MESSAGE["id"]

    async def test_a_malformed_status_in_a_batch_names_its_index(
            self, switchboard: Harness) -> None:
        response = await emit(switchboard, [
            {"tenant": "t1", "event": "message:status",
             "data": {"message_id": "m1", "status": "read"}},
            {"tenant": "t1", "event": "message:status", "data": {"message_id": "m1"}}])
        assert response.status_code == 400
        assert (await response.get_json())["field"] == "1.data.status"

    async def test_a_plugin_publishing_a_malformed_payload_crashes_nothing(
            self, switchboard: Harness) -> None:
        """Published in-process (no emit route to refuse it): the profiled
        members do not get it, the publisher does not fail, the next arrives."""
        ann = await self.agent_in_room(switchboard, "conversation:c-1")
        await switchboard.app.publish("t1", "conversation:c-1", "message:new", {"id": 1})
        await switchboard.app.publish("t1", "conversation:c-1", "message:new", PYTAKE_MESSAGE)
        assert (await ann.expect("message:new"))["id"] == PYTAKE_MESSAGE["id"]


def test_nextcrm_leaves_handover_events_as_they_are() -> None:
    """The handover plugin's canonical events are the CRM's own names: the
    profile translates none of them, in either direction."""
    from switchboard.plugins.compat import NEXTCRM

    assert not [name for name in NEXTCRM.inbound if name.startswith("handover:")]
    request = {"leadId": "lead-123", "reason": "Dúvida técnica", "priority": "high"}
    for event in ("handover:new_request", "handover:accepted", "handover:taken"):
        assert NEXTCRM.translate_out(event, request) == (event, request)
