"""The desk's HTTP routes (API key): tickets, queues and agents, for backends
and webhooks. Every change is announced like the same change from a socket."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request
from switchboard.core import (
    MAX_ROW_ID,
    ClientError,
    JsonHandler,
    JsonRequest,
    Ticket,
    api_key_tenant,
    documented,
    error_response,
    read_json,
    request_api_key,
    require_api_key,
    structure_body,
)
from switchboard.core.apidocs import IDENTIFIER

from .agents import Agents
from .payloads import (
    MAX_BULK,
    TICKET_STATUSES,
    AssignBody,
    BulkCreateBody,
    CloseBody,
    CreateTicketBody,
    MemberBody,
    QueueBody,
    TransferBody,
    UpdateTicketBody,
    check_id,
    check_status,
    invalid,
)
from .tickets import NewTicket, Tickets, not_found


def _integer(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > MAX_ROW_ID:
        raise invalid(name, f"must be an integer from 0 to {MAX_ROW_ID}")
    return int(value)


TENANT = {"tenant": IDENTIFIER}
CURSOR = {"type": "integer", "minimum": 0, "maximum": MAX_ROW_ID}
TICKET = "the ticket"
CHANGE = {200: TICKET, 404: "no such ticket",
          409: "`conflict`: the ticket changed since `version`"}


class CreateRoutes:
    """Ticket creation over HTTP: served by the quart routes and by the
    server's JSON fast path (``switchboard_json_routes``) alike."""

    def __init__(self, tickets: Tickets) -> None:
        self.tickets = tickets

    def routes(self) -> dict[tuple[str, str], JsonHandler]:
        return {("POST", "/api/v1/tickets"): self.create,
                ("POST", "/api/v1/tickets/bulk"): self.create_bulk}

    async def create(self, request: JsonRequest) -> tuple[dict[str, Any], int]:
        body = structure_body(request.data, CreateTicketBody)
        new = await self._prepare(request.tenant(body.tenant), body)
        return await self._answer(await self.tickets.open(new), body), 201

    async def create_bulk(self, request: JsonRequest) -> tuple[dict[str, Any], int]:
        bulk = structure_body(request.data, BulkCreateBody)
        prepared: list[tuple[NewTicket, CreateTicketBody]] = []
        for n, item in enumerate(bulk.tickets):
            body = structure_body(item, CreateTicketBody, f"tickets[{n}]")
            try:
                new = await self._prepare(request.tenant(body.tenant), body)
            except ClientError as exc:
                field = f"tickets[{n}]" + (f".{exc.field}" if exc.field else "")
                raise ClientError(exc.code, f"tickets[{n}]: {exc.message}", **{
                    **exc.extra, "field": field}) from None
            prepared.append((new, body))
        opened = await self.tickets.open_many([new for new, _ in prepared])
        return {"tickets": [await self._answer(ticket, body) for ticket, (_, body)
                            in zip(opened, prepared, strict=True)]}, 201

    async def _prepare(self, tenant: str, body: CreateTicketBody) -> NewTicket:
        return await self.tickets.prepare(
            tenant, subject=body.subject, customer_id=body.customerId, channel=body.channel,
            priority=body.priority, queue_id=body.queueId, assignee_id=body.assigneeId,
            tags=body.tags)

    async def _answer(self, ticket: Ticket, body: CreateTicketBody) -> dict[str, Any]:
        """The answer of a ticket opened: the ticket, and its first message
        when the body has one (posted now, into its conversation)."""
        answer: dict[str, Any] = ticket.to_json()
        if body.message is not None:
            message = await self.tickets.app.service("chat").post_message(
                ticket.tenant_id, ticket.conversation_id, sender_id=body.customerId,
                sender_role="customer", content={"text": body.message.text},
                client_id=body.message.clientId)
            answer["message"] = message.to_json()
        return answer


