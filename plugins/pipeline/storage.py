"""The pipeline plugin's tables and every statement it runs on them.

Reads are one transaction each. Changes of leads are batched (``write``):
concurrent changes share one transaction, serialized on their tenants'
boards (``serialize_on``), each applied in order and seeing the ones before
it, so the rank of a moved card is computed from its neighbours as they are,
and a stale ``version`` is refused against the current one; a refused change
writes nothing and does not fail the others. SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from switchboard.core import ClientError, Store
from switchboard.core.protocol import jsontext

from . import ranks
from .payloads import MAX_TITLE_LENGTH

#: A rank longer than this renumbers its stage instead (see ``_rebalance``).
REBALANCE_AT = 40
#: Key of a plan's changes (and a created row) that carries the renumbered
#: ranks of the stage's other leads; not a column.
RERANKED = "_reranked"
#: Key of the row a change reads (``change(last_rank_in=...)``) that carries
#: the highest rank of a stage without the lead (None: the stage is empty).
LAST_RANK = "_last_rank"
#: LIMIT 1, written into the statement (a plan made for any limit may read on)
_ONE: sa.ColumnClause[int] = sa.literal_column("1")
#: Columns of JSON values (SQLite's driver gives them as text, psycopg decoded).
_JSON_COLUMNS = frozenset({"contact", "tags", "fields"})
#: Columns a change may set, by client name.
COLUMNS = {"title": "title", "contact": "contact", "value": "value",
           "customerId": "customer_id", "tags": "tags", "fields": "fields",
           "ownerId": "owner_id", "stageId": "stage_id", "rank": "rank"}


def _rank_type() -> sa.types.TypeEngine[str]:
    # Ranks compare as bytes: PostgreSQL's default collation would not.
    return sa.String(ranks.MAX_RANK_LENGTH + 10).with_variant(
        sa.String(ranks.MAX_RANK_LENGTH + 10, collation="C"), "postgresql")


def encode_cursor(rank: str, lead_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([rank, lead_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:  # (depth-bounded: a cursor is the client's, base64 of anything)
        rank, lead_id = jsontext.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, UnicodeError):
        raise ClientError("invalid_payload", "cursor: not a cursor this server gave",
                          field="cursor") from None
    if not isinstance(rank, str) or not isinstance(lead_id, str):
        raise ClientError("invalid_payload", "cursor: not a cursor this server gave",
                          field="cursor")
    return rank, lead_id


@attrs.frozen
class Changed:
    """A change as committed: the row before and after, what changed."""

    before: dict[str, Any]
    after: dict[str, Any]
    #: client name -> new value
    changes: dict[str, Any]
    #: lead id -> new rank of the other leads of a stage that was renumbered
    reranked: dict[str, str] = attrs.Factory(dict)


class Conflict(Exception):
    """A stale version: the lead's current row."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__("conflict")
        self.row = row


class Missing(Exception):
    """No such lead."""


#: (conn, current row) -> the changes to make (client names).
Plan = Callable[[sa.Connection, dict[str, Any]], dict[str, Any]]


#: Where a batch's transaction collects its activity entries (``conn.info``).
_ACTIVITY = "pipeline_activity"


def _log(conn: sa.Connection, **entry: Any) -> None:
    """An entry of a lead's activity log, written at the end of the batch."""
    conn.info.setdefault(_ACTIVITY, []).append(entry)


@attrs.frozen
class Op:
    """One change for the batch writer: ``apply(conn)`` inside the batch's
    transaction (serialized on the tenant's board)."""

    tenant: str
    apply: Callable[[sa.Connection], Any]


