"""The pipeline plugin's socket events: thin handlers over the :class:`Pipelines` engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from switchboard.core import (
    ClientError,
    EventSpec,
    Rate,
    Session,
    incoming,
    object_schema,
    outgoing,
    structure_payload,
)

from .payloads import (
    BOARD_ROOM,
    ActivityRequest,
    AssignLead,
    BoardRef,
    CreateLead,
    DeleteLead,
    LeadRef,
    ListLeads,
    MoveLead,
    UpdateLead,
)
from .service import Pipelines, not_found

CHANGES = Rate(rate=20.0, burst=40.0)
R = TypeVar("R")
Handler = Callable[[Session, Any], Awaitable[Any]]


def _pipeline_json(pipeline: Any) -> dict[str, Any]:
    return {"id": pipeline.id, "name": pipeline.name,
            "stages": [{"id": s.id, "name": s.name} for s in pipeline.stages]}


#: The rooms of a lead's changes: its pipeline's board and the lead's own.
LEAD_ROOMS = ("pipeline:{pipelineId}", "lead:{leadId}")
#: What the events about one lead answer (the lead as ``lead:get`` gives it).
LEAD = {"type": "object", "description": "The lead: {id, pipelineId, stageId, title, "
        "version, rank, ownerId, ...}."}
#: Every change of a lead carries these.
CHANGE = ("leadId", "pipelineId", "version", "by")


class PipelineEvents:
    def __init__(self, pipelines: Pipelines) -> None:
        self.pipelines = pipelines

    def specs(self) -> list[EventSpec]:
        return [
            incoming("pipeline:join", BoardRef, self.join_board,
                     ack=object_schema("id", "name", "stages"),
                     doc="Join the board room pipeline:{id} (agents); ack the pipeline "
                         "{id, name, stages}."),
            incoming("pipeline:leave", BoardRef, self.leave_board,
                     ack=object_schema(pipelineId=str),
                     doc="Leave pipeline:{id}; ack {pipelineId}."),
            incoming("pipeline:list", None, self.list_pipelines,
                     ack=object_schema(pipelines=list),
                     doc="Ack {pipelines: [{id, name, stages}]} of your tenant (agents)."),
            incoming("lead:list", ListLeads, self.list_leads,
                     ack=object_schema("leads", "nextCursor"),
                     doc="A stage's leads in board order: ack {leads, nextCursor}."),
            self.about_lead("lead:get", LeadRef, self.get, ack=LEAD,
                            doc="Ack the lead (agents, and the lead's own customer)."),
            incoming("lead:create", CreateLead, self.create, rate=CHANGES, ack=LEAD,
                     doc="Create a lead with its conversation; ack the lead."),
            self.about_lead("lead:update", UpdateLead, self.update, rate=CHANGES, ack=LEAD,
                            doc="Change fields {leadId, changes, version?}; ack the lead, "
                                "conflict with the current one when stale."),
            self.about_lead("lead:move", MoveLead, self.move, rate=CHANGES, ack=LEAD,
                            doc="Move {leadId, stageId, afterId?|beforeId?, version?}; "
                                "ack the lead."),
            self.about_lead("lead:assign", AssignLead, self.assign, rate=CHANGES, ack=LEAD,
                            doc="Give the lead to {ownerId} (null: nobody); ack the lead."),
            self.about_lead("lead:delete", DeleteLead, self.delete, rate=CHANGES,
                            ack=object_schema(leadId=str, deleted=bool),
                            doc="Delete the lead {leadId, version?}; ack {leadId, deleted: true}."),
            self.about_lead("lead:activity", ActivityRequest, self.activity,
                            ack=object_schema("entries", "nextBefore"),
                            doc="The lead's activity log, newest first: "
                                "ack {entries, nextBefore}."),
            outgoing("lead:created", rooms=LEAD_ROOMS, schema=object_schema(*CHANGE, "lead"),
                     doc="To pipeline:{id} and lead:{id}: {leadId, pipelineId, version, "
                         "by, lead}."),
            outgoing("lead:updated", rooms=LEAD_ROOMS,
                     schema=object_schema(*CHANGE, changes=dict),
                     doc="{leadId, pipelineId, version, by, changes} (the changed fields "
                         "only)."),
            outgoing("lead:moved", rooms=LEAD_ROOMS,
                     schema=object_schema(*CHANGE, "stageId", "rank", optional=["fromStageId"]),
                     doc="{leadId, pipelineId, version, by, fromStageId, stageId, rank}."),
            outgoing("lead:assigned", rooms=LEAD_ROOMS,
                     schema=object_schema(*CHANGE, "ownerId", optional=["previousOwnerId"]),
                     doc="{leadId, pipelineId, version, by, ownerId, previousOwnerId}."),
            outgoing("lead:deleted", rooms=LEAD_ROOMS, schema=object_schema(*CHANGE),
                     doc="{leadId, pipelineId, version, by}."),
            outgoing("stage:reranked", rooms=["pipeline:{pipelineId}"],
                     schema=object_schema("pipelineId", "stageId", ranks=dict),
                     doc="To pipeline:{id}: {pipelineId, stageId, ranks: {leadId: rank}}, "
                         "a stage renumbered (rare)."),
        ]

    def about_lead(self, name: str, cls: type[R],
                   handler: Callable[[Session, R], Awaitable[Any]], *, doc: str,
                   rate: Rate | None = None, ack: Any = None) -> EventSpec:
        """An incoming event about one lead (see :meth:`lead_event`): its
        payload is ``cls``, checked by the handler."""
        return incoming(name, None, self.lead_event(name, cls, handler), rate=rate, doc=doc,
                        schema=cls, ack=ack)

    def lead_event(self, name: str, cls: type[R],
                   handler: Callable[[Session, R], Awaitable[Any]]) -> Handler:
        """The handler of an event about one lead. Its payload is checked here
        rather than by the event's declaration so that an event this plugin
        cannot take (a payload of another shape, a lead it does not know) is
        offered to the event proxy (the deployment's backend, which may own
        that lead); when no proxy takes it, the plugin's own error answers."""

        async def handle(session: Session, data: Any) -> Any:
            try:
                request = structure_payload({} if data is None else data, cls)
            except ClientError as refused:
                return await self._backend_or(session, name, data, refused)
            try:
                return await handler(session, request)
            except ClientError as exc:
                if exc.code == "not_found" and exc.extra.get("leadId") == getattr(
                        request, "leadId", None):
                    return await self._backend_or(session, name, data, exc)
                raise

        return handle

    async def _backend_or(self, session: Session, name: str, data: Any,
                          error: ClientError) -> Any:
        try:
            return await self.pipelines.app.offer_unhandled(session, name, data)
        except ClientError as exc:
            if exc.code == "unknown_event":  # no proxy takes it: ours is the answer
                raise error from None
            raise

    def _agent(self, session: Session) -> None:
        if not self.pipelines.app.is_agent(session):
            raise ClientError("forbidden", "only the tenant's agents may do this")

    async def join_board(self, session: Session, ref: BoardRef) -> dict[str, Any]:
        pipeline = await self.pipelines.require_pipeline(session.tenant_id, ref.pipelineId)
        await self.pipelines.app.join(session, BOARD_ROOM + pipeline.id)
        return _pipeline_json(pipeline)

    async def leave_board(self, session: Session, ref: BoardRef) -> dict[str, Any]:
        pipeline = await self.pipelines.get_pipeline(session.tenant_id, ref.pipelineId)
        pipeline_id = pipeline.id if pipeline is not None else ref.pipelineId
        if pipeline_id is not None:
            await self.pipelines.app.leave(session, BOARD_ROOM + pipeline_id)
        return {"pipelineId": pipeline_id}

    async def list_pipelines(self, session: Session, _: None) -> dict[str, Any]:
        self._agent(session)
        return {"pipelines": [_pipeline_json(p)
                              for p in await self.pipelines.pipelines(session.tenant_id)]}

    async def list_leads(self, session: Session, request: ListLeads) -> dict[str, Any]:
        self._agent(session)
        pipeline = await self.pipelines.require_pipeline(session.tenant_id, request.pipelineId)
        page = await self.pipelines.list_leads(session.tenant_id, pipeline.id,
                                               request.stageId, cursor=request.cursor,
                                               limit=request.limit)
        return {"leads": [lead.to_json() for lead in page.leads],
                "nextCursor": page.next_cursor}

    async def get(self, session: Session, ref: LeadRef) -> dict[str, Any]:
        lead = await self.pipelines.get_lead(session.tenant_id, ref.leadId)
        if lead is None or not (self.pipelines.app.is_agent(session)
                                or lead.customer_id == session.user_id):
            raise not_found(ref.leadId)  # another customer's lead is not theirs to know of
        return lead.to_json()

    async def create(self, session: Session, request: CreateLead) -> dict[str, Any]:
        self._agent(session)
        lead = await self.pipelines.create_lead(
            session.tenant_id, title=request.title, pipeline_id=request.pipelineId,
            stage_id=request.stageId, lead_id=request.id, contact=request.contact,
            value=request.value, owner_id=request.ownerId, customer_id=request.customerId,
            tags=request.tags, fields=request.fields, actor=session.user_id)
        return lead.to_json()

    async def update(self, session: Session, request: UpdateLead) -> dict[str, Any]:
        self._agent(session)
        lead = await self.pipelines.update_lead(session.tenant_id, request.leadId,
                                                request.changes, version=request.version,
                                                actor=session.user_id)
        return lead.to_json()

    async def move(self, session: Session, request: MoveLead) -> dict[str, Any]:
        self._agent(session)
        lead = await self.pipelines.move_lead(
            session.tenant_id, request.leadId, request.stageId, after_id=request.afterId,
            before_id=request.beforeId, version=request.version, actor=session.user_id)
        return lead.to_json()

    async def assign(self, session: Session, request: AssignLead) -> dict[str, Any]:
        self._agent(session)
        lead = await self.pipelines.assign_lead(session.tenant_id, request.leadId,
                                                request.ownerId, version=request.version,
                                                actor=session.user_id)
        return lead.to_json()

    async def delete(self, session: Session, request: DeleteLead) -> dict[str, Any]:
        self._agent(session)
        await self.pipelines.delete_lead(session.tenant_id, request.leadId,
                                         version=request.version, actor=session.user_id)
        return {"leadId": request.leadId, "deleted": True}

    async def activity(self, session: Session, request: ActivityRequest) -> dict[str, Any]:
        self._agent(session)
        return await self.pipelines.activity(session.tenant_id, request.leadId,
                                             before=request.before, limit=request.limit)