def blueprint(routes: CreateRoutes, agents: Agents) -> Blueprint:
    bp = Blueprint("desk", __name__)
    tickets = routes.tickets

    @bp.post("/api/v1/tickets")
    @documented("Open a ticket (and its conversation, with a first message)",
                body=CreateTicketBody, responses={201: "the ticket (with `message`)"})
    @require_api_key
    async def create() -> Any:
        return await routes.create(JsonRequest(request_api_key(), await read_json()))

    @bp.post("/api/v1/tickets/bulk")
    @documented(f"Open up to {MAX_BULK} tickets (each as `POST /api/v1/tickets` would); "
                "all are checked before any is opened", body=BulkCreateBody,
                responses={201: "`{tickets}`, in the order given"})
    @require_api_key
    async def create_bulk() -> Any:
        return await routes.create_bulk(JsonRequest(request_api_key(), await read_json()))

    @bp.get("/api/v1/tickets")
    @documented("A page of tickets, newest first", query={
        **TENANT, "status": {"enum": list(TICKET_STATUSES)}, "queueId": str,
        "assigneeId": str, "customerId": str, "before": CURSOR, "limit": CURSOR},
        responses={200: "`{items, nextBefore}`"})
    @require_api_key
    async def list_tickets() -> Any:
        args = request.args
        tenant = api_key_tenant(args.get("tenant"))
        status = args.get("status")
        filters: dict[str, str | None] = {}
        for name, field in (("queueId", "queue_id"), ("assigneeId", "assignee_id"),
                            ("customerId", "customer_id")):
            value = args.get(name)
            filters[field] = None if value is None else check_id(value, name)
        limit = _integer("limit", args.get("limit"))
        page = await tickets.list(
            tenant, status=None if status is None else check_status(status),
            before=_integer("before", args.get("before")),
            limit=50 if limit is None else limit, **filters)
        return {"items": [t.to_json() for t in page.tickets], "nextBefore": page.next_before}

    @bp.get("/api/v1/tickets/<ticket_id>")
    @documented("A ticket", query=TENANT, responses={200: TICKET, 404: "no such ticket"})
    @require_api_key
    async def show(ticket_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        ticket = await tickets.get(tenant, check_id(ticket_id, "ticketId"))
        if ticket is None:
            raise not_found(ticket_id)
        return ticket.to_json()

    @bp.patch("/api/v1/tickets/<ticket_id>")
    @documented("Change a ticket's subject, priority, tags or status",
                body=UpdateTicketBody, responses=CHANGE)
    @require_api_key
    async def update(ticket_id: str) -> Any:
        body = structure_body(await read_json(), UpdateTicketBody)
        tenant = api_key_tenant(body.tenant)
        ticket = None
        if body.subject is not None or body.priority is not None or body.tags is not None:
            ticket = await tickets.update(tenant, ticket_id, version=body.version, by=body.by,
                                          subject=body.subject, priority=body.priority,
                                          tags=body.tags)
        if body.status is not None:
            ticket = await tickets.set_status(
                tenant, ticket_id, check_status(body.status),
                version=body.version if ticket is None else ticket.version, by=body.by)
        if ticket is None:
            raise invalid("subject", "nothing to change: give subject, priority, tags "
                                     "or status")
        return ticket.to_json()

    @bp.post("/api/v1/tickets/<ticket_id>/assign")
    @documented("Assign a ticket to an agent (or unassign)", body=AssignBody,
                responses=CHANGE)
    @require_api_key
    async def assign(ticket_id: str) -> Any:
        body = structure_body(await read_json(), AssignBody)
        tenant = api_key_tenant(body.tenant)
        return (await tickets.assign(tenant, ticket_id, body.assigneeId, version=body.version,
                                     by=body.by)).to_json()

    @bp.post("/api/v1/tickets/<ticket_id>/transfer")
    @documented("Transfer a ticket to a queue or an agent", body=TransferBody,
                responses=CHANGE)
    @require_api_key
    async def transfer(ticket_id: str) -> Any:
        body = structure_body(await read_json(), TransferBody)
        tenant = api_key_tenant(body.tenant)
        return (await tickets.transfer(
            tenant, ticket_id, queue_id=body.queueId, assignee_id=body.assigneeId,
            note=body.note, version=body.version, by=body.by)).to_json()

    @bp.post("/api/v1/tickets/<ticket_id>/close")
    @documented("Close a ticket", body=CloseBody, responses=CHANGE)
    @require_api_key
    async def close(ticket_id: str) -> Any:
        body = structure_body(await read_json(), CloseBody)
        tenant = api_key_tenant(body.tenant)
        return (await tickets.close(tenant, ticket_id, note=body.note, version=body.version,
                                    by=body.by)).to_json()

    @bp.post("/api/v1/tickets/<ticket_id>/reopen")
    @documented("Reopen a closed ticket", body=CloseBody, responses=CHANGE)
    @require_api_key
    async def reopen(ticket_id: str) -> Any:
        body = structure_body(await read_json(), CloseBody)
        tenant = api_key_tenant(body.tenant)
        return (await tickets.reopen(tenant, ticket_id, version=body.version,
                                     by=body.by)).to_json()

    # -- queues and agents -----------------------------------------------------------

    @bp.post("/api/v1/queues")
    @documented("Create or replace a queue and its members", body=QueueBody,
                responses={201: "the queue as `GET /api/v1/queues` lists it"})
    @require_api_key
    async def put_queue() -> Any:
        body = structure_body(await read_json(), QueueBody)
        tenant = api_key_tenant(body.tenant)
        tickets.check_queue_id(body.id, "id")
        await agents.put_queue(tenant, body.id, body.name, body.strategy,
                               [(m.userId, m.capacity) for m in body.members])
        return next(q for q in await agents.describe(tenant) if q["id"] == body.id), 201

    @bp.get("/api/v1/queues")
    @documented("The tenant's queues, members and their load", query=TENANT,
                responses={200: "`{queues}`"})
    @require_api_key
    async def list_queues() -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        return {"queues": await agents.describe(tenant)}

    @bp.delete("/api/v1/queues/<queue_id>")
    @documented("Delete a queue", query=TENANT,
                responses={204: "deleted", 404: "no such queue"})
    @require_api_key
    async def delete_queue(queue_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        tickets.check_queue_id(queue_id, "queueId")
        if not await agents.delete_queue(tenant, queue_id):
            return error_response(404, "not_found", f"no queue {queue_id!r}")
        return "", 204

    @bp.put("/api/v1/queues/<queue_id>/members/<user_id>")
    @documented("Add an agent to a queue, or change their capacity", body=MemberBody,
                responses={200: "`{userId, capacity}`", 404: "no such queue"})
    @require_api_key
    async def put_member(queue_id: str, user_id: str) -> Any:
        body = structure_body(await read_json(), MemberBody)
        tenant = api_key_tenant(body.tenant)
        await _existing_queue(tenant, queue_id)
        await agents.add_member(tenant, queue_id, check_id(user_id, "userId"), body.capacity)
        return {"userId": user_id, "capacity": body.capacity}

    @bp.delete("/api/v1/queues/<queue_id>/members/<user_id>")
    @documented("Remove an agent from a queue", query=TENANT,
                responses={204: "removed", 404: "no such queue or member"})
    @require_api_key
    async def remove_member(queue_id: str, user_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        await _existing_queue(tenant, queue_id)
        if not await agents.remove_member(tenant, queue_id, check_id(user_id, "userId")):
            return error_response(404, "not_found",
                                  f"{user_id!r} is not a member of {queue_id!r}")
        return "", 204

    async def _existing_queue(tenant: str, queue_id: str) -> None:
        tickets.check_queue_id(queue_id, "queueId")
        if not await tickets.queue_exists(tenant, queue_id):
            raise ClientError("not_found", f"no queue {queue_id!r}", field="queueId")

    @bp.get("/api/v1/agents")
    @documented("The tenant's agents and their status", query=TENANT,
                responses={200: "`{agents}`"})
    @require_api_key
    async def list_agents() -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        return {"agents": agents.statuses(tenant)}

    return bp
