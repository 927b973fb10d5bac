"""Compatibility profiles for the frontends Switchboard replaces.

Bind one in config to the namespace (or WebSocket path) that frontend uses::

    [socketio]
    namespaces = ["/"]
    profiles = { "/" = "pytake" }

- ``pytake``: the FastAPI "PyTake" frontend (python-socketio server it
  replaces): ``join_conversation`` / ``leave_conversation`` answered by
  ``joined_conversation`` / ``left_conversation``, ``typing_start`` /
  ``typing_stop`` broadcast as ``user_typing``, ``ping`` -> ``pong``,
  ``connected`` on connect, ``message:new`` and ``message:status`` in PyTake's
  snake_case shapes, errors as ``error {message}``. Its tokens carry the
  tenant in ``organization_id``: set ``auth.tenant_claim = "organization_id"``.
- ``nextcrm``: the chat, typing and notification parts of the Next.js CRM:
  ``lead:join`` / ``lead:leave`` (a bare lead id), ``chat:message`` ->
  ``chat:new_message``, ``chat:typing`` -> ``chat:user_typing``,
  ``authenticate`` (checked against the token), ``notification:new``,
  ``user:online`` / ``user:offline`` / ``presence:user_updated`` as they are.
  A lead's chat is the conversation with the lead's id.
"""

from __future__ import annotations

import datetime
from typing import Any

from switchboard.core import App, ClientError, Session, hookimpl
from switchboard.core.profiles import Inbound, Profile, Replies


def _iso(timestamp: float | None = None) -> str:
    moment = (datetime.datetime.now(datetime.UTC) if timestamp is None
              else datetime.datetime.fromtimestamp(timestamp, datetime.UTC))
    return moment.isoformat()


