"""The handover plugin's HTTP routes (API key): thin handlers over the
:class:`Handover` engine, for backends (a bot, a CRM) acting for the server."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request
from switchboard.core import (
    MAX_ROW_ID,
    ClientError,
    api_key_tenant,
    documented,
    read_json,
    require_api_key,
    structure_body,
)
from switchboard.core.apidocs import IDENTIFIER

from .payloads import (
    CONVERSATION_PREFIX,
    MAX_PAGE,
    PRIORITIES,
    QUEUE_PREFIX,
    AcceptBody,
    CancelBody,
    CreateBody,
    ResolveBody,
    TransferBody,
    check_argument,
    pick_conversation,
)
from .service import Actor, Handover

STATUSES = ("pending", "accepted", "cancelled", "resolved", "expired")


def _id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_ROW_ID:
        raise ClientError("not_found", f"no handover {raw!r}")
    return int(raw)


def _query_int(name: str, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ClientError("invalid_payload", f"{name}: must be an integer from {low} to "
                                             f"{high}", field=name)
    return int(raw)


def _query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ClientError("invalid_payload", f"{name}: must be one of {', '.join(choices)}",
                          field=name)
    return raw


TENANT = {"tenant": IDENTIFIER}
CHANGE = {200: "the request", 404: "no such handover",
          409: "`conflict`: the request is no longer in a state that allows it"}


def blueprint(engine: Handover) -> Blueprint:
    bp = Blueprint("handover", __name__)

    @bp.post("/api/v1/handovers")
    @documented(
        "Ask for a human agent in a conversation",
        body=CreateBody,
        responses={201: "the request", 409: "the conversation has an open request"},
    )
    @require_api_key
    async def create() -> Any:
        body = structure_body(await read_json(), CreateBody)
        tenant = api_key_tenant(body.tenant)
        conversation = pick_conversation(body.conversationId, body.leadId)
        if conversation is None:
            raise ClientError("invalid_payload", "conversationId: required",
                              field="conversationId")
        created = await engine.do_request(
            tenant, conversation, requested_by=body.requestedBy,
            requester_role=body.requesterRole, reason=body.reason, priority=body.priority,
            queue=body.queue, actor=Actor("http", body.requestedBy))
        return created.to_json(), 201

    @bp.get("/api/v1/handovers")
    @documented(
        "A page of requests, oldest first",
        description="An empty filter (`?queue=`, as a form sends it) is no filter.",
        query={
            **TENANT,
            **{name: {"anyOf": [schema, {"const": ""}]} for name, schema in {
                "status": {"enum": [*STATUSES, "all"]},
                "queue": {"type": "string"},
                "conversationId": {"type": "string"},
                "assignee": {"type": "string"},
                "priority": {"enum": list(PRIORITIES)},
                "after": {"type": "integer", "minimum": 0, "maximum": MAX_ROW_ID},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
            }.items()},
        },
        responses={200: "`{items, nextAfter}`"},
    )
    @require_api_key
    async def list_requests() -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        args = request.args
        filters: dict[str, str | None] = {}
        for name, prefix in (("queue", QUEUE_PREFIX), ("conversationId", CONVERSATION_PREFIX),
                             ("assignee", None)):
            raw = args.get(name)
            filters[name] = None if raw in (None, "") else check_argument(
                raw, name, room_prefix=prefix)
        status = _query_choice("status", (*STATUSES, "all")) or "pending"
        return await engine.page(
            tenant, status=None if status == "all" else status, queue=filters["queue"],
            conversation=filters["conversationId"], assignee=filters["assignee"],
            priority=_query_choice("priority", PRIORITIES),
            after=_query_int("after", 0, MAX_ROW_ID),
            limit=_query_int("limit", 1, MAX_PAGE) or 50)

    @bp.get("/api/v1/handovers/<raw_id>")
    @documented("A request", query=TENANT, responses={200: "the request", 404: "no such handover"})
    @require_api_key
    async def show(raw_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        return (await engine.find(tenant, _id(raw_id))).to_json()

    @bp.post("/api/v1/handovers/<raw_id>/accept")
    @documented("An agent takes a pending request", body=AcceptBody, responses=CHANGE)
    @require_api_key
    async def accept(raw_id: str) -> Any:
        body = structure_body(await read_json(), AcceptBody)
        tenant = api_key_tenant(body.tenant)
        accepted = await engine.do_accept(tenant, _id(raw_id), body.agentId,
                                          agent_name=body.agentName,
                                          actor=Actor("http", body.agentId))
        return accepted.to_json()

    @bp.post("/api/v1/handovers/<raw_id>/transfer")
    @documented(
        "Hand an accepted request to another agent or queue", body=TransferBody, responses=CHANGE
    )
    @require_api_key
    async def transfer(raw_id: str) -> Any:
        body = structure_body(await read_json(), TransferBody)
        tenant = api_key_tenant(body.tenant)
        moved = await engine.do_transfer(
            tenant, _id(raw_id), to_agent=body.toAgentId, to_agent_name=body.toAgentName,
            to_queue=body.toQueue, note=body.note, actor=Actor("http", body.by))
        return moved.to_json()

    @bp.post("/api/v1/handovers/<raw_id>/cancel")
    @documented("Cancel a pending request", body=CancelBody, responses=CHANGE)
    @require_api_key
    async def cancel(raw_id: str) -> Any:
        body = structure_body(await read_json(), CancelBody)
        tenant = api_key_tenant(body.tenant)
        cancelled = await engine.do_cancel(tenant, _id(raw_id), reason=body.reason,
                                           actor=Actor("http", body.by))
        return cancelled.to_json()

    @bp.post("/api/v1/handovers/<raw_id>/resolve")
    @documented(
        "Close a request (back to the bot with returnToBot)", body=ResolveBody, responses=CHANGE
    )
    @require_api_key
    async def resolve(raw_id: str) -> Any:
        body = structure_body(await read_json(), ResolveBody)
        tenant = api_key_tenant(body.tenant)
        resolved = await engine.do_resolve(tenant, _id(raw_id), return_to_bot=body.returnToBot,
                                           note=body.note, actor=Actor("http", body.by))
        return {**resolved.to_json(), "returnedToBot": body.returnToBot}

    return bp
