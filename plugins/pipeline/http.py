"""The pipeline plugin's HTTP routes (API key): thin handlers over the
:class:`Pipelines` engine. A change made here is announced exactly like one
made over the socket."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request
from switchboard.core import (
    MAX_ROW_ID,
    ClientError,
    PipelineStage,
    api_key_tenant,
    check_identifier,
    documented,
    read_json,
    request_api_key,
    require_api_key,
    structure_body,
)
from switchboard.core.apidocs import IDENTIFIER

from .payloads import CreateLead, CreatePipeline, HttpAssign, HttpMove, HttpUpdate
from .service import Pipelines, not_found


def _pipeline_json(pipeline: Any) -> dict[str, Any]:
    return {"id": pipeline.id, "tenant": pipeline.tenant_id, "name": pipeline.name,
            "stages": [{"id": s.id, "name": s.name} for s in pipeline.stages]}


def _actor(given: str | None) -> str:
    if given is not None and (problem := check_identifier(given)) is not None:
        raise ClientError("invalid_payload", f"actor: {problem}", field="actor")
    return given or f"api:{request_api_key().name}"


def _number(name: str, *, low: int = 1, high: int = MAX_ROW_ID) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise ClientError("invalid_payload", f"{name}: must be an integer from {low} to "
                          f"{high}", field=name)
    return int(value)


TENANT = {"tenant": IDENTIFIER}
ACTOR = {"actor": str}
LEAD = {200: "the lead", 404: "no such lead",
        409: "`conflict`: the lead changed since `version`"}


def blueprint(pipelines: Pipelines) -> Blueprint:
    bp = Blueprint("pipeline", __name__)

    @bp.get("/api/v1/pipelines")
    @documented(
        "The tenant's pipelines and their stages", query=TENANT, responses={200: "`{pipelines}`"}
    )
    @require_api_key
    async def list_pipelines() -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        return {"pipelines": [_pipeline_json(p) for p in await pipelines.pipelines(tenant)]}

    @bp.post("/api/v1/pipelines")
    @documented(
        "Create a pipeline with its stages",
        body=CreatePipeline,
        responses={201: "the pipeline", 409: "a pipeline of that id exists"},
    )
    @require_api_key
    async def create_pipeline() -> Any:
        body = structure_body(await read_json(), CreatePipeline)
        tenant = api_key_tenant(body.tenant)
        pipeline = await pipelines.create_pipeline(
            tenant, body.id, body.name, [PipelineStage(s.id, s.name) for s in body.stages])
        return _pipeline_json(pipeline), 201

    @bp.get("/api/v1/pipelines/<pipeline_id>")
    @documented(
        "A pipeline and its stages",
        query=TENANT,
        responses={200: "the pipeline", 404: "no such pipeline"},
    )
    @require_api_key
    async def show_pipeline(pipeline_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        return _pipeline_json(await pipelines.require_pipeline(tenant, pipeline_id))

    @bp.get("/api/v1/pipelines/<pipeline_id>/stages/<stage_id>/leads")
    @documented(
        "A page of a stage's leads, in board order",
        query={
            **TENANT,
            "cursor": str,
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        responses={200: "`{leads, nextCursor}`", 404: "no such pipeline or stage"},
    )
    @require_api_key
    async def list_leads(pipeline_id: str, stage_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        cursor = request.args.get("cursor")
        page = await pipelines.list_leads(tenant, pipeline_id, stage_id, cursor=cursor,
                                          limit=_number("limit", high=1000))
        return {"leads": [lead.to_json() for lead in page.leads],
                "nextCursor": page.next_cursor}

    @bp.post("/api/v1/leads")
    @documented(
        "Create a lead in a stage",
        body=CreateLead,
        responses={201: "the lead", 409: "a lead of that id exists"},
    )
    @require_api_key
    async def create_lead() -> Any:
        body = structure_body(await read_json(), CreateLead)
        tenant = api_key_tenant(body.tenant)
        lead = await pipelines.create_lead(
            tenant, title=body.title, pipeline_id=body.pipelineId, stage_id=body.stageId,
            lead_id=body.id, contact=body.contact, value=body.value, owner_id=body.ownerId,
            customer_id=body.customerId, tags=body.tags, fields=body.fields,
            actor=_actor(body.actor))
        return lead.to_json(), 201

    @bp.get("/api/v1/leads/<lead_id>")
    @documented("A lead", query=TENANT, responses={200: "the lead", 404: "no such lead"})
    @require_api_key
    async def show_lead(lead_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        lead = await pipelines.get_lead(tenant, lead_id)
        if lead is None:
            raise not_found(lead_id)
        return lead.to_json()

    @bp.patch("/api/v1/leads/<lead_id>")
    @documented("Change a lead's fields", body=HttpUpdate, responses=LEAD)
    @require_api_key
    async def update_lead(lead_id: str) -> Any:
        body = structure_body(await read_json(), HttpUpdate)
        tenant = api_key_tenant(body.tenant)
        lead = await pipelines.update_lead(tenant, lead_id, body.changes,
                                           version=body.version, actor=_actor(body.actor))
        return lead.to_json()

    @bp.post("/api/v1/leads/<lead_id>/move")
    @documented("Move a lead to a stage, between two leads", body=HttpMove, responses=LEAD)
    @require_api_key
    async def move_lead(lead_id: str) -> Any:
        body = structure_body(await read_json(), HttpMove)
        tenant = api_key_tenant(body.tenant)
        lead = await pipelines.move_lead(tenant, lead_id, body.stageId, after_id=body.afterId,
                                         before_id=body.beforeId, version=body.version,
                                         actor=_actor(body.actor))
        return lead.to_json()

    @bp.post("/api/v1/leads/<lead_id>/assign")
    @documented("Give a lead an owner (or none)", body=HttpAssign, responses=LEAD)
    @require_api_key
    async def assign_lead(lead_id: str) -> Any:
        body = structure_body(await read_json(), HttpAssign)
        tenant = api_key_tenant(body.tenant)
        lead = await pipelines.assign_lead(tenant, lead_id, body.ownerId,
                                           version=body.version, actor=_actor(body.actor))
        return lead.to_json()

    @bp.delete("/api/v1/leads/<lead_id>")
    @documented(
        "Delete a lead",
        query={**TENANT, **ACTOR, "version": {"type": "integer", "minimum": 1, "maximum": 2**62}},
        responses={
            204: "deleted",
            404: "no such lead",
            409: "`conflict`: the lead changed since `version`",
        },
    )
    @require_api_key
    async def delete_lead(lead_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        version = _number("version", high=2**62)
        await pipelines.delete_lead(tenant, lead_id, version=version,
                                    actor=_actor(request.args.get("actor")))
        return "", 204

    @bp.get("/api/v1/leads/<lead_id>/activity")
    @documented(
        "A page of a lead's activity, newest first",
        query={
            **TENANT,
            "before": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        responses={200: "`{items, nextBefore}`", 404: "no such lead"},
    )
    @require_api_key
    async def activity(lead_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        return await pipelines.activity(tenant, lead_id, before=_number("before"),
                                        limit=_number("limit", high=1000))

    return bp