class PipelineStorage:
    """The tables ``pipeline_pipelines``, ``pipeline_leads`` and ``pipeline_activity``."""

    store: Store

    def __init__(self) -> None:
        self.pipelines: sa.Table | None = None
        self.leads: sa.Table | None = None
        self.activity: sa.Table | None = None

    def declare(self, metadata: sa.MetaData) -> None:
        self.pipelines = sa.Table(
            "pipeline_pipelines", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("id", sa.String(200), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("stages", sa.JSON, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        )
        self.leads = sa.Table(
            "pipeline_leads", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("id", sa.String(200), primary_key=True),
            sa.Column("pipeline_id", sa.String(200), nullable=False),
            sa.Column("stage_id", sa.String(200), nullable=False),
            sa.Column("rank", _rank_type(), nullable=False),
            sa.Column("title", sa.String(MAX_TITLE_LENGTH), nullable=False),
            sa.Column("contact", sa.JSON, nullable=False),
            sa.Column("value", sa.Float),
            sa.Column("owner_id", sa.String(200)),
            sa.Column("customer_id", sa.String(200)),
            sa.Column("tags", sa.JSON, nullable=False),
            sa.Column("fields", sa.JSON, nullable=False),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Index("pipeline_leads_by_stage", "tenant_id", "pipeline_id", "stage_id",
                     "rank", "id"),
        )
        self.activity = sa.Table(
            "pipeline_activity", metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                      primary_key=True, autoincrement=True),
            sa.Column("tenant_id", sa.String(200), nullable=False),
            sa.Column("lead_id", sa.String(200), nullable=False),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("action", sa.String(20), nullable=False),
            sa.Column("actor", sa.String(200), nullable=False),
            sa.Column("changes", sa.JSON, nullable=False),
            sa.Column("at", sa.Float, nullable=False),
            sa.Index("pipeline_activity_by_lead", "tenant_id", "lead_id", "id"),
        )

        self._prepare_statements(self.leads)

    def _prepare_statements(self, leads: sa.Table) -> None:
        """The statements a change runs, built once with bound parameters:
        building a SQLAlchemy statement costs more CPU than running it on
        SQLite, and a batch runs several per change while holding the GIL
        the event loop needs (SQLAlchemy caches the compiled form of each)."""
        c = leads.c
        bp = sa.bindparam
        this = (c.tenant_id == bp("tenant"), c.id == bp("lead_id"))
        self._select_lead = sa.select(leads).where(*this)
        # the lead, and the end of the stage it is moved to: one statement
        # (a round trip less per move on PostgreSQL)
        other = leads.alias("other")
        # (the top rank by ORDER BY ... LIMIT 1, as in ``_last_rank``)
        self._select_lead_and_last = sa.select(leads, sa.select(other.c.rank).where(
            other.c.tenant_id == c.tenant_id, other.c.pipeline_id == c.pipeline_id,
            other.c.stage_id == bp("stage"), other.c.id != c.id
        ).order_by(other.c.rank.desc()).limit(_ONE).scalar_subquery().label(LAST_RANK)
        ).where(*this)
        self._lead_exists = sa.select(c.id).where(*this)
        self._delete_lead = leads.delete().where(*this)
        #: by whether the lead placed is already in the table (moved): then not itself
        self._in_stage: dict[bool, tuple[Any, ...]] = {}
        self._last_rank: dict[bool, sa.Select[Any]] = {}
        self._neighbour: dict[bool, sa.Select[Any]] = {}
        self._next_rank: dict[bool, sa.Select[Any]] = {}
        self._previous_rank: dict[bool, sa.Select[Any]] = {}
        for moving in (False, True):
            in_stage: tuple[Any, ...] = (
                c.tenant_id == bp("tenant"), c.pipeline_id == bp("pipeline"),
                c.stage_id == bp("stage"), *((c.id != bp("moving"),) if moving else ()))
            key = sa.tuple_(bp("key_rank"), bp("key_id"))
            self._in_stage[moving] = in_stage
            # (not max(): PostgreSQL may plan it as an aggregate over the whole
            # stage and keep that plan, prepared while the stage was small, as
            # it grows; ORDER BY ... LIMIT 1 is read from the end of the index)
            self._last_rank[moving] = sa.select(c.rank).where(*in_stage).order_by(
                c.rank.desc()).limit(_ONE)
            self._neighbour[moving] = sa.select(c.rank, c.id).where(
                *in_stage, c.id == bp("neighbour"))
            self._next_rank[moving] = sa.select(c.rank).where(
                *in_stage, sa.tuple_(c.rank, c.id) > key).order_by(c.rank, c.id).limit(1)
            self._previous_rank[moving] = sa.select(c.rank).where(
                *in_stage, sa.tuple_(c.rank, c.id) < key
            ).order_by(c.rank.desc(), c.id.desc()).limit(1)
        #: UPDATE of a lead by the set of columns it sets
        self._updates: dict[frozenset[str], sa.Update] = {}
        #: (statement, dialect) -> its SQL and the order of its parameters
        #: (None: by name), for ``_driver_execute``
        self._sql: dict[tuple[int, str],
                        tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _driver_execute(self, conn: sa.Connection, stmt: sa.ClauseElement,
                        params: Mapping[str, Any]) -> Any:
        """Run a statement built here straight on the driver's connection, in
        the transaction of ``conn``: the driver cursor, executed. Running a
        prepared statement through SQLAlchemy costs some 50 µs of Python per
        call (its execution context and result), several times what SQLite
        takes to run it, in the thread that holds the GIL the event loop
        needs; the hot reads and writes of a change come here. Only for
        statements whose parameters and columns need no conversion by
        SQLAlchemy (no JSON parameters); errors are SQLAlchemy's, as from
        ``conn.execute``."""
        dialect = conn.dialect
        key = (id(stmt), dialect.name)
        found = self._sql.get(key)
        if found is None:
            compiled = stmt.compile(dialect=dialect)
            order = getattr(compiled, "positiontup", None)  # (positional paramstyles)
            # (values the statement was built with, such as SQLite's OFFSET 0)
            fixed = {name: value for name, value in compiled.params.items()
                     if value is not None}
            found = self._sql[key] = (str(compiled),
                                      tuple(order) if order is not None else None, fixed)
        sql, order, fixed = found
        if fixed:
            params = {**fixed, **params}
        args: Any = params if order is None else tuple(params[name] for name in order)
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(sql, args)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            gone = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
            if gone:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(sql, args, exc, dialect.loaded_dbapi.Error,
                                             connection_invalidated=gone,
                                             dialect=dialect) from exc
        return cursor

    def _driver_row(self, conn: sa.Connection, stmt: sa.ClauseElement,
                    params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row of a SELECT built here (see ``_driver_execute``), by
        column name, JSON columns decoded."""
        cursor = self._driver_execute(conn, stmt, params)
        try:
            row = cursor.fetchone()
            if row is None:
                return None
            found = dict(zip([column[0] for column in cursor.description], row, strict=True))
        finally:
            cursor.close()
        for name in _JSON_COLUMNS:
            value = found.get(name)
            if isinstance(value, str):  # (a JSON column's value is never a string)
                found[name] = json.loads(value)
        return found

    def _update(self, columns: Iterable[str]) -> sa.Update:
        names = frozenset(columns)
        found = self._updates.get(names)
        if found is None:
            _, leads, _ = self._tables()
            found = self._updates[names] = leads.update().where(
                leads.c.tenant_id == sa.bindparam("tenant"),
                leads.c.id == sa.bindparam("lead_id")
            ).values({name: sa.bindparam(f"new_{name}") for name in sorted(names)})
        return found

    def _tables(self) -> tuple[sa.Table, sa.Table, sa.Table]:
        assert self.pipelines is not None and self.leads is not None
        assert self.activity is not None
        return self.pipelines, self.leads, self.activity

    # -- pipelines ----------------------------------------------------------------

    async def stored_pipelines(self, tenant: str) -> list[dict[str, Any]]:
        pipelines, _, _ = self._tables()
        rows = await self.store.fetch_all(sa.select(pipelines).where(
            pipelines.c.tenant_id == tenant).order_by(pipelines.c.created_at, pipelines.c.id))
        return [dict(r) for r in rows]

    async def stored_pipeline(self, tenant: str, pipeline: str) -> dict[str, Any] | None:
        pipelines, _, _ = self._tables()
        row = await self.store.fetch_one(sa.select(pipelines).where(
            pipelines.c.tenant_id == tenant, pipelines.c.id == pipeline))
        return dict(row) if row is not None else None

    async def create_pipeline(self, tenant: str, pipeline: str, name: str,
                              stages: list[dict[str, str]], at: float) -> bool:
        pipelines, _, _ = self._tables()
        inserted = await self.store.execute(self.store.upsert(
            pipelines, {"tenant_id": tenant, "id": pipeline, "name": name, "stages": stages,
                        "created_at": at}, key=["tenant_id", "id"], update=[]))
        return inserted > 0

    # -- leads ----------------------------------------------------------------------

    async def lead(self, tenant: str, lead_id: str) -> dict[str, Any] | None:
        _, leads, _ = self._tables()
        row = await self.store.fetch_one(sa.select(leads).where(
            leads.c.tenant_id == tenant, leads.c.id == lead_id))
        return dict(row) if row is not None else None

    async def page(self, tenant: str, pipeline: str, stage: str, *,
                   after: tuple[str, str] | None, size: int) -> list[dict[str, Any]]:
        """Up to ``size + 1`` leads of a stage in board order, after a cursor."""
        _, leads, _ = self._tables()
        where = [leads.c.tenant_id == tenant, leads.c.pipeline_id == pipeline,
                 leads.c.stage_id == stage]
        if after is not None:
            rank, lead_id = after
            where.append(sa.or_(leads.c.rank > rank,
                                sa.and_(leads.c.rank == rank, leads.c.id > lead_id)))
        rows = await self.store.fetch_all(sa.select(leads).where(*where).order_by(
            leads.c.rank, leads.c.id).limit(size + 1))
        return [dict(r) for r in rows]

    async def activity_page(self, tenant: str, lead_id: str, *, before: int | None,
                            size: int) -> list[dict[str, Any]]:
        """Up to ``size + 1`` entries of a lead's activity, newest first."""
        _, _, activity = self._tables()
        where = [activity.c.tenant_id == tenant, activity.c.lead_id == lead_id]
        if before is not None:
            where.append(activity.c.id < before)
        rows = await self.store.fetch_all(sa.select(activity).where(*where).order_by(
            activity.c.id.desc()).limit(size + 1))
        return [dict(r) for r in rows]

    def _rank(self, conn: sa.Connection, tenant: str, pipeline: str, stage: str, *,
              after_id: str | None, before_id: str | None, moving: str | None,
              current: dict[str, Any] | None, last: Any = None
              ) -> tuple[str, dict[str, str]]:
        """A rank in ``stage`` right after ``after_id``, before ``before_id``,
        else at the end, computed from the committed neighbours; and the new
        ranks of the stage's other leads when it had to be renumbered.
        ``last``: the stage's highest rank (without ``moving``) when it was
        read with the lead, as ``(rank,)``."""
        moved = moving is not None
        params: dict[str, Any] = {"tenant": tenant, "pipeline": pipeline, "stage": stage}
        if moved:
            params["moving"] = moving
        low: str | None
        high: str | None
        neighbour_id = after_id or before_id
        if neighbour_id is not None:
            field = "afterId" if after_id is not None else "beforeId"
            neighbour = conn.execute(self._neighbour[moved],
                                     {**params, "neighbour": neighbour_id}).first()
            if neighbour is None:
                message = (f"{field}: lead {neighbour_id!r} is not in stage {stage!r} "
                           "(any more)")
                if current is not None:
                    raise ClientError("conflict", message, field=field)
                raise ClientError("invalid_payload", message, field=field)
            key = {**params, "key_rank": neighbour.rank, "key_id": neighbour.id}
            if after_id is not None:
                low = neighbour.rank
                high = conn.execute(self._next_rank[moved], key).scalar()
            else:
                high = neighbour.rank
                low = conn.execute(self._previous_rank[moved], key).scalar()
        elif last is not None:
            (low,), high = last, None
        else:
            low = conn.execute(self._last_rank[moved], params).scalar()
            high = None
        if low is not None and high is not None and low >= high:
            high = None  # equal ranks (never written by this plugin): after the lower
        rank = ranks.between(low, high)
        if len(rank) <= REBALANCE_AT:
            return rank, {}
        return self._rebalance(conn, self._in_stage[moved], params, low)

    def _rebalance(self, conn: sa.Connection, in_stage: tuple[Any, ...],
                   params: dict[str, Any], low: str | None) -> tuple[str, dict[str, str]]:
        """Renumber a stage whose gap got too narrow (after many drops into the
        same place): fresh short ranks in the same order, the new or moved
        card after ``low``. Its rank, and the new ranks of the others."""
        _, leads, _ = self._tables()
        rows = conn.execute(sa.select(leads.c.id, leads.c.rank).where(*in_stage).order_by(
            leads.c.rank, leads.c.id), params).all()
        place = sum(1 for row in rows if low is not None and row.rank <= low)
        order: list[str | None] = [row.id for row in rows]
        order.insert(place, None)  # the card being placed
        key: str | None = None
        mine = ""
        others: dict[str, str] = {}
        for lead_id in order:
            key = ranks.between(key, None)
            if lead_id is None:
                mine = key
            else:
                others[lead_id] = key
        if others:
            update = leads.update().where(*in_stage, leads.c.id == sa.bindparam("lead_id")) \
                .values(rank=sa.bindparam("new_rank"))
            conn.execute(update, [{**params, "lead_id": i, "new_rank": k}
                                  for i, k in others.items()])
        return mine, others

    # -- changes, each run inside a batch's transaction (see ``write``) -----------------

    def create_lead(self, conn: sa.Connection, row: dict[str, Any], *, after_id: str | None,
                    before_id: str | None, actor: str,
                    record: dict[str, Any]) -> dict[str, Any] | None:
        """Insert a lead at its place, with its first activity entry; None if
        the id exists. The new row has the renumbered others under ``RERANKED``."""
        _, leads, _ = self._tables()
        tenant = row["tenant_id"]
        exists = conn.execute(self._lead_exists, {"tenant": tenant, "lead_id": row["id"]}
                              ).first()
        if exists is not None:
            return None
        rank, reranked = self._rank(
            conn, tenant, row["pipeline_id"], row["stage_id"], after_id=after_id,
            before_id=before_id, moving=None, current=None)
        values = {**row, "rank": rank}
        conn.execute(leads.insert().values(values))
        _log(conn, tenant_id=tenant, lead_id=row["id"], version=row["version"],
             action="created", actor=actor, changes=record, at=row["created_at"])
        return {**values, RERANKED: reranked}

    def change(self, conn: sa.Connection, tenant: str, lead_id: str, *, version: int | None,
               action: str, actor: str, at: float, plan: Plan,
               last_rank_in: str | None = None) -> Changed:
        """Apply ``plan``'s changes to the lead if ``version`` is current (any
        version when None), bump its version and log the activity. Raises
        :class:`Missing`, :class:`Conflict`, or what ``plan`` raises, before
        writing anything. ``last_rank_in``: a stage whose highest rank (the
        lead's own left out) the plan gets under ``LAST_RANK``, read with the
        lead."""
        if last_rank_in is None:
            this = {"tenant": tenant, "lead_id": lead_id}
            before = self._driver_row(conn, self._select_lead, this)
        else:
            this = {"tenant": tenant, "lead_id": lead_id, "stage": last_rank_in}
            before = self._driver_row(conn, self._select_lead_and_last, this)
            del this["stage"]
        if before is None:
            raise Missing(lead_id)
        last = before.pop(LAST_RANK, None)
        if version is not None and version != before["version"]:
            raise Conflict(before)
        changes = plan(conn, before if last_rank_in is None else {**before, LAST_RANK: last})
        reranked = changes.pop(RERANKED, {})
        values = {COLUMNS[name]: value for name, value in changes.items()}
        values.update(version=before["version"] + 1, updated_at=at)
        update = self._update(values)
        params = {**this, **{f"new_{name}": value for name, value in values.items()}}
        if _JSON_COLUMNS.isdisjoint(values):  # (a move, an assignment)
            self._driver_execute(conn, update, params).close()
        else:
            conn.execute(update, params)
        _log(conn, tenant_id=tenant, lead_id=lead_id, version=values["version"],
             action=action, actor=actor, changes=changes, at=at)
        return Changed(before, {**before, **values}, changes, reranked)

    def delete(self, conn: sa.Connection, tenant: str, lead_id: str, *, version: int | None,
               actor: str, at: float) -> dict[str, Any]:
        """Delete the lead (its activity log stays, with a last entry); its row
        as it was. Raises :class:`Missing`, :class:`Conflict`."""
        this = {"tenant": tenant, "lead_id": lead_id}
        found = conn.execute(self._select_lead, this).mappings().first()
        if found is None:
            raise Missing(lead_id)
        if version is not None and version != found["version"]:
            raise Conflict(dict(found))
        conn.execute(self._delete_lead, this)
        _log(conn, tenant_id=tenant, lead_id=lead_id, version=found["version"] + 1,
             action="deleted", actor=actor, changes={}, at=at)
        return dict(found)

    def stage_ids(self, conn: sa.Connection, tenant: str, pipeline: str) -> list[str]:
        """The stages of a pipeline created over HTTP (none for another)."""
        pipelines, _, _ = self._tables()
        stages = conn.execute(sa.select(pipelines.c.stages).where(
            pipelines.c.tenant_id == tenant, pipelines.c.id == pipeline)).scalar()
        return [stage["id"] for stage in stages or ()]

    async def write(self, ops: Sequence[Op]) -> list[Any]:
        """Run a batch of changes in one transaction, in order: what each
        returned, or the refusal it raised before writing anything
        (:class:`ClientError`, :class:`Missing`, :class:`Conflict`)."""
        tenants = sorted({op.tenant for op in ops})
        _, _, activity = self._tables()

        def write(conn: sa.Connection) -> list[Any]:
            conn.info.pop(_ACTIVITY, None)  # (left by a batch that failed on this connection)
            results: list[Any] = []
            for op in ops:
                try:
                    results.append(op.apply(conn))
                except (ClientError, Missing, Conflict) as refused:
                    results.append(refused)
            entries = conn.info.pop(_ACTIVITY, [])
            if entries:  # the batch's activity log, in one statement
                conn.execute(activity.insert(), entries)
            return results

        # (each tenant's board serialized, in one order: no two batches wait on each other)
        return await self.store.run(write, serialize_on=[("pipeline", t) for t in tenants])

    def rank_plan(self, tenant: str, stage: str, after_id: str | None, before_id: str | None
                  ) -> Callable[[sa.Connection, Mapping[str, Any]], tuple[str, dict[str, str]]]:
        """The rank of a lead being moved (and the renumbered others),
        computed inside its transaction."""

        def rank(conn: sa.Connection, current: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
            last = (current[LAST_RANK],) if LAST_RANK in current else None
            return self._rank(conn, tenant, current["pipeline_id"], stage, after_id=after_id,
                              before_id=before_id, moving=current["id"], current=dict(current),
                              last=last)

        return rank
