"""The chat plugin's HTTP routes (API key): thin handlers over the :class:`Chat` engine."""

from __future__ import annotations

from typing import Any

import attrs
from quart import Blueprint, request
from switchboard.core import (
    MAX_ROW_ID,
    ChatParticipant,
    ClientError,
    api_key_tenant,
    check_identifier,
    documented,
    error_response,
    read_json,
    require_api_key,
    structure_body,
)
from switchboard.core.apidocs import IDENTIFIER

from .payloads import AddParticipant, CreateConversation, PostMessage
from .service import Chat

TENANT = {"tenant": IDENTIFIER}


def blueprint(chat: Chat) -> Blueprint:
    bp = Blueprint("chat", __name__)

    @bp.post("/api/v1/conversations")
    @documented("Create a conversation with its participants", body=CreateConversation,
                responses={201: "`{id, tenant, title, participants}`",
                           409: "a conversation of that id exists"})
    @require_api_key
    async def create() -> Any:
        body = structure_body(await read_json(), CreateConversation)
        tenant = api_key_tenant(body.tenant)
        conversation, created = await chat.make_conversation(
            tenant, body.id, body.title,
            [ChatParticipant(p.userId, p.role) for p in body.participants])
        if not created:
            return error_response(409, "conflict", f"conversation {conversation.id!r} exists")
        return {"id": conversation.id, "tenant": tenant, "title": body.title,
                "participants": [attrs.asdict(p) for p in body.participants]}, 201

    @bp.get("/api/v1/conversations/<conv_id>")
    @documented("A conversation and its participants", query=TENANT,
                responses={200: "`{id, tenant, title, participants}`",
                           404: "no such conversation"})
    @require_api_key
    async def show(conv_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        conversation = await chat.get_conversation(tenant, conv_id)
        if conversation is None:
            return error_response(404, "not_found", f"no conversation {conv_id!r}")
        return {"id": conv_id, "tenant": tenant, "title": conversation.title,
                "participants": [{"userId": p.user_id, "role": p.role}
                                 for p in conversation.participants]}

    @bp.post("/api/v1/conversations/<conv_id>/participants")
    @documented("Add a participant (who then receives its messages)", body=AddParticipant,
                responses={201: "`{userId, role}`", 404: "no such conversation"})
    @require_api_key
    async def add_participant(conv_id: str) -> Any:
        body = structure_body(await read_json(), AddParticipant)
        tenant = api_key_tenant(body.tenant)
        await chat.add_participant(tenant, conv_id, body.userId, body.role)
        return {"userId": body.userId, "role": body.role}, 201

    @bp.delete("/api/v1/conversations/<conv_id>/participants/<user_id>")
    @documented("Remove a participant", query=TENANT,
                responses={204: "removed", 404: "not a participant"})
    @require_api_key
    async def remove_participant(conv_id: str, user_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        if (problem := check_identifier(user_id)) is not None:
            raise ClientError("invalid_payload", f"userId: {problem}", field="userId")
        if not await chat.remove_participant(tenant, conv_id, user_id):
            return error_response(404, "not_found",
                                  f"{user_id!r} is not a participant of {conv_id!r}")
        return "", 204

    @bp.post("/api/v1/conversations/<conv_id>/messages")
    @documented("Post a message as a participant (a resend of a clientId answers the "
                "stored one)", body=PostMessage,
                responses={201: "the stored message", 200: "the message stored before "
                           "with that clientId", 404: "no such conversation"})
    @require_api_key
    async def post_message(conv_id: str) -> Any:
        body = structure_body(await read_json(), PostMessage)
        tenant = api_key_tenant(body.tenant)
        stored = await chat.post(tenant, conv_id, sender_id=body.senderId,
                                 sender_role=body.senderRole, type=body.type,
                                 content=body.content, client_id=body.clientId, source="http")
        return stored.message, 201 if stored.created else 200

    @bp.get("/api/v1/conversations/<conv_id>/messages")
    @documented("A page of the conversation's messages", query={
        **TENANT, "before": int, "after": int, "limit": int},
        responses={200: "`{messages, hasMore, nextBefore}`", 404: "no such conversation"})
    @require_api_key
    async def list_messages(conv_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        if await chat.members(tenant, conv_id) is None:
            return error_response(404, "not_found", f"no conversation {conv_id!r}")
        cursors: dict[str, int] = {}
        for name in ("before", "after", "limit"):
            if (value := request.args.get(name)) is None:
                continue
            if not value.isascii() or not value.isdigit() or int(value) > MAX_ROW_ID:
                raise ClientError("invalid_payload",
                                  f"{name}: must be an integer from 0 to {MAX_ROW_ID}",
                                  field=name)
            cursors[name] = int(value)
        return await chat.page(tenant, conv_id, **cursors)

    return bp
