"""The pipeline engine: pipelines, leads and their changes, who may see them,
and the service other plugins get with ``app.service("pipeline")``.

The socket events (``events.py``) and the HTTP routes (``http.py``) are thin
layers over this object, so a change made from a socket, over HTTP or by
another plugin goes the same way: checked, stored with its activity entry
(refused ``conflict`` when the version is stale), broadcast to
``pipeline:{id}`` and ``lead:{id}``, and reported to
``switchboard_pipeline_lead_changed``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from switchboard.core import (
    App,
    Batcher,
    ChatParticipant,
    ClientError,
    Lead,
    LeadAction,
    LeadChange,
    LeadPage,
    Pipeline,
    PipelineStage,
    Session,
    StoreUnavailable,
)

from .payloads import (
    BOARD_ROOM,
    LEAD_ROOM,
    PipelineSettings,
    check_changes,
    check_contact,
    check_fields,
    check_lead_id,
    check_tags,
    check_title,
    check_user_id,
    check_value,
    id_problem,
    invalid,
)
from .storage import (
    COLUMNS,
    RERANKED,
    Changed,
    Conflict,
    Missing,
    Op,
    PipelineStorage,
    Plan,
    decode_cursor,
    encode_cursor,
)

log = logging.getLogger("switchboard.pipeline")

LEAD_CHANGED = "switchboard_pipeline_lead_changed"
#: The event each action is broadcast as.
EVENTS: dict[LeadAction, str] = {"created": "lead:created", "updated": "lead:updated",
                                 "moved": "lead:moved", "assigned": "lead:assigned",
                                 "deleted": "lead:deleted"}


def lead_of(row: Mapping[str, Any]) -> Lead:
    return Lead(
        tenant_id=row["tenant_id"], id=row["id"], pipeline_id=row["pipeline_id"],
        stage_id=row["stage_id"], rank=row["rank"], title=row["title"],
        contact=dict(row["contact"] or {}), value=row["value"], owner_id=row["owner_id"],
        customer_id=row["customer_id"], tags=tuple(row["tags"] or ()),
        fields=dict(row["fields"] or {}), version=int(row["version"]),
        created_at=row["created_at"], updated_at=row["updated_at"])


def not_found(lead_id: str) -> ClientError:
    return ClientError("not_found", f"no lead {lead_id!r}", leadId=lead_id)


def conflict(lead: Lead, message: str | None = None, field: str | None = None) -> ClientError:
    return ClientError("conflict", message or f"lead {lead.id!r} changed since: it is at "
                       f"version {lead.version}", field=field, lead=lead.to_json())


class Pipelines:
    """The pipeline plugin at work; an implementation of
    :class:`switchboard.core.PipelineService`."""

    app: App
    settings: PipelineSettings

    def __init__(self, storage: PipelineStorage) -> None:
        self.storage = storage
        #: The batch writer of changes: one transaction per batch, and the
        #: broadcasts in commit order (a lead's events leave in version order).
        self._writer: Batcher[Op, Any] | None = None
        self._report = False

    def start(self, app: App, settings: PipelineSettings) -> Batcher[Op, Any]:
        """Bind to the running server; return the writer, for the plugin to run."""
        self.app = app
        self.settings = settings
        self.storage.store = app.store
        self._report = app.implements(LEAD_CHANGED)
        # A batch the database refused (not one it could not take) is written
        # again change by change: a bad change fails alone.
        self._writer = Batcher(self._write_batch, max_batch=settings.max_batch,
                               min_interval=settings.batch_interval,
                               retry_alone=lambda exc: not isinstance(exc, StoreUnavailable))
        return self._writer

    # -- pipelines ---------------------------------------------------------------------

    def _configured(self, tenant: str) -> list[Pipeline]:
        return [Pipeline(tenant, p.id, p.name, tuple(PipelineStage(s.id, s.name)
                                                     for s in p.stages))
                for p in self.settings.pipelines if p.tenant in ("*", tenant)]

    async def pipelines(self, tenant: str) -> list[Pipeline]:
        """The tenant's pipelines: from config, then those created over HTTP."""
        found = self._configured(tenant)
        known = {p.id for p in found}
        for row in await self.storage.stored_pipelines(tenant):
            if row["id"] not in known:
                found.append(_stored_pipeline(tenant, row))
        return found

    async def get_pipeline(self, tenant_id: str,
                           pipeline_id: str | None = None) -> Pipeline | None:
        configured = self._configured(tenant_id)
        if pipeline_id is None:
            default = next((p for p, c in zip(configured, self._configs(tenant_id),
                                               strict=True) if c.default), None)
            if default is not None:
                return default
            return configured[0] if configured else None
        found = next((p for p in configured if p.id == pipeline_id), None)
        if found is not None:
            return found
        if id_problem(pipeline_id, BOARD_ROOM) is not None:
            return None
        row = await self.storage.stored_pipeline(tenant_id, pipeline_id)
        return _stored_pipeline(tenant_id, row) if row is not None else None

    def _configs(self, tenant: str) -> list[Any]:
        return [p for p in self.settings.pipelines if p.tenant in ("*", tenant)]

    async def create_pipeline(self, tenant: str, pipeline_id: str, name: str,
                              stages: list[PipelineStage]) -> Pipeline:
        if any(p.id == pipeline_id for p in self._configured(tenant)) or not \
                await self.storage.create_pipeline(
                    tenant, pipeline_id, name, [{"id": s.id, "name": s.name} for s in stages],
                    time.time()):
            raise ClientError("conflict", f"pipeline {pipeline_id!r} exists",
                              pipelineId=pipeline_id)
        return Pipeline(tenant, pipeline_id, name, tuple(stages))

    async def require_pipeline(self, tenant: str, pipeline_id: str | None,
                        field: str = "pipelineId") -> Pipeline:
        pipeline = await self.get_pipeline(tenant, pipeline_id)
        if pipeline is None:
            if pipeline_id is None:
                raise ClientError("not_found", "this tenant has no pipeline")
            raise ClientError("not_found", f"no pipeline {pipeline_id!r}", field=field,
                              pipelineId=pipeline_id)
        return pipeline

    # -- reading ----------------------------------------------------------------------

    async def get_lead(self, tenant_id: str, lead_id: str) -> Lead | None:
        if id_problem(lead_id, LEAD_ROOM) is not None:
            return None
        row = await self.storage.lead(tenant_id, lead_id)
        return lead_of(row) if row is not None else None

    async def _existing(self, tenant: str, lead_id: str) -> Lead:
        lead = await self.get_lead(tenant, check_lead_id(lead_id))
        if lead is None:
            raise not_found(lead_id)
        return lead

    async def list_leads(self, tenant_id: str, pipeline_id: str, stage_id: str, *,
                         cursor: str | None = None, limit: int | None = None) -> LeadPage:
        pipeline = await self.require_pipeline(tenant_id, pipeline_id)
        if pipeline.stage(stage_id) is None:
            raise ClientError("not_found", f"no stage {stage_id!r} in {pipeline.id!r}",
                              field="stageId")
        size = min(limit or self.settings.page_size, self.settings.page_max)
        after = decode_cursor(cursor) if cursor is not None else None
        rows = await self.storage.page(tenant_id, pipeline.id, stage_id, after=after,
                                       size=size)
        leads = [lead_of(row) for row in rows[:size]]
        more = len(rows) > size
        return LeadPage(leads, encode_cursor(leads[-1].rank, leads[-1].id) if more else None)

    async def activity(self, tenant: str, lead_id: str, *, before: int | None = None,
                       limit: int | None = None) -> dict[str, Any]:
        """A page of a lead's activity log, newest first (kept after a delete)."""
        check_lead_id(lead_id)
        size = min(limit or self.settings.page_size, self.settings.page_max)
        rows = await self.storage.activity_page(tenant, lead_id, before=before, size=size)
        entries = [{"id": r["id"], "version": r["version"], "action": r["action"],
                    "by": r["actor"], "changes": r["changes"], "at": r["at"]}
                   for r in rows[:size]]
        if not entries and await self.get_lead(tenant, lead_id) is None:
            raise not_found(lead_id)
        more = len(rows) > size
        return {"leadId": lead_id, "entries": entries,
                "nextBefore": entries[-1]["id"] if more else None}

    # -- who may see what ---------------------------------------------------------------

    async def may_join_lead(self, session: Session, lead_id: str) -> bool | None:
        """The lead's room: the tenant's agents and the lead's own customer."""
        lead = await self.get_lead(session.tenant_id, lead_id)
        if lead is None:
            if self.settings.unknown_leads == "defer":
                return None
            raise not_found(lead_id)
        return self.app.is_agent(session) or session.user_id == lead.customer_id

    async def may_join_board(self, session: Session, pipeline_id: str) -> bool | None:
        """A board: the tenant's agents."""
        if await self.get_pipeline(session.tenant_id, pipeline_id) is None:
            if self.settings.unknown_leads == "defer":
                return None
            raise ClientError("not_found", f"no pipeline {pipeline_id!r}",
                              pipelineId=pipeline_id)
        return self.app.is_agent(session)

    # -- changing -------------------------------------------------------------------------

    def _running(self) -> Batcher[Op, Any]:
        if self._writer is None:
            raise RuntimeError("the pipeline service is used before the pipeline plugin "
                               "started: call it from events, routes, hooks or tasks")
        return self._writer

    async def _write_batch(self, ops: Sequence[Op]) -> list[Any]:
        """Write a batch of changes in one transaction, then broadcast each
        change made, in commit order, before anyone is answered."""
        results = await self.storage.write(ops)
        for result in results:
            if isinstance(result, Announcement):
                await self._reranked(result.lead, result.reranked)
                await self._announce(result.action, result.lead, result.changes,
                                     result.actor, result.extra)
        return results

    async def _submit(self, tenant: str, lead_id: str, op: Op) -> Any:
        result = await self._running().submit(op)
        if isinstance(result, Missing):
            raise not_found(lead_id)
        if isinstance(result, Conflict):
            raise conflict(lead_of(result.row))
        if isinstance(result, ClientError):
            if result.code == "conflict":  # a neighbour moved away meanwhile
                current = await self.get_lead(tenant, lead_id)
                if current is not None:
                    raise conflict(current, result.message, result.field)
            raise result
        return result

    async def _announce(self, action: LeadAction, lead: Lead, changes: dict[str, Any],
                        actor: str, extra: Mapping[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"leadId": lead.id, "pipelineId": lead.pipeline_id,
                                "version": lead.version, "by": actor}
        if action == "created":
            data["lead"] = lead.to_json()
        elif action == "updated":
            data["changes"] = changes
        elif action == "moved":
            data.update(stageId=lead.stage_id, rank=lead.rank)
        elif action == "assigned":
            data["ownerId"] = lead.owner_id
        data.update(extra or {})
        event = EVENTS[action]
        board = BOARD_ROOM + lead.pipeline_id
        try:
            await self.app.publish(lead.tenant_id, board, event, data)
            # the detail views: once to a session that has the board open too
            await self.app.publish(lead.tenant_id, LEAD_ROOM + lead.id, event, data,
                                   skip_room=board)
        except Exception:  # stored is stored: the change is not undone
            log.exception("broadcasting %s of lead %s failed", event, lead.id)
        if self._report:
            self.app.notify_soon(LEAD_CHANGED, change=LeadChange(
                lead.tenant_id, action, lead, changes, actor))

    async def _reranked(self, lead: Lead, ranks: dict[str, str]) -> None:
        """The stage was renumbered to fit ``lead`` in: its board gets the new ranks."""
        if ranks:
            await self.app.publish(lead.tenant_id, BOARD_ROOM + lead.pipeline_id,
                                   "stage:reranked", {"pipelineId": lead.pipeline_id,
                                                      "stageId": lead.stage_id,
                                                      "ranks": ranks})

    async def create_lead(self, tenant_id: str, *, title: str,
                          pipeline_id: str | None = None, stage_id: str | None = None,
                          lead_id: str | None = None, contact: Mapping[str, Any] | None = None,
                          value: float | None = None, owner_id: str | None = None,
                          customer_id: str | None = None, tags: Iterable[str] = (),
                          fields: Mapping[str, Any] | None = None,
                          actor: str = "system", after_id: str | None = None,
                          before_id: str | None = None) -> Lead:
        pipeline = await self.require_pipeline(tenant_id, pipeline_id)
        stage = stage_id if stage_id is not None else pipeline.stages[0].id
        if pipeline.stage(stage) is None:
            raise invalid("stageId", f"no stage {stage!r} in pipeline {pipeline.id!r}")
        new_id = check_lead_id(lead_id, "id") if lead_id is not None else secrets.token_hex(8)
        now = time.time()
        row = {"tenant_id": tenant_id, "id": new_id, "pipeline_id": pipeline.id,
               "stage_id": stage, "title": check_title(title),
               "contact": check_contact(contact), "value": check_value(value),
               "owner_id": check_user_id(owner_id, "ownerId"),
               "customer_id": check_user_id(customer_id, "customerId"),
               "tags": list(check_tags(tags if tags is None or isinstance(tags, list | tuple | str)
                                      else list(tags))),
               "fields": check_fields(fields), "version": 1, "created_at": now,
               "updated_at": now}
        for field, value_ in (("afterId", after_id), ("beforeId", before_id)):
            if value_ is not None:
                check_lead_id(value_, field)
        record = {"title": row["title"], "pipelineId": pipeline.id, "stageId": stage}
        stored = await self._submit(tenant_id, new_id, Op(tenant_id, lambda conn: (
            self.storage.create_lead(conn, row, after_id=after_id, before_id=before_id,
                                     actor=actor, record=record))))
        if stored is None:
            raise ClientError("conflict", f"lead {new_id!r} exists", field="id", leadId=new_id)
        reranked = stored.pop(RERANKED)
        lead = lead_of(stored)
        # its conversation first, so that a client told of the lead can join it
        await self._open_conversation(lead)
        await self._reranked(lead, reranked)
        await self._announce("created", lead, record, actor)
        return lead

    async def _open_conversation(self, lead: Lead) -> None:
        """The lead's chat, with its customer and owner (when the chat plugin is on)."""
        try:
            chat = self.app.service("chat")
        except LookupError:
            return
        participants = []
        if lead.customer_id is not None:
            participants.append(ChatParticipant(lead.customer_id, "customer"))
        if lead.owner_id is not None and lead.owner_id != lead.customer_id:
            participants.append(ChatParticipant(lead.owner_id, "agent"))
        _, created = await chat.get_or_create_conversation(
            lead.tenant_id, lead.conversation_id, title=lead.title[:500],
            participants=participants)
        if not created:
            for participant in participants:
                await chat.add_participant(lead.tenant_id, lead.conversation_id,
                                           participant.user_id, participant.role)

    async def _change(self, tenant: str, lead_id: str, action: LeadAction, *,
                      version: int | None, actor: str, plan: Plan,
                      extra: Callable[[Changed], dict[str, Any]] | None = None,
                      last_rank_in: str | None = None) -> Lead:
        check_lead_id(lead_id)
        at = time.time()

        def apply(conn: Any) -> Announcement:
            changed = self.storage.change(conn, tenant, lead_id, version=version,
                                          action=action, actor=actor, at=at, plan=plan,
                                          last_rank_in=last_rank_in)
            return Announcement(action, lead_of(changed.after), changed.changes, actor,
                                extra(changed) if extra is not None else {},
                                changed.reranked)

        done: Announcement = await self._submit(tenant, lead_id, Op(tenant, apply))
        return done.lead

    async def update_lead(self, tenant_id: str, lead_id: str, changes: Mapping[str, Any], *,
                          version: int | None = None, actor: str = "system") -> Lead:
        checked = check_changes(changes)

        def plan(_: Any, current: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in checked.items()
                    if current[_column(k)] != v} or checked

        lead = await self._change(tenant_id, lead_id, "updated", version=version, actor=actor,
                                  plan=plan)
        if "customerId" in checked and lead.customer_id is not None:
            await self._open_conversation(lead)
        return lead

    def _stages_in(self, conn: Any, tenant: str, pipeline_id: str) -> list[str]:
        for config in self.settings.pipelines:  # (the first configured for the tenant)
            if config.id == pipeline_id and config.tenant in ("*", tenant):
                return [stage.id for stage in config.stages]
        return self.storage.stage_ids(conn, tenant, pipeline_id)

    async def move_lead(self, tenant_id: str, lead_id: str, stage_id: str, *,
                        after_id: str | None = None, before_id: str | None = None,
                        version: int | None = None, actor: str = "system") -> Lead:
        check_lead_id(lead_id)
        for field, value in (("afterId", after_id), ("beforeId", before_id)):
            if value is not None and check_lead_id(value, field) == lead_id:
                raise invalid(field, "a lead cannot be placed next to itself")
        if not isinstance(stage_id, str) or not stage_id:
            raise invalid("stageId", "must be a stage id")
        rank = self.storage.rank_plan(tenant_id, stage_id, after_id, before_id)

        def plan(conn: Any, row: dict[str, Any]) -> dict[str, Any]:
            if stage_id not in self._stages_in(conn, tenant_id, row["pipeline_id"]):
                raise invalid("stageId", f"no stage {stage_id!r} in pipeline "
                              f"{row['pipeline_id']!r}")
            new_rank, reranked = rank(conn, row)
            return {"stageId": stage_id, "rank": new_rank, RERANKED: reranked}

        return await self._change(
            tenant_id, lead_id, "moved", version=version, actor=actor, plan=plan,
            extra=lambda c: {"fromStageId": c.before["stage_id"]},
            # to the end of the stage: its last rank is read with the lead
            last_rank_in=stage_id if after_id is None and before_id is None else None)

    async def assign_lead(self, tenant_id: str, lead_id: str, owner_id: str | None, *,
                          version: int | None = None, actor: str = "system") -> Lead:
        owner = check_user_id(owner_id, "ownerId")
        lead = await self._change(
            tenant_id, lead_id, "assigned", version=version, actor=actor,
            plan=lambda _c, _r: {"ownerId": owner},
            extra=lambda c: {"previousOwnerId": c.before["owner_id"]})
        if owner is not None:
            await self._open_conversation(lead)
        return lead

    async def delete_lead(self, tenant_id: str, lead_id: str, *,
                          version: int | None = None, actor: str = "system") -> Lead:
        check_lead_id(lead_id)
        at = time.time()

        def apply(conn: Any) -> Announcement:
            row = self.storage.delete(conn, tenant_id, lead_id, version=version, actor=actor,
                                      at=at)
            return Announcement("deleted", lead_of({**row, "version": row["version"] + 1}),
                                {}, actor, {}, {})

        done: Announcement = await self._submit(tenant_id, lead_id, Op(tenant_id, apply))
        return done.lead


@attrs.frozen
class Announcement:
    """A change as committed, for the writer to broadcast."""

    action: LeadAction
    lead: Lead
    changes: dict[str, Any]
    actor: str
    extra: dict[str, Any]
    reranked: dict[str, str]


def _column(name: str) -> str:
    return COLUMNS[name]


def _stored_pipeline(tenant: str, row: Mapping[str, Any]) -> Pipeline:
    return Pipeline(tenant, row["id"], row["name"],
                    tuple(PipelineStage(s["id"], s["name"]) for s in row["stages"]))
