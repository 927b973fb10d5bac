"""The handover plugin's socket events: thin handlers over the :class:`Handover` engine."""

from __future__ import annotations

from typing import Any

from switchboard.core import (
    ClientError,
    EventSpec,
    Rate,
    Session,
    incoming,
    object_schema,
    outgoing,
)

from .payloads import (
    AcceptHandover,
    CancelHandover,
    ListHandovers,
    RequestHandover,
    ResolveHandover,
    TransferHandover,
    pick_conversation,
)
from .service import Actor, Handover

#: A request for a human agent, as the events, acks and the HTTP API give it.
REQUEST = object_schema(
    "reason", "queue", "assignee", "consultantId", "note", "acceptedAt", "closedAt", "dueAt",
    id=int, conversationId=str, leadId=str, requestedBy=str, requesterRole=str,
    priority={"enum": ["low", "normal", "high", "urgent"]},
    status={"enum": ["pending", "accepted", "cancelled", "resolved", "expired"]},
    version=int, escalationLevel=int, widened=bool, createdAt=float, updatedAt=float,
    timestamp=str)
#: Where a pending request is announced: its queue, else the agents' room.
ANNOUNCED = ("queue:{queue}", "tenant:{tenantId}:agents")
#: The people concerned: the requester, the agents, the conversation's participants.
CONCERNED = ("user:{userId}",)


class HandoverEvents:
    def __init__(self, engine: Handover) -> None:
        self.engine = engine

    def specs(self) -> list[EventSpec]:
        return [
            incoming("handover:request", RequestHandover, self.request,
                     ack=REQUEST,
                     rate=Rate(rate=1.0, burst=5.0),
                     doc="{leadId|conversationId, reason?, priority?, queue?}: ask for a "
                         "human; ack the pending request."),
            incoming("handover:accept", AcceptHandover, self.accept,
                     ack=REQUEST,
                     rate=Rate(rate=5.0, burst=20.0),
                     doc="{requestId|leadId|conversationId, consultantId?}: take a pending "
                         "request (agents); ack it, or conflict with its state."),
            incoming("handover:transfer", TransferHandover, self.transfer,
                     ack=REQUEST,
                     rate=Rate(rate=2.0, burst=10.0),
                     doc="{requestId|leadId|conversationId, toAgentId|toQueue, note?}: "
                         "hand it to another agent or queue; ack it."),
            incoming("handover:cancel", CancelHandover, self.cancel,
                     ack=REQUEST,
                     rate=Rate(rate=2.0, burst=10.0),
                     doc="{requestId|leadId|conversationId, reason?}: withdraw a pending "
                         "request; ack it."),
            incoming("handover:resolve", ResolveHandover, self.resolve,
                     ack=REQUEST,
                     rate=Rate(rate=2.0, burst=10.0),
                     doc="{requestId|leadId|conversationId, returnToBot?, note?}: close an "
                         "accepted request (or hand it back to the bot); ack it."),
            incoming("handover:list", ListHandovers, self.list,
                     ack=object_schema("nextAfter", items={"type": "array", "items": REQUEST}),
                     rate=Rate(rate=2.0, burst=10.0),
                     doc="{status?, queue?, conversationId?, assignee?, priority?, after?, "
                         "limit?} (agents): ack {items, nextAfter}, oldest first."),
            outgoing("handover:new_request", rooms=ANNOUNCED, schema=REQUEST,
                     doc="To queue:{queue} (else tenant:{id}:agents): a pending request; "
                         "again at each escalation and after a transfer to a queue."),
            outgoing("handover:accepted", rooms=CONCERNED, schema=REQUEST,
                     doc="To user:{id} of the requester, the agent and the participants."),
            outgoing("handover:taken", rooms=ANNOUNCED, schema=REQUEST,
                     doc="To the room that heard the request: another agent took it."),
            outgoing("handover:transferred", rooms=CONCERNED, schema=REQUEST,
                     doc="To user:{id} of the requester, both agents and the participants."),
            outgoing("handover:cancelled", rooms=(*ANNOUNCED, *CONCERNED), schema=REQUEST,
                     doc="To the announcement room and user:{id} of those concerned."),
            outgoing("handover:resolved", rooms=CONCERNED, schema=REQUEST,
                     doc="To user:{id} of the requester, the agent and the participants."),
            outgoing("handover:escalated", rooms=(*ANNOUNCED, *CONCERNED), schema=REQUEST,
                     doc="To the announcement room and the requester: still unanswered."),
            outgoing("handover:expired", rooms=(*ANNOUNCED, *CONCERNED), schema=REQUEST,
                     doc="To the announcement room and user:{id} of those concerned."),
        ]

    async def request(self, session: Session, payload: RequestHandover) -> dict[str, Any]:
        conversation = pick_conversation(payload.conversationId, payload.leadId)
        if conversation is None:
            raise ClientError("invalid_payload", "leadId: give leadId or conversationId",
                              field="leadId")
        request = await self.engine.do_request(
            session.tenant_id, conversation, requested_by=session.user_id,
            requester_role=session.role, reason=payload.reason, priority=payload.priority,
            queue=payload.queue, actor=Actor.of(session))
        return request.to_json()

    async def accept(self, session: Session, payload: AcceptHandover) -> dict[str, Any]:
        if payload.consultantId is not None and payload.agentId is not None \
                and payload.consultantId != payload.agentId:
            raise ClientError("invalid_payload", "agentId: names another agent than "
                              "consultantId", field="agentId")
        agent = payload.agentId or payload.consultantId or session.user_id
        request = await self.engine.do_accept(session.tenant_id, payload.ref(), agent,
                                              agent_name=payload.agentName,
                                              actor=Actor.of(session))
        return request.to_json()

    async def transfer(self, session: Session, payload: TransferHandover) -> dict[str, Any]:
        request = await self.engine.do_transfer(
            session.tenant_id, payload.ref(), to_agent=payload.toAgentId,
            to_agent_name=payload.toAgentName, to_queue=payload.toQueue, note=payload.note,
            actor=Actor.of(session))
        return request.to_json()

    async def cancel(self, session: Session, payload: CancelHandover) -> dict[str, Any]:
        request = await self.engine.do_cancel(session.tenant_id, payload.ref(),
                                              reason=payload.reason, actor=Actor.of(session))
        return request.to_json()

    async def resolve(self, session: Session, payload: ResolveHandover) -> dict[str, Any]:
        request = await self.engine.do_resolve(session.tenant_id, payload.ref(),
                                               return_to_bot=payload.returnToBot,
                                               note=payload.note, actor=Actor.of(session))
        return {**request.to_json(), "returnedToBot": payload.returnToBot}

    async def list(self, session: Session, payload: ListHandovers) -> dict[str, Any]:
        if not self.engine.app.is_agent(session):
            raise ClientError("forbidden", "only agents list handovers")
        return await self.engine.page(
            session.tenant_id, status=payload.status, queue=payload.queue,
            conversation=payload.conversationId, assignee=payload.assignee,
            priority=payload.priority, after=payload.after, limit=payload.limit)
