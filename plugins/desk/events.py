"""The desk's socket events: thin handlers over the ticket engine and the agents."""

from __future__ import annotations

from typing import Any

from switchboard.core import (
    FORBIDDEN,
    ClientError,
    EventSpec,
    Rate,
    Session,
    Ticket,
    incoming,
    object_schema,
    outgoing,
)

from .agents import Agents
from .payloads import (
    TICKET_ROOM,
    AssignTicket,
    CloseTicket,
    CreateTicket,
    ListTickets,
    ReopenTicket,
    SetAgentStatus,
    SetStatus,
    TicketRef,
    TransferTicket,
    UpdateTicket,
    check_status,
)
from .tickets import Tickets, not_found

_CHANGE = Rate(rate=10.0, burst=30.0)


def _answer(ticket: Ticket) -> dict[str, Any]:
    return {"ticket": ticket.to_json()}


TICKET = {"type": "object", "description": "A ticket: {id, subject, status, priority, "
          "customerId, queueId, assigneeId, conversationId, version, tags, ...}."}
#: What the events about one ticket answer.
TICKET_ACK = object_schema(ticket=TICKET)
#: The announcement of a change of a ticket (``note``: to the agents only).
CHANGE = object_schema("by", ticket=TICKET, optional=[
    "reason", "note", "previousAssigneeId", "previousQueueId", "previousStatus"])
AGENT = object_schema("at", userId=str, status={"enum": ["online", "busy", "away", "offline"]})
SLA = object_schema("dueAt", ticket=TICKET, target={"enum": ["first_response", "resolution"]})
QUEUE_ROOMS = ("queue:{queueId}", "tenant:{tenantId}:agents")


