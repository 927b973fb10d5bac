"""The chat plugin's tables and every statement it runs on them.

Each method is one transaction of the store, on SQLite and PostgreSQL alike
(``Store.insert`` / ``Store.upsert`` give the ``ON CONFLICT`` of either).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from switchboard.core import LockKey, MessageSource, Store, array_rows

from .payloads import MAX_TITLE_LENGTH

T = TypeVar("T")


@attrs.frozen
class NewMessage:
    """A message to store."""

    tenant_id: str
    conversation_id: str
    sender_id: str
    sender_role: str
    client_id: str | None
    type: str
    content: dict[str, Any]
    created_at: float
    #: Session id not to broadcast to (the sender's connection); not stored.
    exclude: str | None = None
    #: Where it came from, for ``switchboard_chat_message_stored``; not stored.
    source: MessageSource = "socket"


_NOT_STORED = frozenset({"exclude", "source"})


def _row(message: NewMessage) -> dict[str, Any]:
    return attrs.asdict(message, filter=lambda a, _: a.name not in _NOT_STORED)


def _key(message: NewMessage) -> tuple[str, str, str, str]:
    """What makes a message with a clientId unique (the index ``chat_messages_client_id``)."""
    assert message.client_id is not None
    return (message.tenant_id, message.conversation_id, message.sender_id, message.client_id)


def _at_least(column: sa.Column[Any], value: int) -> sa.ColumnElement[Any]:
    """``max(column, value)`` in SQL (GREATEST on PostgreSQL, MAX on SQLite alike)."""
    return sa.case((column < value, value), else_=column)


def wire_message(row: Any) -> dict[str, Any]:
    """A stored row as clients get it (``message:new``, acks, history)."""
    return {
        "id": row["id"],
        "conversationId": row["conversation_id"],
        "senderId": row["sender_id"],
        "senderRole": row["sender_role"],
        "clientId": row["client_id"],
        "type": row["type"],
        "content": row["content"],
        "createdAt": row["created_at"],
        "status": "sent",
    }


@attrs.frozen
class Stored:
    #: As clients get it.
    message: dict[str, Any]
    #: False when the clientId had been stored before (a resend).
    created: bool


@attrs.frozen
class Conversation:
    title: str | None
    #: user id -> role
    members: dict[str, str]


@attrs.frozen
class Page:
    rows: list[dict[str, Any]]
    #: (user id, last delivered id, last read id) of each participant
    marks: list[tuple[str, int, int]]


class ChatStorage:
    """The tables ``chat_conversations``, ``chat_participants`` and ``chat_messages``."""

    store: Store

    def __init__(self) -> None:
        self.conversations: sa.Table | None = None
        self.participants: sa.Table | None = None
        self.messages: sa.Table | None = None
        #: :meth:`_create_many_statement`, built once.
        self._create_many_pg: sa.Select[Any] | None = None

    def declare(self, metadata: sa.MetaData) -> None:
        self.conversations = sa.Table(
            "chat_conversations", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("id", sa.String(200), primary_key=True),
            sa.Column("title", sa.String(MAX_TITLE_LENGTH)),
            sa.Column("created_at", sa.Float, nullable=False),
        )
        self.participants = sa.Table(
            "chat_participants", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("conversation_id", sa.String(200), primary_key=True),
            sa.Column("user_id", sa.String(200), primary_key=True),
            sa.Column("role", sa.String(100), nullable=False),
            sa.Column("last_delivered_id", sa.BigInteger, nullable=False, default=0),
            sa.Column("last_read_id", sa.BigInteger, nullable=False, default=0),
        )
        self.messages = sa.Table(
            "chat_messages", metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                      primary_key=True, autoincrement=True),
            sa.Column("tenant_id", sa.String(200), nullable=False),
            sa.Column("conversation_id", sa.String(200), nullable=False),
            sa.Column("sender_id", sa.String(200), nullable=False),
            sa.Column("sender_role", sa.String(100), nullable=False),
            sa.Column("client_id", sa.String(200)),
            sa.Column("type", sa.String(20), nullable=False),
            sa.Column("content", sa.JSON, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.UniqueConstraint("tenant_id", "conversation_id", "sender_id", "client_id",
                                name="chat_messages_client_id"),
            sa.Index("chat_messages_by_conversation", "tenant_id", "conversation_id", "id"),
        )

    def _tables(self) -> tuple[sa.Table, sa.Table, sa.Table]:
        assert self.conversations is not None and self.participants is not None
        assert self.messages is not None
        return self.conversations, self.participants, self.messages

    # -- conversations and participants -------------------------------------------

    async def conversation(self, tenant: str, conversation: str) -> Conversation | None:
        """The conversation's title and participants; None if it does not exist."""
        conv, part, _ = self._tables()

        def load(conn: sa.Connection) -> Conversation | None:
            found = conn.execute(sa.select(conv.c.title).where(
                conv.c.tenant_id == tenant, conv.c.id == conversation)).first()
            if found is None:
                return None
            rows = conn.execute(sa.select(part.c.user_id, part.c.role).where(
                part.c.tenant_id == tenant, part.c.conversation_id == conversation))
            return Conversation(found.title, {row.user_id: row.role for row in rows})

        return await self.store.run(load)

    async def create(self, tenant: str, conversation: str, title: str | None,
                     participants: Iterable[tuple[str, str]], created_at: float) -> bool:
        """Create the conversation with its participants; False if it exists (the
        primary key decides, also against a concurrent creation)."""
        conv, part, _ = self._tables()
        members = dict(participants)
        insert = self.store.upsert(conv, {"tenant_id": tenant, "id": conversation,
                                          "title": title, "created_at": created_at},
                                   key=["tenant_id", "id"], update=[])

        def create_rows(conn: sa.Connection) -> bool:
            if conn.execute(insert).rowcount == 0:
                return False
            if members:
                conn.execute(part.insert(), [
                    {"tenant_id": tenant, "conversation_id": conversation, "user_id": user,
                     "role": role, "last_delivered_id": 0, "last_read_id": 0}
                    for user, role in members.items()])
            return True

        return await self.store.run(create_rows)

    async def create_many_with(self, rows: Sequence[tuple[str, str, str | None, dict[str, str]]],
                               created_at: float, write: Callable[[sa.Connection], T], *,
                               serialize_on: list[LockKey] | None = None
                               ) -> tuple[list[bool], T]:
        """Create many conversations (tenant, id, title, participants) in one
        transaction (of one statement on PostgreSQL, two on SQLite), then
        ``write(conn)`` in it; for each conversation, False if it existed (or
        came earlier in ``rows``), and what ``write`` returned.
        ``serialize_on``: as for :meth:`Store.run`."""
        if self.store.dialect == "postgresql":
            return await self._create_many_in_one(rows, created_at, write, serialize_on)
        conv, part, _ = self._tables()
        # one statement for every batch size (executed as multi-row INSERTs by
        # SQLAlchemy): a statement with the rows in it is built, keyed and
        # compiled again for each batch
        insert = self.store.insert(conv).on_conflict_do_nothing(
            index_elements=[conv.c.tenant_id, conv.c.id]).returning(conv.c.tenant_id, conv.c.id)
        values = [{"tenant_id": tenant, "id": conversation, "title": title,
                   "created_at": created_at} for tenant, conversation, title, _ in rows]

        def create_rows(conn: sa.Connection) -> tuple[list[bool], T]:
            new = {(row[0], row[1]) for row in conn.execute(insert, values)} if values else set()
            created = []
            participants = []
            for tenant, conversation, _, members in rows:
                made = (tenant, conversation) in new
                new.discard((tenant, conversation))  # a repeat in rows is not new
                created.append(made)
                if made:
                    participants += [
                        {"tenant_id": tenant, "conversation_id": conversation, "user_id": user,
                         "role": role, "last_delivered_id": 0, "last_read_id": 0}
                        for user, role in members.items()]
            if participants:
                conn.execute(part.insert(), participants)
            return created, write(conn)

        return await self.store.run(create_rows, serialize_on=serialize_on or None)

    async def _create_many_in_one(
            self, rows: Sequence[tuple[str, str, str | None, dict[str, str]]],
            created_at: float, write: Callable[[sa.Connection], T],
            serialize_on: list[LockKey] | None) -> tuple[list[bool], T]:
        """:meth:`create_many_with` on PostgreSQL: the conversations and the
        participants of those that are new in one statement (one round trip),
        the same for every batch size (the rows are arrays)."""
        first: dict[tuple[str, str], tuple[str | None, dict[str, str]]] = {}
        for tenant, conversation, title, members in rows:
            first.setdefault((tenant, conversation), (title, members))
        params: dict[str, list[Any]] = {name: [] for name in (
            "c_tenant_id", "c_id", "c_title", "c_created_at",
            "p_tenant_id", "p_conversation_id", "p_user_id", "p_role")}
        for (tenant, conversation), (title, members) in first.items():
            params["c_tenant_id"].append(tenant)
            params["c_id"].append(conversation)
            params["c_title"].append(title)
            params["c_created_at"].append(created_at)
            for user, role in members.items():
                params["p_tenant_id"].append(tenant)
                params["p_conversation_id"].append(conversation)
                params["p_user_id"].append(user)
                params["p_role"].append(role)
        if self._create_many_pg is None:
            self._create_many_pg = self._create_many_statement()
        stmt = self._create_many_pg

        def create_rows(conn: sa.Connection) -> tuple[list[bool], T]:
            new = {(row[0], row[1]) for row in conn.execute(stmt, params)} if first else set()
            created = []
            for tenant, conversation, _, _ in rows:
                created.append((tenant, conversation) in new)
                new.discard((tenant, conversation))  # a repeat in rows is not new
            return created, write(conn)

        return await self.store.run(create_rows, serialize_on=serialize_on or None)

    def _create_many_statement(self) -> sa.Select[Any]:
        """``WITH new AS (INSERT conversations ... ON CONFLICT DO NOTHING
        RETURNING ...), added AS (INSERT participants ... JOIN new) SELECT
        FROM new``: the participants go only into the conversations it
        created (PostgreSQL runs both INSERTs whether or not the SELECT
        reads them)."""
        conv, part, _ = self._tables()
        rows = array_rows("c_", [("tenant_id", sa.Text()), ("id", sa.Text()),
                                 ("title", sa.Text()), ("created_at", sa.Float())])
        new = (postgresql.insert(conv)
               .from_select(["tenant_id", "id", "title", "created_at"],
                            sa.select(rows.c.tenant_id, rows.c.id, rows.c.title,
                                      rows.c.created_at))
               .on_conflict_do_nothing(index_elements=[conv.c.tenant_id, conv.c.id])
               .returning(conv.c.tenant_id, conv.c.id)
               .cte("new"))
        members = array_rows("p_", [(name, sa.Text()) for name in (
            "tenant_id", "conversation_id", "user_id", "role")])
        added = part.insert().from_select(
            ["tenant_id", "conversation_id", "user_id", "role", "last_delivered_id",
             "last_read_id"],
            sa.select(members.c.tenant_id, members.c.conversation_id, members.c.user_id,
                      members.c.role, sa.literal(0, sa.BigInteger),
                      sa.literal(0, sa.BigInteger))
            .select_from(members.join(new, sa.and_(
                new.c.tenant_id == members.c.tenant_id,
                new.c.id == members.c.conversation_id)))).cte("added")
        return sa.select(new.c.tenant_id, new.c.id).add_cte(added)

    async def add_participant(self, tenant: str, conversation: str, user: str,
                              role: str) -> None:
        """Add a participant; for one already in it, change the role and keep
        their receipts."""
        _, part, _ = self._tables()
        await self.store.execute(self.store.upsert(
            part, {"tenant_id": tenant, "conversation_id": conversation, "user_id": user,
                   "role": role, "last_delivered_id": 0, "last_read_id": 0},
            key=["tenant_id", "conversation_id", "user_id"], update=["role"]))

    async def remove_participant(self, tenant: str, conversation: str, user: str) -> bool:
        _, part, _ = self._tables()
        removed = await self.store.execute(part.delete().where(
            part.c.tenant_id == tenant, part.c.conversation_id == conversation,
            part.c.user_id == user))
        return removed > 0

    # -- messages ------------------------------------------------------------------

    async def write(self, batch: Sequence[NewMessage]) -> list[Stored]:
        """Write a batch in one transaction; what each message became, in order."""
        _, _, messages = self._tables()
        key_columns = [messages.c.tenant_id, messages.c.conversation_id,
                       messages.c.sender_id, messages.c.client_id]
        # The unique index decides whether a clientId was stored before: a resend
        # is skipped by the INSERT itself (no lookup before it, which on a large
        # table can cost a scan when the planner picks the wrong index), and only
        # what was skipped is read back, one unique-index lookup each.
        insert = (self.store.insert(messages)
                  .on_conflict_do_nothing(index_elements=key_columns)
                  .returning(messages.c.id, *key_columns, sort_by_parameter_order=True))

        def write(conn: sa.Connection) -> list[Stored]:
            results: list[Stored | None] = [None] * len(batch)
            first_of: dict[tuple[str, str, str, str], int] = {}
            to_insert: list[int] = []
            for i, m in enumerate(batch):
                if m.client_id is None:
                    to_insert.append(i)
                elif _key(m) not in first_of:  # a resend within the batch is filled below
                    first_of[_key(m)] = i
                    to_insert.append(i)
            rows_in = [_row(batch[i]) for i in to_insert]
            # in the order of the rows sent (sort_by_parameter_order), without the skipped
            inserted = conn.execute(insert, rows_in).all()
            new_keys = {(r.tenant_id, r.conversation_id, r.sender_id, r.client_id)
                        for r in inserted if r.client_id is not None}
            returned = iter(inserted)
            for i, values in zip(to_insert, rows_in, strict=True):
                m = batch[i]
                if m.client_id is not None and _key(m) not in new_keys:
                    existing = conn.execute(sa.select(messages).where(
                        *(c == v for c, v in zip(key_columns, _key(m), strict=True)))
                    ).mappings().one()
                    results[i] = Stored(wire_message(existing), created=False)
                    continue
                row = next(returned)
                if row.client_id != m.client_id or row.sender_id != m.sender_id:
                    raise RuntimeError("inserted rows came back out of order")
                results[i] = Stored(wire_message({**values, "id": row.id}), created=True)
            for i, m in enumerate(batch):
                if results[i] is None:  # the same clientId twice in one batch
                    first = results[first_of[_key(m)]]
                    assert first is not None
                    results[i] = Stored(first.message, created=False)
            return [r for r in results if r is not None]

        # (one INSERT, then reads of what it skipped, which it waited for:
        # PostgreSQL needs no transaction around them)
        return await self.store.run(write, autocommit=True)

    async def mark(self, tenant: str, conversation: str, user: str, message_id: int,
                   status: Literal["delivered", "read"]) -> tuple[int, bool] | None:
        """Move a participant's watermarks up to ``message_id``: their last read id
        now and whether anything moved; None if the conversation has no such
        message."""
        _, part, messages = self._tables()

        def mark(conn: sa.Connection) -> tuple[int, bool] | None:
            exists = conn.execute(sa.select(messages.c.id).where(
                messages.c.id == message_id, messages.c.tenant_id == tenant,
                messages.c.conversation_id == conversation)).first()
            if exists is None:
                return None
            where = sa.and_(part.c.tenant_id == tenant, part.c.conversation_id == conversation,
                            part.c.user_id == user)
            # The watermarks only move forward, decided by the UPDATE itself: two
            # receipts of the same user committing in any order end at the larger.
            marks = [part.c.last_delivered_id]
            if status == "read":
                marks.append(part.c.last_read_id)
            moved = conn.execute(part.update().where(
                where, sa.or_(*(mark < message_id for mark in marks))
            ).values({mark: _at_least(mark, message_id) for mark in marks})).rowcount
            read_id = conn.execute(sa.select(part.c.last_read_id).where(where)).scalar_one()
            return int(read_id), moved > 0

        return await self.store.run(mark)

    async def page(self, tenant: str, conversation: str, *, before: int | None,
                   after: int | None, size: int) -> Page:
        """Up to ``size + 1`` messages (newest first, or oldest first with
        ``after``) and the watermarks of the participants."""
        _, part, messages = self._tables()
        where = [messages.c.tenant_id == tenant, messages.c.conversation_id == conversation]
        if after is not None:
            query = sa.select(messages).where(*where, messages.c.id > after) \
                .order_by(messages.c.id).limit(size + 1)
        else:
            if before is not None:
                where.append(messages.c.id < before)
            query = sa.select(messages).where(*where) \
                .order_by(messages.c.id.desc()).limit(size + 1)

        def fetch(conn: sa.Connection) -> Page:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            marks = [(m.user_id, int(m.last_delivered_id), int(m.last_read_id))
                     for m in conn.execute(sa.select(
                         part.c.user_id, part.c.last_delivered_id, part.c.last_read_id).where(
                         part.c.tenant_id == tenant, part.c.conversation_id == conversation))]
            return Page(rows, marks)

        return await self.store.run(fetch)
