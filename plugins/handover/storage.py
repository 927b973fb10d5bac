"""The handover plugin's table and every statement it runs on it.

Each method is one transaction of the store, on SQLite and PostgreSQL alike.
Every change of a request is a conditional ``UPDATE ... WHERE version = v
AND status = s`` of the row it read: of two transactions changing the same
request at once (two agents accepting it), one updates the row and the other
updates nothing, reads the request again and is refused ``conflict`` with
what it now is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import sqlalchemy as sa
from switchboard.core import ClientError, HandoverRequest, Store

from .payloads import MAX_TEXT, OPEN

#: A function that decides, from the row as it is, the values that change
#: (or raises a ClientError: forbidden, conflict).
Decide = Callable[[HandoverRequest], Mapping[str, Any]]


def request_of(row: Any) -> HandoverRequest:
    """A row as the service gives it."""
    return HandoverRequest(
        id=int(row["id"]), tenant_id=row["tenant_id"], conversation_id=row["conversation_id"],
        requested_by=row["requested_by"], requester_role=row["requester_role"],
        reason=row["reason"], priority=row["priority"], queue=row["queue"],
        status=row["status"], assignee=row["assignee"], version=int(row["version"]),
        escalation_level=int(row["escalation_level"]), widened=bool(row["widened"]),
        created_at=row["created_at"], updated_at=row["updated_at"],
        accepted_at=row["accepted_at"], closed_at=row["closed_at"], due_at=row["due_at"],
        note=row["note"])


def conflict(request: HandoverRequest, message: str | None = None) -> ClientError:
    """``conflict`` with the request as it is now."""
    return ClientError("conflict", message or f"handover {request.id} is {request.status}",
                       request=request.to_json())


@attrs.frozen
class Changed:
    before: HandoverRequest
    after: HandoverRequest


class HandoverStorage:
    """The table ``handover_requests``."""

    store: Store
    table: sa.Table

    def declare(self, metadata: sa.MetaData) -> None:
        status: sa.ColumnClause[str] = sa.column("status")
        self.table = sa.Table(
            "handover_requests", metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                      primary_key=True, autoincrement=True),
            sa.Column("tenant_id", sa.String(200), nullable=False),
            sa.Column("conversation_id", sa.String(200), nullable=False),
            sa.Column("requested_by", sa.String(200), nullable=False),
            sa.Column("requester_role", sa.String(200), nullable=False),
            sa.Column("reason", sa.String(MAX_TEXT)),
            sa.Column("priority", sa.String(10), nullable=False),
            sa.Column("queue", sa.String(200)),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("assignee", sa.String(200)),
            sa.Column("note", sa.String(MAX_TEXT)),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("escalation_level", sa.Integer, nullable=False),
            sa.Column("widened", sa.Boolean, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
            #: When it expires if still pending (None: never).
            sa.Column("expires_at", sa.Float),
            sa.Column("accepted_at", sa.Float),
            sa.Column("closed_at", sa.Float),
            #: When it next escalates or expires (None: never); in the store, so
            #: that a restart neither loses nor repeats an escalation.
            sa.Column("due_at", sa.Float),
            # A conversation has at most one open request.
            sa.Index("handover_requests_open", "tenant_id", "conversation_id", unique=True,
                     sqlite_where=status.in_(OPEN), postgresql_where=status.in_(OPEN)),
            sa.Index("handover_requests_due", "status", "due_at"),
            sa.Index("handover_requests_by_tenant", "tenant_id", "status", "id"),
        )

    # -- reading ------------------------------------------------------------------

    def _find(self, conn: sa.Connection, tenant: str, ref: int | str
              ) -> HandoverRequest | None:
        t = self.table
        if isinstance(ref, int):
            query = sa.select(t).where(t.c.tenant_id == tenant, t.c.id == ref)
        else:
            query = sa.select(t).where(t.c.tenant_id == tenant, t.c.conversation_id == ref,
                                       t.c.status.in_(OPEN))
        row = conn.execute(query).mappings().first()
        return None if row is None else request_of(row)

    async def get(self, tenant: str, ref: int | str) -> HandoverRequest | None:
        """A request by id, or the open one of a conversation (by its id)."""
        return await self.store.run(lambda conn: self._find(conn, tenant, ref))

    async def page(self, tenant: str, *, status: str | None, queue: str | None,
                   conversation: str | None, assignee: str | None, priority: str | None,
                   after: int | None, limit: int) -> tuple[list[HandoverRequest], int | None]:
        """Requests oldest first (by id) after ``after``, and the cursor of the
        next page (None at the end)."""
        t = self.table
        query = sa.select(t).where(t.c.tenant_id == tenant)
        for column, value in ((t.c.status, status), (t.c.queue, queue),
                              (t.c.conversation_id, conversation), (t.c.assignee, assignee),
                              (t.c.priority, priority)):
            if value is not None:
                query = query.where(column == value)
        if after is not None:
            query = query.where(t.c.id > after)
        rows = await self.store.fetch_all(query.order_by(t.c.id).limit(limit + 1))
        items = [request_of(r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit and items else None)

    # -- writing ------------------------------------------------------------------

    async def create(self, values: Mapping[str, Any]) -> HandoverRequest:
        """Insert a pending request, unless its conversation has an open one
        (``conflict`` with it). Creations in one conversation wait for each
        other, so the second sees the first."""
        t = self.table
        tenant, conversation = values["tenant_id"], values["conversation_id"]

        def create(conn: sa.Connection) -> HandoverRequest:
            existing = self._find(conn, tenant, conversation)
            if existing is not None:
                raise conflict(existing, f"conversation {conversation!r} has an open "
                                         f"handover ({existing.status})")
            key = conn.execute(t.insert().values(dict(values))).inserted_primary_key
            assert key is not None
            found = self._find(conn, tenant, int(key[0]))
            assert found is not None
            return found

        return await self.store.run(create, serialize_on=("handover", tenant, conversation))

    async def change(self, tenant: str, ref: int | str, decide: Decide) -> Changed:
        """Change one request: read it, let ``decide`` check it and say what
        changes, and write that only if nobody changed it in between (else
        ``conflict`` with what it is now). ``not_found`` when there is none."""
        t = self.table

        def change(conn: sa.Connection) -> Changed:
            before = self._find(conn, tenant, ref)
            if before is None:
                what = f"handover {ref}" if isinstance(ref, int) else \
                    f"open handover in conversation {ref!r}"
                raise ClientError("not_found", f"no {what}",
                                  **({"requestId": ref} if isinstance(ref, int)
                                     else {"conversationId": ref}))
            values = {**decide(before), "version": before.version + 1}
            updated = conn.execute(t.update().where(
                t.c.id == before.id, t.c.version == before.version,
                t.c.status == before.status).values(values)).rowcount
            after = self._find(conn, tenant, before.id)
            assert after is not None
            if updated != 1:
                # changed by another transaction since it was read (PostgreSQL)
                raise conflict(after)
            return Changed(before, after)

        return await self.store.run(change)

    # -- the escalation timer ----------------------------------------------------------

    async def next_due(self) -> float | None:
        """When the earliest pending request of any tenant is due."""
        t = self.table
        row = await self.store.fetch_one(sa.select(sa.func.min(t.c.due_at).label("due"))
                                         .where(t.c.status == "pending"))
        return None if row is None or row["due"] is None else float(row["due"])

    async def due(self, now: float, limit: int = 100
                  ) -> list[tuple[HandoverRequest, float | None]]:
        """Pending requests due at ``now``, the earliest first, each with when it
        expires."""
        t = self.table
        rows = await self.store.fetch_all(
            sa.select(t).where(t.c.status == "pending", t.c.due_at <= now)
            .order_by(t.c.due_at, t.c.id).limit(limit))
        return [(request_of(r), r["expires_at"]) for r in rows]

    async def escalate(self, request: HandoverRequest, values: Mapping[str, Any]
                       ) -> HandoverRequest | None:
        """Write an escalation (or expiry) of ``request`` as it was read; None if
        it changed since (accepted meanwhile, or escalated by another node)."""
        t = self.table

        def escalate(conn: sa.Connection) -> HandoverRequest | None:
            updated = conn.execute(t.update().where(
                t.c.id == request.id, t.c.version == request.version,
                t.c.status == "pending").values(
                {**values, "version": request.version + 1})).rowcount
            return self._find(conn, request.tenant_id, request.id) if updated == 1 else None

        return await self.store.run(escalate)