class DeskEvents:
    def __init__(self, tickets: Tickets, agents: Agents) -> None:
        self.tickets = tickets
        self.agents = agents

    def specs(self) -> list[EventSpec]:
        return [
            incoming("ticket:join", TicketRef, self.join,
                     ack=object_schema(success=bool, ticketId=str, ticket=TICKET,
                                       error={"$ref": "#/components/schemas/Error"},
                                       optional=["ticket", "error"]),
                     doc="Join ticket:{id} and its conversation; ack {success, ticketId, "
                         "ticket?, error?}."),
            incoming("ticket:leave", TicketRef, self.leave,
                     ack=object_schema(success=bool, ticketId=str),
                     doc="Leave ticket:{id} and its conversation; ack {success, ticketId}."),
            incoming("ticket:get", TicketRef, self.get, ack=TICKET_ACK, doc="Ack {ticket}."),
            incoming("ticket:list", ListTickets, self.list, rate=Rate(rate=5.0, burst=20.0),
                     ack=object_schema("nextBefore", items={"type": "array", "items": TICKET}),
                     doc="Agents: {status?, queueId?, assigneeId?, customerId?, before?, "
                         "limit?}; ack {items, nextBefore}, newest first."),
            incoming("ticket:create", CreateTicket, self.create, rate=_CHANGE,
                     ack=TICKET_ACK,
                     doc="Agents: create a ticket; ack {ticket}."),
            incoming("ticket:update", UpdateTicket, self.update, rate=_CHANGE,
                     ack=TICKET_ACK,
                     doc="Agents: {ticketId, version?, subject?, priority?, tags?}; "
                         "ack {ticket}."),
            incoming("ticket:set_status", SetStatus, self.set_status, rate=_CHANGE,
                     ack=TICKET_ACK,
                     doc="Agents: {ticketId, status, version?}; ack {ticket}."),
            incoming("ticket:assign", AssignTicket, self.assign, rate=_CHANGE,
                     ack=TICKET_ACK,
                     doc="Agents: {ticketId, userId?, unassign?, version?}: without "
                         "userId, take it (conflict if someone holds it); ack {ticket}."),
            incoming("ticket:transfer", TransferTicket, self.transfer, rate=_CHANGE,
                     ack=TICKET_ACK,
                     doc="Agents: {ticketId, queueId?, userId?, note?, version?}; "
                         "ack {ticket}."),
            incoming("ticket:close", CloseTicket, self.close, rate=_CHANGE,
                     ack=TICKET_ACK,
                     doc="Agents: {ticketId, note?, version?}; ack {ticket}."),
            incoming("ticket:reopen", ReopenTicket, self.reopen, rate=_CHANGE,
                     ack=TICKET_ACK,
                     doc="Agents: {ticketId, version?}; ack {ticket}."),
            incoming("agent:status", SetAgentStatus, self.set_agent_status,
                     ack=object_schema(userId=str, status=str),
                     rate=Rate(rate=1.0, burst=5.0),
                     doc="Agents: {status: online|busy|away|offline}; ack {userId, status}."),
            incoming("agent:list", None, self.list_agents,
                     ack=object_schema(agents={"type": "array", "items": object_schema(
                         userId=str, status=str)}),
                     doc="Agents: ack {agents: [{userId, status}]} of your tenant."),
            incoming("queue:list", None, self.list_queues, ack=object_schema(queues=list),
                     doc="Agents: ack {queues: [{id, name, strategy, members}]}."),
            *(outgoing(f"ticket:{kind}", rooms=["tenant:{tenantId}:agents", "user:{userId}"],
                       schema=CHANGE,
                       doc=f"To the agents and the ticket's customer: {{ticket, by, ...}} "
                           f"({kind}).")
              for kind in ("created", "updated", "assigned", "transferred", "status",
                           "closed", "reopened")),
            outgoing("ticket:message", rooms=["ticket:{ticketId}"],
                     schema=object_schema(message=dict, ticket=TICKET),
                     doc="To ticket:{id}: {message, ticket}, a message of the ticket's "
                         "conversation with its ticket."),
            outgoing("ticket:queued", rooms=["queue:{queueId}"], schema=object_schema(
                ticket=TICKET), doc="To queue:{id}: {ticket} waits for a free agent."),
            outgoing("ticket:message_unassigned", rooms=QUEUE_ROOMS,
                     schema=object_schema(message=dict, ticket=TICKET),
                     doc="To queue:{id} (agents room without a queue): {message, ticket}, "
                         "a customer wrote in a ticket nobody holds."),
            outgoing("agent:online", rooms=["tenant:{tenantId}:agents"], schema=AGENT,
                     doc="To the agents room: {userId, status, at}."),
            outgoing("agent:offline", rooms=["tenant:{tenantId}:agents"], schema=AGENT,
                     doc="To the agents room: {userId, status, at}."),
            outgoing("agent:status", rooms=["tenant:{tenantId}:agents"], schema=AGENT,
                     doc="To the agents room: {userId, status, at}."),
            outgoing("sla:warning", rooms=["user:{userId}", *QUEUE_ROOMS], schema=SLA,
                     doc="To the assignee and queue:{id}: {ticket, target, dueAt}, a target "
                         "is near."),
            outgoing("sla:breached", rooms=["user:{userId}", *QUEUE_ROOMS], schema=SLA,
                     doc="To the assignee and queue:{id}: {ticket, target, dueAt}, a target "
                         "passed."),
        ]

    def _agent(self, session: Session) -> None:
        if not self.tickets.app.is_agent(session):
            raise ClientError(FORBIDDEN, "only agents may do this")

    async def _visible(self, session: Session, ticket_id: str) -> Ticket:
        ticket = await self.tickets.get(session.tenant_id, ticket_id)
        if ticket is None or (not self.tickets.app.is_agent(session)
                              and ticket.customer_id != session.user_id):
            raise not_found(ticket_id)
        return ticket

    async def join(self, session: Session, ref: TicketRef) -> dict[str, Any]:
        app = self.tickets.app
        try:
            # the desk's join policy admits the tenant's agents and the ticket's
            # customer; a ticket it does not know is refused not_found, or with
            # unknown_tickets = "defer" left to the other policies (a join proxy)
            await app.join(session, TICKET_ROOM + ref.ticketId)
            ticket = await self.tickets.get(session.tenant_id, ref.ticketId)
            if ticket is not None:
                await app.join(session, "conversation:" + ticket.conversation_id)
        except ClientError as exc:
            return {"success": False, "ticketId": ref.ticketId, "error": exc.to_dict()}
        return {"success": True, "ticketId": ref.ticketId,
                "ticket": None if ticket is None else ticket.to_json()}

    async def leave(self, session: Session, ref: TicketRef) -> dict[str, Any]:
        app = self.tickets.app
        await app.leave(session, TICKET_ROOM + ref.ticketId)
        ticket = await self.tickets.get(session.tenant_id, ref.ticketId)
        if ticket is not None:
            await app.leave(session, "conversation:" + ticket.conversation_id)
        return {"success": True, "ticketId": ref.ticketId}

    async def get(self, session: Session, ref: TicketRef) -> dict[str, Any]:
        return _answer(await self._visible(session, ref.ticketId))

    async def list(self, session: Session, request: ListTickets) -> dict[str, Any]:
        self._agent(session)
        if request.status is not None:
            check_status(request.status)
        page = await self.tickets.list(
            session.tenant_id, status=request.status, queue_id=request.queueId,
            assignee_id=request.assigneeId, customer_id=request.customerId,
            before=request.before, limit=request.limit)
        return {"items": [t.to_json() for t in page.tickets], "nextBefore": page.next_before}

    async def create(self, session: Session, request: CreateTicket) -> dict[str, Any]:
        self._agent(session)
        return _answer(await self.tickets.create(
            session.tenant_id, subject=request.subject, customer_id=request.customerId,
            channel=request.channel, priority=request.priority, queue_id=request.queueId,
            assignee_id=request.assigneeId, tags=request.tags, by=session.user_id))

    async def update(self, session: Session, request: UpdateTicket) -> dict[str, Any]:
        self._agent(session)
        return _answer(await self.tickets.update(
            session.tenant_id, request.ticketId, version=request.version, by=session.user_id,
            subject=request.subject, priority=request.priority, tags=request.tags))

    async def set_status(self, session: Session, request: SetStatus) -> dict[str, Any]:
        self._agent(session)
        return _answer(await self.tickets.set_status(
            session.tenant_id, request.ticketId, check_status(request.status),
            version=request.version, by=session.user_id))

    async def assign(self, session: Session, request: AssignTicket) -> dict[str, Any]:
        self._agent(session)
        if request.unassign:
            assignee = None
        else:
            assignee = request.userId or session.user_id
        return _answer(await self.tickets.assign(
            session.tenant_id, request.ticketId, assignee, version=request.version,
            by=session.user_id, if_unassigned=request.userId is None and not request.unassign))

    async def transfer(self, session: Session, request: TransferTicket) -> dict[str, Any]:
        self._agent(session)
        return _answer(await self.tickets.transfer(
            session.tenant_id, request.ticketId, queue_id=request.queueId,
            assignee_id=request.userId, note=request.note, version=request.version,
            by=session.user_id))

    async def close(self, session: Session, request: CloseTicket) -> dict[str, Any]:
        self._agent(session)
        return _answer(await self.tickets.close(
            session.tenant_id, request.ticketId, note=request.note, version=request.version,
            by=session.user_id))

    async def reopen(self, session: Session, request: ReopenTicket) -> dict[str, Any]:
        self._agent(session)
        return _answer(await self.tickets.reopen(
            session.tenant_id, request.ticketId, version=request.version,
            by=session.user_id))

    async def set_agent_status(self, session: Session, request: SetAgentStatus
                               ) -> dict[str, Any]:
        self._agent(session)
        return await self.agents.set_status(session, request.status)

    async def list_agents(self, session: Session, _: Any) -> dict[str, Any]:
        self._agent(session)
        return {"agents": self.agents.statuses(session.tenant_id)}

    async def list_queues(self, session: Session, _: Any) -> dict[str, Any]:
        self._agent(session)
        return {"queues": await self.agents.describe(session.tenant_id)}
