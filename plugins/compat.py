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

from switchboard.core import (
    App,
    ChatParticipant,
    ClientError,
    Inbound,
    Lead,
    PipelineService,
    Profile,
    Replies,
    Session,
    hookimpl,
)


def _iso(timestamp: float | None = None) -> str:
    moment = (datetime.datetime.now(datetime.UTC) if timestamp is None
              else datetime.datetime.fromtimestamp(timestamp, datetime.UTC))
    return moment.isoformat()


def _field(data: Any, name: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        raise ClientError("invalid_payload", f"{name} required", field=name)
    return str(value)


# -- checks of outbound payloads ----------------------------------------------
#
# An outbound translation gets what a plugin or a backend published
# (``POST /api/v1/emit`` included): it checks what it reads, and refuses a
# payload it cannot translate with ``invalid_payload`` naming the field, which
# the emit route answers as a 400 before anything is published.


def _object(data: Any, event: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ClientError("invalid_payload", f"{event}: expected a JSON object")
    return data


def _optional(data: dict[str, Any], name: str, *types: type) -> Any:
    """``data[name]`` if it is one of ``types`` (None when absent or null)."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        kinds = " or ".join(_KIND[t] for t in types)
        raise ClientError("invalid_payload", f"{name}: expected {kinds}", field=name)
    return value


_KIND = {str: "a string", int: "a number", float: "a number", dict: "an object",
         bool: "a boolean", list: "a list"}


def _id(data: dict[str, Any], name: str, alias: str | None = None) -> str:
    """A required id (a non-empty string or an integer), by ``name`` or ``alias``."""
    value = data.get(name) if alias is None or name in data else data.get(alias)
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        also = f" (or {alias})" if alias is not None else ""
        raise ClientError("invalid_payload", f"{name}{also}: expected a non-empty string",
                          field=name)
    return str(value)


def _timestamp(data: dict[str, Any], name: str) -> str:
    """A time as ISO 8601: an epoch number converted, a string kept, else now."""
    value = _optional(data, name, int, float, str)
    if isinstance(value, str):
        return value
    try:
        return _iso(value)
    except (OverflowError, OSError, ValueError):
        raise ClientError("invalid_payload", f"{name}: not a time", field=name) from None


def _error_event(_: Session, __: Any, error: ClientError) -> Replies:
    return [("error", {"message": error.message, "code": error.code})]


def _conversation_room(room: Any) -> str | None:
    if isinstance(room, str) and room.startswith("conversation:"):
        return room.removeprefix("conversation:")
    return None


def _typing(typing: Any) -> tuple[str, Any, bool] | None:
    """(conversation, user id, typing) of a ``typing:update`` of a conversation."""
    data = _object(typing, "typing:update")
    conversation = _conversation_room(data.get("room"))
    if conversation is None:
        return None
    user = _optional(data, "userId", str, int)
    return conversation, user, bool(data.get("typing"))


# -- PyTake (seed 001) --------------------------------------------------------

_SENDER_TYPE = {"customer": "contact", "contact": "contact", "bot": "bot", "system": "bot"}
#: The fields of PyTake's own message (``message_dict``) that are text.
_PYTAKE_TEXT = ("direction", "sender_type", "message_type", "status",
                "whatsapp_message_id", "created_at", "sent_at")


def _pytake_own_message(message: dict[str, Any]) -> tuple[str, Any]:
    """A message PyTake's backend published in its own shape: kept as it is
    (its ids are the backend's), once what the frontend reads is checked."""
    _id(message, "id")
    _id(message, "conversation_id")
    _optional(message, "content", dict)
    for name in _PYTAKE_TEXT:
        _optional(message, name, str)
    return "message:new", message


def _pytake_message(data: Any) -> tuple[str, Any]:
    message = _object(data, "message:new")
    if "conversationId" not in message and "conversation_id" in message:
        return _pytake_own_message(message)
    conversation = _id(message, "conversationId", alias="conversation_id")
    content = dict(_optional(message, "content", dict) or {})
    if "url" in content:
        content["media_url"] = content.pop("url")
    if "fileName" in content:
        content["filename"] = content.pop("fileName")
    sender_type = _SENDER_TYPE.get(_optional(message, "senderRole", str) or "", "agent")
    created = _timestamp(message, "createdAt")
    client_id = _optional(message, "clientId", str)
    return "message:new", {
        "id": _id(message, "id"),
        "conversation_id": conversation,
        "direction": "inbound" if sender_type == "contact" else "outbound",
        "sender_type": sender_type,
        "sender_id": _optional(message, "senderId", str, int),
        "message_type": _optional(message, "type", str) or "text",
        "content": content,
        "status": _optional(message, "status", str) or "sent",
        "whatsapp_message_id": client_id if sender_type != "agent" else None,
        "created_at": created,
        "sent_at": created,
    }


def _pytake_status(data: Any) -> tuple[str, Any]:
    status = _object(data, "message:status")
    if "messageId" not in status and "message_id" in status:
        # PyTake's own {message_id, status, timestamp}: kept as it is.
        _id(status, "message_id")
        _id(status, "status")
        _optional(status, "timestamp", str)
        return "message:status", status
    return "message:status", {
        "message_id": _id(status, "messageId", alias="message_id"),
        "conversation_id": _optional(status, "conversationId", str, int),
        "user_id": _optional(status, "userId", str, int),
        "status": _id(status, "status"),
        "timestamp": _iso(),
    }


def _pytake_typing(data: Any) -> tuple[str, Any] | None:
    typing = _typing(data)
    if typing is None:
        return None
    conversation, user, on = typing
    return "user_typing", {"conversation_id": conversation, "user_id": user, "typing": on}


def _joined(_: Session, data: Any, result: Any) -> Replies:
    if not isinstance(result, dict) or not result.get("success"):
        error = result.get("error") if isinstance(result, dict) else None
        error = error if isinstance(error, dict) else {}
        return [("error", {"message": str(error.get("message", "join refused")),
                           "code": str(error.get("code", "forbidden"))})]
    conversation = result.get("conversationId")
    return [("joined_conversation", {"conversation_id": conversation,
                                     "message": f"Joined conversation {conversation}"})]


def _left(_: Session, __: Any, result: Any) -> Replies:
    conversation = result.get("conversationId") if isinstance(result, dict) else None
    return [("left_conversation", {"conversation_id": conversation})]


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
            on_result=_left, on_error=_error_event),
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


# -- Next.js CRM (seed 000): leads, chat, typing, notifications ---------------
#
# A lead's chat is the conversation with the lead's id (the pipeline creates
# it with the lead; the handover plugin reads ``leadId`` the same way). A lead
# the pipeline plugin knows has its changes go to the pipeline; a lead only
# the CRM's backend knows (its join proxy allowed ``lead:{id}``) gets its
# conversation on the first join, and its changes go to the backend through
# the event proxy.

_STAGE_FIELDS = ("status", "stage", "stageId")
_OWNER_FIELDS = ("ownerId", "owner", "assignedTo", "consultantId")
_CONTACT_FIELDS = {"email": "email", "phone": "phone", "company": "company",
                   "contactName": "name"}


def _lead_id(data: Any) -> str:
    if isinstance(data, dict):
        return _field(data, "leadId")
    if isinstance(data, str | int) and not isinstance(data, bool) and str(data):
        return str(data)
    raise ClientError("invalid_payload", "leadId required", field="leadId")


def _pipeline(app: App) -> PipelineService | None:
    try:
        return app.service("pipeline")
    except LookupError:
        return None


async def _known_lead(app: App, session: Session, lead_id: str) -> Lead | None:
    pipeline = _pipeline(app)
    return await pipeline.get_lead(session.tenant_id, lead_id) if pipeline else None


async def _backend_lead_conversation(app: App, session: Session, lead_id: str) -> None:
    """A lead only the backend knows, whose room the backend let this session
    join: its conversation exists, with this customer in it."""
    try:
        chat = app.service("chat")
    except LookupError:
        return
    participants = [] if app.is_agent(session) else [ChatParticipant(session.user_id)]
    _, created = await chat.get_or_create_conversation(session.tenant_id, lead_id,
                                                       participants=participants)
    if not created and participants:
        conversation = await chat.get_conversation(session.tenant_id, lead_id)
        if conversation is not None and conversation.participant(session.user_id) is None:
            await chat.add_participant(session.tenant_id, lead_id, session.user_id)


async def _lead_join(app: App, session: Session, lead_id: str) -> dict[str, Any]:
    lead = await _known_lead(app, session, lead_id)
    rooms = []
    try:
        rooms.append(await app.join(session, f"lead:{lead_id}"))
    except ClientError as exc:
        if exc.code != "not_found":
            raise
    if lead is None and rooms:
        await _backend_lead_conversation(app, session, lead_id)
    try:
        rooms.append(await app.join(session, "conversation:" + lead_id))
    except ClientError as exc:
        if exc.code != "not_found":  # a lead without a chat yet is fine
            raise
    if not rooms:
        raise ClientError("not_found", f"no lead {lead_id!r}", leadId=lead_id)
    return {"leadId": lead_id, "rooms": rooms}


async def _lead_leave(app: App, session: Session, lead_id: str) -> dict[str, Any]:
    for room in (f"lead:{lead_id}", f"conversation:{lead_id}"):
        await app.leave(session, room)
    return {"leadId": lead_id}


def _chat_message(data: Any) -> dict[str, Any]:
    text = data.get("message") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise ClientError("invalid_payload", "message: expected a string", field="message")
    payload: dict[str, Any] = {"conversationId": _field(data, "leadId"), "type": "text",
                               "content": {"text": text}}
    if isinstance(data.get("clientId"), str):
        payload["clientId"] = data["clientId"]
    return payload


def _crm_message(data: Any) -> tuple[str, Any]:
    message = _object(data, "message:new")
    content = _optional(message, "content", dict) or {}
    text = content.get("text", content.get("url", ""))
    return "chat:new_message", {
        "id": _id(message, "id"),
        "leadId": _id(message, "conversationId"),
        "message": text if isinstance(text, str) else "",
        "type": _optional(message, "type", str) or "text",
        "sender": _optional(message, "senderId", str, int),
        "senderType": _optional(message, "senderRole", str),
        "timestamp": _timestamp(message, "createdAt"),
    }


def _crm_typing(data: Any) -> tuple[str, Any] | None:
    typing = _typing(data)
    if typing is None:
        return None
    lead, user, on = typing
    return "chat:user_typing", {"leadId": lead, "userId": user, "isTyping": on}


# lead:update and lead:status_change: the pipeline's leads, or the backend's


def _lead_update(data: Any) -> dict[str, Any]:
    _field(data, "leadId")
    field = data.get("field")
    if not isinstance(field, str) or not field:
        raise ClientError("invalid_payload", "field: expected a field name", field="field")
    return data  # type: ignore[no-any-return]


def _status_change(data: Any) -> dict[str, Any]:
    _field(data, "leadId")
    _field(data, "newStatus")
    return data  # type: ignore[no-any-return]


async def _to_backend(app: App, session: Session, event: str, data: Any) -> Any:
    """A lead the pipeline does not know: the backend's (its event proxy)."""
    try:
        return await app.offer_unhandled(session, event, data)
    except ClientError as exc:
        if exc.code != "unknown_event":
            raise
        lead_id = str(data["leadId"])
        raise ClientError("not_found", f"no lead {lead_id!r}", leadId=lead_id) from None


def _may_change(app: App, session: Session) -> None:
    if not app.is_agent(session):
        raise ClientError("forbidden", "only consultants may change a lead")


async def _apply_update(app: App, session: Session, data: dict[str, Any]) -> Any:
    lead = await _known_lead(app, session, str(data["leadId"]))
    pipeline = _pipeline(app)
    if lead is None or pipeline is None:
        return await _to_backend(app, session, "lead:update", data)
    _may_change(app, session)
    field, value, actor = data["field"], data.get("value"), session.user_id
    version = data.get("version") if isinstance(data.get("version"), int) else None
    try:
        if field in _STAGE_FIELDS:
            lead = await pipeline.move_lead(session.tenant_id, lead.id, _stage(value),
                                            version=version, actor=actor)
        elif field in _OWNER_FIELDS:
            lead = await pipeline.assign_lead(session.tenant_id, lead.id, value,
                                              version=version, actor=actor)
        else:
            lead = await pipeline.update_lead(session.tenant_id, lead.id,
                                              _changes(lead, field, value),
                                              version=version, actor=actor)
    except ClientError as exc:
        if exc.code == "invalid_payload":  # named as the frontend sent it
            raise ClientError("invalid_payload", f"value: {exc.message}", field="value") \
                from None
        raise
    return {"success": True, "lead": lead.to_json()}


def _stage(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ClientError("invalid_payload", "value: expected a status", field="value")
    return value


def _changes(lead: Lead, field: str, value: Any) -> dict[str, Any]:
    if field in ("title", "name"):
        return {"title": value}
    if field in ("value", "tags", "customerId"):
        return {field: value}
    if field in _CONTACT_FIELDS:
        return {"contact": {**lead.contact, _CONTACT_FIELDS[field]: value}}
    return {"fields": {**lead.fields, field: value}}  # a custom field of the CRM


async def _apply_status(app: App, session: Session, data: dict[str, Any]) -> Any:
    lead = await _known_lead(app, session, str(data["leadId"]))
    pipeline = _pipeline(app)
    if lead is None or pipeline is None:
        return await _to_backend(app, session, "lead:status_change", data)
    _may_change(app, session)
    try:
        lead = await pipeline.move_lead(session.tenant_id, lead.id, str(data["newStatus"]),
                                        actor=session.user_id)
    except ClientError as exc:
        if exc.field == "stageId":
            raise ClientError(exc.code, exc.message.replace("stageId", "newStatus"),
                              field="newStatus") from None
        raise
    return {"success": True, "lead": lead.to_json()}


def _crm_lead_updated(data: Any) -> tuple[str, Any]:
    changes = data.get("changes") if isinstance(data, dict) else None
    if not isinstance(changes, dict) or "version" not in data:
        return "lead:updated", data  # the backend's own shape: as it is
    field, value = next(iter(changes.items()), (None, None))
    return "lead:updated", {"leadId": data.get("leadId"), "field": field, "value": value,
                            "changes": changes, "updatedBy": data.get("by"),
                            "version": data.get("version"), "timestamp": _iso()}


def _crm_lead_moved(data: Any) -> tuple[str, Any] | None:
    if not isinstance(data, dict) or "fromStageId" not in data or "stageId" not in data:
        return "lead:moved", data  # not the pipeline's: as it is
    if data["fromStageId"] == data["stageId"]:
        return None  # a reorder within its column: the status did not change
    return "lead:status_changed", {
        "leadId": data.get("leadId"), "oldStatus": data["fromStageId"],
        "newStatus": data["stageId"], "changedBy": data.get("by"),
        "version": data.get("version"), "timestamp": _iso()}


# authenticate: checked against the token; a consultant's board is joined


async def _authenticate_in(app: App, session: Session, data: Any) -> bool:
    claimed = data.get("userId") if isinstance(data, dict) else None
    if claimed is not None and str(claimed) != session.user_id:
        return False
    pipeline = _pipeline(app)
    if pipeline is not None and app.is_agent(session):
        board = await pipeline.get_pipeline(session.tenant_id)
        if board is not None:  # the CRM's realtime pipeline: every consultant's board
            await app.join(session, board.room)
    return True


def _authenticate(session: Session, _: Any, matched: Any) -> Replies:
    if matched is not True:
        return [("error", {"message": "userId does not match the token"})]
    return [("authenticated", {"userId": session.user_id, "role": session.role})]


NEXTCRM = Profile(
    name="nextcrm",
    doc="Next.js CRM frontend: lead:join, lead:update, lead:status_change, chat:message, "
        "chat:typing, notification:new; handover:* as they are.",
    inbound={
        "authenticate": Inbound(None, handler=_authenticate_in, on_result=_authenticate),
        "lead:join": Inbound(None, payload=_lead_id, handler=_lead_join),
        "lead:leave": Inbound(None, payload=_lead_id, handler=_lead_leave),
        "lead:update": Inbound(None, payload=_lead_update, handler=_apply_update),
        "lead:status_change": Inbound(None, payload=_status_change, handler=_apply_status),
        "chat:message": Inbound("message:send", payload=_chat_message),
        "chat:typing": Inbound(
            lambda d: "typing:start" if isinstance(d, dict) and d.get("isTyping")
            else "typing:stop",
            payload=lambda d: {"room": "conversation:" + _field(d, "leadId")}),
    },
    outbound={
        "message:new": _crm_message,
        "typing:update": _crm_typing,
        "lead:updated": _crm_lead_updated,
        "lead:moved": _crm_lead_moved,
    },
)


class CompatPlugin:
    """Declares the first-party compatibility profiles."""

    @hookimpl
    def switchboard_profiles(self) -> list[Profile]:
        return [PYTAKE, NEXTCRM]
