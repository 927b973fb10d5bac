"""The desk's tables and the statements it runs on them.

Each function taking a connection runs inside one :meth:`Store.run`
transaction, on SQLite and PostgreSQL alike. Changes of a ticket are
serialized on the ticket (``serialize_on``) and written with a conditional
UPDATE on its version, so concurrent changes never both win.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from switchboard.core import Store, Ticket, array_rows

from .payloads import ACTIVE


def _id_column(name: str, **kwargs: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.String(200), **kwargs)


#: (tenant, user): a change of the active tickets an agent holds.
LoadDeltas = dict[tuple[str, str], int]


def load_delta(deltas: LoadDeltas, tenant: str, before: tuple[str | None, str] | None,
               after: tuple[str | None, str] | None) -> None:
    """Add to ``deltas`` what a ticket's change from ``before`` to ``after``
    (assignee, status; None: no ticket) does to its assignees' active tickets."""
    for state, sign in ((before, -1), (after, 1)):
        if state is not None and state[0] is not None and state[1] in ACTIVE:
            key = (tenant, state[0])
            deltas[key] = deltas.get(key, 0) + sign


class DeskStorage:
    tickets: sa.Table
    queues: sa.Table
    members: sa.Table
    #: The active tickets each agent holds, kept with every change of a
    #: ticket's assignee or status in the same transaction: auto-assignment
    #: reads its candidates' loads here instead of counting their tickets
    #: (a count that grows with every ticket they hold).
    load: sa.Table
    #: Add to agents' loads (see :meth:`start`).
    _add_load: sa.Insert
    #: See :meth:`number_and_loads` (built in :meth:`start`).
    _number_and_loads: sa.CompoundSelect[Any]

    def __init__(self) -> None:
        #: :meth:`_insert_new_statement` by the columns of the rows.
        self._insert_new_pg: dict[tuple[str, ...], sa.Insert] = {}

    def declare(self, metadata: sa.MetaData) -> None:
        self.tickets = sa.Table(
            "desk_tickets", metadata,
            sa.Column("id", sa.String(64), primary_key=True),
            _id_column("tenant_id", nullable=False),
            sa.Column("number", sa.BigInteger, nullable=False),
            sa.Column("subject", sa.String(500), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            _id_column("priority", nullable=False),
            _id_column("queue_id"),
            _id_column("assignee_id"),
            _id_column("customer_id", nullable=False),
            _id_column("channel", nullable=False),
            sa.Column("tags", sa.JSON, nullable=False),
            sa.Column("conversation_id", sa.String(256), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Column("first_response_at", sa.Float),
            sa.Column("resolved_at", sa.Float),
            sa.Column("closed_at", sa.Float),
            # SLA: due times (None while pending: the time left is in *_left),
            # and which warnings / breaches were sent ("first_response,resolution").
            sa.Column("first_response_due", sa.Float),
            sa.Column("resolution_due", sa.Float),
            sa.Column("first_response_left", sa.Float),
            sa.Column("resolution_left", sa.Float),
            sa.Column("sla_sent", sa.String(200), nullable=False, server_default=""),
            sa.UniqueConstraint("tenant_id", "number", name="desk_tickets_number"),
            sa.Index("desk_tickets_assignee", "tenant_id", "assignee_id", "status"),
            sa.Index("desk_tickets_queue", "tenant_id", "queue_id", "status"),
        )
        self.queues = sa.Table(
            "desk_queues", metadata,
            _id_column("tenant_id", primary_key=True),
            _id_column("id", primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("strategy", sa.String(20), nullable=False),
        )
        self.members = sa.Table(
            "desk_queue_members", metadata,
            _id_column("tenant_id", primary_key=True),
            _id_column("queue_id", primary_key=True),
            _id_column("user_id", primary_key=True),
            sa.Column("capacity", sa.Integer),
            sa.Index("desk_queue_members_user", "tenant_id", "user_id"),
        )
        self.load = sa.Table(
            "desk_agent_load", metadata,
            _id_column("tenant_id", primary_key=True),
            _id_column("user_id", primary_key=True),
            sa.Column("active", sa.Integer, nullable=False),
        )

    # -- tickets ---------------------------------------------------------------

    @staticmethod
    def ticket(row: Any) -> Ticket:
        """A row (or the values of one just inserted) as a :class:`Ticket`."""
        return Ticket(
            id=row["id"], tenant_id=row["tenant_id"], number=int(row["number"]),
            subject=row["subject"], status=row["status"], priority=row["priority"],
            queue_id=row["queue_id"], assignee_id=row["assignee_id"],
            customer_id=row["customer_id"], channel=row["channel"],
            tags=tuple(row["tags"] or ()), conversation_id=row["conversation_id"],
            version=int(row["version"]), created_at=row["created_at"],
            updated_at=row["updated_at"], first_response_at=row.get("first_response_at"),
            resolved_at=row.get("resolved_at"), closed_at=row.get("closed_at"),
            first_response_due=row.get("first_response_due"),
            resolution_due=row.get("resolution_due"))

    def number_and_loads(self, conn: sa.Connection, tenant: str, users: Sequence[str]
                         ) -> tuple[int, dict[str, int]]:
        """The tenant's next ticket number, and the loads of those of ``users``
        who hold active tickets, in one statement (one round trip)."""
        top, active = 0, {}
        params = {"tenant": tenant, "users": json.dumps(list(users), ensure_ascii=False)}
        for user, n in conn.execute(self._number_and_loads, params):
            if user == "":
                top = int(n)
            else:
                active[user] = int(n)
        return top + 1, active

    def _number_and_loads_statement(self, dialect: str) -> sa.CompoundSelect[Any]:
        """:meth:`number_and_loads`'s statement, the same for any number of users:
        they go as one JSON array (a batch names a hundred candidates or more,
        which an ``IN`` list would render into the statement at each run),
        written with its characters as they are (no ``\\u`` escapes for the
        database's JSON functions to decode)."""
        t, load = self.tickets, self.load
        tenant = sa.bindparam("tenant", type_=sa.String())
        users = sa.bindparam("users", type_=sa.Text())
        listed = (sa.func.json_array_elements_text(sa.cast(users, postgresql.JSON))
                  if dialect == "postgresql" else sa.func.json_each(users)
                  ).table_valued("value")
        # (user ids are never empty: the empty one is the number's row, absent
        # while the tenant has no ticket). The top number is read by ORDER BY
        # ... LIMIT 1, which every plan answers from the end of the unique
        # index: PostgreSQL may plan max() as an aggregate over all of the
        # tenant's tickets, and keep that plan (prepared while the table was
        # small) as the table grows, until it is next analyzed.
        top = sa.select(t.c.number).where(t.c.tenant_id == tenant).order_by(
            t.c.number.desc()).limit(sa.literal_column("1")).subquery("top")
        number = sa.select(sa.literal_column("''").label("user_id"), top.c.number.label("n"))
        loads = sa.select(load.c.user_id, load.c.active).where(
            load.c.tenant_id == tenant, load.c.user_id.in_(sa.select(listed.c.value)),
            load.c.active > 0)
        return sa.union_all(number, loads)

    def row(self, conn: sa.Connection, tenant: str, ticket_id: str) -> Any:
        t = self.tickets
        return conn.execute(sa.select(t).where(t.c.id == ticket_id, t.c.tenant_id == tenant)
                            ).mappings().first()

    def update(self, conn: sa.Connection, current: Ticket, values: dict[str, Any]) -> Any:
        """Write ``values`` over ``current`` if it is still at its version, and
        its assignees' loads with it: the row as written (the same statement
        returns it), or None when the ticket was not at that version."""
        t = self.tickets
        written = conn.execute(t.update().where(t.c.id == current.id,
                                                t.c.version == current.version)
                               .values(values).returning(*t.c)).mappings().first()
        if written is not None:
            deltas: LoadDeltas = {}
            load_delta(deltas, current.tenant_id, (current.assignee_id, current.status),
                       (values.get("assignee_id", current.assignee_id),
                        values.get("status", current.status)))
            self.add_load(conn, deltas)
        return written

    def insert_new(self, conn: sa.Connection, rows: list[dict[str, Any]],
                   deltas: LoadDeltas) -> None:
        """Insert new tickets (one or more, every row with the same columns) and add
        ``deltas`` to their assignees' loads: one statement on PostgreSQL
        (see :meth:`_insert_new_statement`), two on SQLite."""
        if conn.dialect.name != "postgresql":
            conn.execute(self.tickets.insert(), rows)
            self.add_load(conn, deltas)
            return
        columns = tuple(rows[0])
        stmt = self._insert_new_pg.get(columns)
        if stmt is None:
            stmt = self._insert_new_pg[columns] = self._insert_new_statement(columns)
        params: dict[str, list[Any]] = {}
        for name in columns:
            json_column = isinstance(self.tickets.c[name].type, sa.JSON)
            params["c_" + name] = [json.dumps(row[name]) if json_column else row[name]
                                   for row in rows]
        loads = [(key, delta) for key, delta in sorted(deltas.items()) if delta]
        params["l_tenant_id"] = [tenant for (tenant, _), _ in loads]
        params["l_user_id"] = [user for (_, user), _ in loads]
        params["l_active"] = [delta for _, delta in loads]
        conn.execute(stmt, params)

    def _insert_new_statement(self, columns: tuple[str, ...]) -> sa.Insert:
        """``WITH new AS (INSERT INTO desk_tickets SELECT FROM unnest(...))
        INSERT INTO desk_agent_load SELECT FROM unnest(...) ON CONFLICT DO
        UPDATE``: the rows go as one array per column, so the statement is the
        same for every batch size; the loads are added in the order of their
        keys, as :meth:`add_load` adds them."""
        t, load = self.tickets, self.load
        rows = array_rows("c_", [
            (name, sa.Text() if isinstance(t.c[name].type, sa.JSON) else t.c[name].type)
            for name in columns])
        new = t.insert().from_select(list(columns), sa.select(*(
            sa.cast(rows.c[name], postgresql.JSON) if isinstance(t.c[name].type, sa.JSON)
            else rows.c[name] for name in columns))).cte("new_tickets")
        deltas = array_rows("l_", [("tenant_id", sa.Text()), ("user_id", sa.Text()),
                                   ("active", sa.Integer())])
        add = postgresql.insert(load).from_select(
            ["tenant_id", "user_id", "active"],
            sa.select(deltas.c.tenant_id, deltas.c.user_id, deltas.c.active))
        return add.on_conflict_do_update(
            index_elements=[load.c.tenant_id, load.c.user_id],
            set_={"active": load.c.active + add.excluded.active}).add_cte(new)

    def add_load(self, conn: sa.Connection, deltas: LoadDeltas) -> None:
        """Add ``deltas`` to the agents' loads, in one statement, in the order
        of their keys (concurrent transactions lock the rows in the same order)."""
        rows = [{"tenant_id": tenant, "user_id": user, "active": delta}
                for (tenant, user), delta in sorted(deltas.items()) if delta]
        if rows:
            conn.execute(self._add_load, rows)

    def start(self, store: Store) -> None:
        """Once the tables are declared: the statements built once (for every
        number of rows) on ``store``'s database."""
        load = self.load
        insert = store.insert(load)
        self._add_load = insert.on_conflict_do_update(
            index_elements=[load.c.tenant_id, load.c.user_id],
            set_={"active": load.c.active + insert.excluded.active})
        self._number_and_loads = self._number_and_loads_statement(store.dialect)

    def select(self, tenant: str, *, status: str | None, queue_id: str | None,
               assignee_id: str | None, customer_id: str | None, before: int | None,
               limit: int) -> sa.Select[Any]:
        t = self.tickets
        stmt = sa.select(t).where(t.c.tenant_id == tenant)
        for column, value in ((t.c.status, status), (t.c.queue_id, queue_id),
                              (t.c.assignee_id, assignee_id), (t.c.customer_id, customer_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        if before is not None:
            stmt = stmt.where(t.c.number < before)
        return stmt.order_by(t.c.number.desc()).limit(limit)

    def active_count(self, conn: sa.Connection, tenant: str, user: str) -> int:
        load = self.load
        return int(conn.execute(sa.select(load.c.active).where(
            load.c.tenant_id == tenant, load.c.user_id == user)).scalar() or 0)

    def active_counts(self, tenant: str, users: Sequence[str]) -> sa.Select[Any]:
        """(assignee_id, n): the active tickets of those of ``users`` who hold any."""
        load = self.load
        return (sa.select(load.c.user_id.label("assignee_id"), load.c.active.label("n"))
                .where(load.c.tenant_id == tenant, load.c.user_id.in_(list(users)),
                       load.c.active > 0))

    def waiting(self, tenant: str, queue: str, limit: int) -> sa.Select[Any]:
        """Unassigned active tickets of a queue, oldest first."""
        t = self.tickets
        return (sa.select(t.c.id).where(t.c.tenant_id == tenant, t.c.queue_id == queue,
                                        t.c.assignee_id.is_(None), t.c.status.in_(ACTIVE))
                .order_by(t.c.number).limit(limit))

    def held_by(self, tenant: str, user: str) -> sa.Select[Any]:
        t = self.tickets
        return sa.select(t.c.id).where(t.c.tenant_id == tenant, t.c.assignee_id == user,
                                       t.c.status.in_(ACTIVE))

    def sla_pending(self) -> sa.Select[Any]:
        """Every ticket with an SLA due time still to watch."""
        t = self.tickets
        return sa.select(t).where(sa.or_(t.c.first_response_due.is_not(None),
                                         t.c.resolution_due.is_not(None)))

    # -- queues -------------------------------------------------------------------

    def put_queue(self, conn: sa.Connection, upsert: Any, tenant: str, queue: str, name: str,
                  strategy: str, members: Iterable[tuple[str, int | None]] | None) -> None:
        conn.execute(upsert, {"tenant_id": tenant, "id": queue, "name": name,
                              "strategy": strategy})
        if members is None:
            return
        m = self.members
        conn.execute(m.delete().where(m.c.tenant_id == tenant, m.c.queue_id == queue))
        rows = [{"tenant_id": tenant, "queue_id": queue, "user_id": user, "capacity": cap}
                for user, cap in members]
        if rows:
            conn.execute(m.insert(), rows)

    def queues_of(self, tenant: str, user: str) -> sa.Select[Any]:
        m = self.members
        return sa.select(m.c.queue_id).where(m.c.tenant_id == tenant, m.c.user_id == user)

    def queue_members(self, tenant: str, queue: str) -> sa.Select[Any]:
        m = self.members
        return (sa.select(m.c.user_id, m.c.capacity)
                .where(m.c.tenant_id == tenant, m.c.queue_id == queue).order_by(m.c.user_id))

    def queue_with_members(self, tenant: str, queue: str) -> sa.Select[Any]:
        """The queue's name and strategy with each member and capacity, a row
        a member (one row, its member None, for a queue without members; no
        row when there is no such queue)."""
        q, m = self.queues, self.members
        return (sa.select(q.c.name, q.c.strategy, m.c.user_id, m.c.capacity)
                .select_from(q.outerjoin(m, sa.and_(m.c.tenant_id == q.c.tenant_id,
                                                    m.c.queue_id == q.c.id)))
                .where(q.c.tenant_id == tenant, q.c.id == queue).order_by(m.c.user_id))

    def all_queues(self, tenant: str) -> sa.Select[Any]:
        q = self.queues
        return sa.select(q).where(q.c.tenant_id == tenant).order_by(q.c.id)

    def all_members(self, tenant: str) -> sa.Select[Any]:
        m = self.members
        return sa.select(m).where(m.c.tenant_id == tenant).order_by(m.c.queue_id, m.c.user_id)