def _field(data: Any, name: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        raise ClientError("invalid_payload", f"{name} required", field=name)
    return str(value)


def _error_event(_: Session, __: Any, error: ClientError) -> Replies:
    return [("error", {"message": error.message, "code": error.code})]


def _conversation_room(room: Any) -> str | None:
    if isinstance(room, str) and room.startswith("conversation:"):
        return room.removeprefix("conversation:")
    return None


# -- PyTake (seed 001) --------------------------------------------------------

_SENDER_TYPE = {"customer": "contact", "contact": "contact", "bot": "bot", "system": "bot"}


def _pytake_message(message: dict[str, Any]) -> tuple[str, Any]:
    content = dict(message.get("content") or {})
    if "url" in content:
        content["media_url"] = content.pop("url")
    if "fileName" in content:
        content["filename"] = content.pop("fileName")
    sender_type = _SENDER_TYPE.get(message.get("senderRole", ""), "agent")
    return "message:new", {
        "id": str(message["id"]),
        "conversation_id": message["conversationId"],
        "direction": "inbound" if sender_type == "contact" else "outbound",
        "sender_type": sender_type,
        "sender_id": message.get("senderId"),
        "message_type": message.get("type", "text"),
        "content": content,
        "status": message.get("status", "sent"),
        "whatsapp_message_id": message.get("clientId") if sender_type != "agent" else None,
        "created_at": _iso(message.get("createdAt")),
        "sent_at": _iso(message.get("createdAt")),
    }


def _pytake_status(status: dict[str, Any]) -> tuple[str, Any]:
    return "message:status", {
        "message_id": str(status["messageId"]),
        "conversation_id": status.get("conversationId"),
        "user_id": status.get("userId"),
        "status": status["status"],
        "timestamp": _iso(),
    }


def _pytake_typing(typing: dict[str, Any]) -> tuple[str, Any] | None:
    conversation = _conversation_room(typing.get("room"))
    if conversation is None:
        return None
    return "user_typing", {"conversation_id": conversation, "user_id": typing.get("userId"),
                           "typing": bool(typing.get("typing"))}


def _joined(_: Session, data: Any, result: Any) -> Replies:
    if not result.get("success"):
        return [("error", {"message": result["error"]["message"],
                           "code": result["error"]["code"]})]
    conversation = result["conversationId"]
    return [("joined_conversation", {"conversation_id": conversation,
                                     "message": f"Joined conversation {conversation}"})]


PYTAKE = Profile(
    name="pytake",
    doc="FastAPI PyTake frontend: join_conversation, typing_start, user_typing, pong.",
    inbound={
        "join_conversation": Inbound(
            "conversation:join",
            payload=lambda d: {"conversationId": _field(d, "conversation_id")},
            on_result=_joined, on_error=_error_event),
        "leave_conversation": Inbound(
            "conversation:leave",
            payload=lambda d: {"conversationId": _field(d, "conversation_id")},
            on_result=lambda _s, _d, r: [("left_conversation",
                                          {"conversation_id": r["conversationId"]})],
            on_error=_error_event),
        "typing_start": Inbound(
            "typing:start",
            payload=lambda d: {"room": "conversation:" + _field(d, "conversation_id")},
            on_error=_error_event),
        "typing_stop": Inbound(
            "typing:stop",
            payload=lambda d: {"room": "conversation:" + _field(d, "conversation_id")},
            on_error=_error_event),
        "ping": Inbound(None, on_result=lambda _s, _d, _r: [("pong", {"timestamp": _iso()})]),
    },
    outbound={
        "message:new": _pytake_message,
        "message:status": _pytake_status,
        "typing:update": _pytake_typing,
    },
    on_connect=lambda session: [("connected", {"message": "Connected to PyTake WebSocket",
                                               "user_id": session.user_id})],
)


# -- Next.js CRM (seed 000): chat, typing, notifications ----------------------


def _lead_id(data: Any) -> str:
    if isinstance(data, dict):
        return _field(data, "leadId")
    if isinstance(data, str | int) and not isinstance(data, bool) and str(data):
        return str(data)
    raise ClientError("invalid_payload", "leadId required", field="leadId")


async def _lead_join(app: App, session: Session, lead: str) -> dict[str, Any]:
    rooms = [await app.join(session, f"lead:{lead}")]
    try:
        rooms.append(await app.join(session, f"conversation:{lead}"))
    except ClientError as exc:
        if exc.code != "not_found":  # a lead without a chat yet is fine
            raise
    return {"leadId": lead, "rooms": rooms}


async def _lead_leave(app: App, session: Session, lead: str) -> dict[str, Any]:
    for room in (f"lead:{lead}", f"conversation:{lead}"):
        await app.leave(session, room)
    return {"leadId": lead}


def _chat_message(data: Any) -> dict[str, Any]:
    text = data.get("message") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise ClientError("invalid_payload", "message: expected a string", field="message")
    payload: dict[str, Any] = {"conversationId": _field(data, "leadId"), "type": "text",
                               "content": {"text": text}}
    if isinstance(data.get("clientId"), str):
        payload["clientId"] = data["clientId"]
    return payload


def _crm_message(message: dict[str, Any]) -> tuple[str, Any]:
    content = message.get("content") or {}
    return "chat:new_message", {
        "id": str(message["id"]),
        "leadId": message["conversationId"],
        "message": content.get("text", content.get("url", "")),
        "type": message.get("type", "text"),
        "sender": message.get("senderId"),
        "senderType": message.get("senderRole"),
        "timestamp": _iso(message.get("createdAt")),
    }


def _crm_typing(typing: dict[str, Any]) -> tuple[str, Any] | None:
    lead = _conversation_room(typing.get("room"))
    if lead is None:
        return None
    return "chat:user_typing", {"leadId": lead, "userId": typing.get("userId"),
                                "isTyping": bool(typing.get("typing"))}


def _authenticate(session: Session, data: Any, _: Any) -> Replies:
    claimed = data.get("userId") if isinstance(data, dict) else None
    if claimed is not None and str(claimed) != session.user_id:
        return [("error", {"message": "userId does not match the token"})]
    return [("authenticated", {"userId": session.user_id, "role": session.role})]


NEXTCRM = Profile(
    name="nextcrm",
    doc="Next.js CRM frontend: lead:join, chat:message, chat:typing, notification:new.",
    inbound={
        "authenticate": Inbound(None, on_result=_authenticate),
        "lead:join": Inbound(None, payload=_lead_id, handler=_lead_join),
        "lead:leave": Inbound(None, payload=_lead_id, handler=_lead_leave),
        "chat:message": Inbound("message:send", payload=_chat_message),
        "chat:typing": Inbound(
            lambda d: "typing:start" if isinstance(d, dict) and d.get("isTyping")
            else "typing:stop",
            payload=lambda d: {"room": "conversation:" + _field(d, "leadId")}),
    },
    outbound={
        "message:new": _crm_message,
        "typing:update": _crm_typing,
    },
)


class CompatPlugin:
    """Declares the first-party compatibility profiles."""

    @hookimpl
    def switchboard_profiles(self) -> list[Profile]:
        return [PYTAKE, NEXTCRM]
