"""Chat: conversations, durable messages, receipts and history.

- Conversations belong to a tenant and have participants. Joining
  ``conversation:{id}`` is allowed to the tenant's agents and to the
  conversation's participants; an unknown or foreign id is refused
  ``not_found``.
- A message (socket event ``message:send`` or ``POST
  /api/v1/conversations/{id}/messages``) is stored before it is acknowledged or
  broadcast as ``message:new``. Writes are batched: concurrent messages share
  one transaction. A ``clientId`` makes a resend idempotent: the stored message
  is returned again, nothing is duplicated or re-broadcast.
- Status ``pending`` (client side, before the ack) -> ``sent`` (stored) ->
  ``delivered`` -> ``read``, through ``message:delivered`` / ``message:read``
  receipts kept per participant as watermarks and broadcast as
  ``message:status``.
- History with cursor pagination (``before`` for older pages, ``after`` to
  catch up after a reconnect), over HTTP and the ``message:history`` event.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import sqlalchemy as sa
from attrs.validators import optional
from quart import Blueprint, g, request
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite
from switchboard.core import (
    App,
    ClientError,
    Deferred,
    Rate,
    Session,
    hookimpl,
    incoming,
    outgoing,
)
from switchboard.core.batching import Batcher
from switchboard.core.events import unstructure
from switchboard.core.http import (
    api_key_tenant_allowed,
    error_response,
    read_json,
    require_api_key,
    structure_body,
)
from switchboard.core.rooms import is_room_name
from switchboard.core.store import StoreUnavailable
from switchboard.core.structure import first_error, make_converter
from switchboard.core.validators import (
    MAX_ROW_ID,
    check_identifier,
    identifier,
    max_length,
    row_id,
    text,
)

MessageType = Literal["text", "image", "video", "audio", "document"]
_converter = make_converter()
ROOM_PREFIX = "conversation:"
MAX_TITLE_LENGTH = 500
MAX_URL_LENGTH = 2048
MAX_FILE_NAME_LENGTH = 255
MAX_MIME_TYPE_LENGTH = 255
log = logging.getLogger("switchboard.chat")


# -- settings and payloads ----------------------------------------------------


def _conversation_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a conversation id: an identifier that also
    makes a room name (``conversation:{id}``); None if nothing."""
    problem = check_identifier(value)
    if problem is None and not is_room_name(ROOM_PREFIX + value):
        problem = "must be letters, digits and _.:@+-"
    return problem


def _conversation_id(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if (problem := _conversation_id_problem(value)) is not None:
        raise ValueError(problem, attribute)


@attrs.frozen
class ChatSettings:
    #: Messages written in one transaction, at most.
    max_batch: int = 500
    #: Seconds the writer waits after a first message for more to write with it.
    batch_linger: float = 0.0
    #: Default and largest page of history.
    history_page: int = 50
    history_max: int = 200
    max_text_length: int = 4096
    #: Conversations whose participants are kept in memory.
    cache_size: int = 10_000


@attrs.frozen
class TextContent:
    text: str


@attrs.frozen
class MediaContent:
    url: str
    caption: str | None = None
    mimeType: str | None = None
    fileName: str | None = None
    size: int | None = None


@attrs.frozen
class DocumentContent:
    url: str
    fileName: str
    caption: str | None = None
    mimeType: str | None = None
    size: int | None = None


_CONTENT: dict[str, type] = {
    "text": TextContent,
    "image": MediaContent,
    "video": MediaContent,
    "audio": MediaContent,
    "document": DocumentContent,
}


@attrs.frozen
class ConversationRef:
    conversationId: str = attrs.field(validator=_conversation_id)


@attrs.frozen
class SendMessage:
    conversationId: str = attrs.field(validator=_conversation_id)
    content: dict[str, Any] = attrs.field()
    type: MessageType = "text"
    clientId: str | None = attrs.field(default=None, validator=optional(identifier))


@attrs.frozen
class HistoryRequest:
    conversationId: str = attrs.field(validator=_conversation_id)
    before: int | None = attrs.field(default=None, validator=optional(row_id))
    after: int | None = attrs.field(default=None, validator=optional(row_id))
    limit: int | None = None


@attrs.frozen
class Receipt:
    conversationId: str = attrs.field(validator=_conversation_id)
    messageId: int = attrs.field(validator=row_id)


@attrs.frozen
class Participant:
    userId: str = attrs.field(validator=identifier)
    role: str = attrs.field(default="customer", validator=identifier)


@attrs.frozen
class CreateConversation:
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    id: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    title: str | None = attrs.field(default=None, validator=optional(
        [text, max_length(MAX_TITLE_LENGTH)]))
    participants: list[Participant] = attrs.Factory(list)


@attrs.frozen
class AddParticipant:
    userId: str = attrs.field(validator=identifier)
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    role: str = attrs.field(default="customer", validator=identifier)


@attrs.frozen
class PostMessage:
    senderId: str = attrs.field(validator=identifier)
    content: dict[str, Any] = attrs.field()
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    type: MessageType = "text"
    senderRole: str = attrs.field(default="system", validator=identifier)
    clientId: str | None = attrs.field(default=None, validator=optional(identifier))


@attrs.frozen
class NewMessage:
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


def _row(message: NewMessage) -> dict[str, Any]:
    return attrs.asdict(message, filter=lambda a, _: a.name != "exclude")


def _stored_message(stored: Stored) -> dict[str, Any]:
    return stored.message


def _key(message: NewMessage) -> tuple[str, str, str, str]:
    """What makes a message with a clientId unique (the index ``chat_messages_client_id``)."""
    assert message.client_id is not None
    return (message.tenant_id, message.conversation_id, message.sender_id, message.client_id)


def _at_least(column: sa.Column[Any], value: int) -> sa.ColumnElement[Any]:
    """``max(column, value)`` in SQL (GREATEST on PostgreSQL, MAX on SQLite alike)."""
    return sa.case((column < value, value), else_=column)


def _dialect_insert(dialect: str) -> Any:
    """The INSERT construct of ``dialect``, which has ``on_conflict_do_nothing``."""
    if dialect == "postgresql":
        return sa_postgresql.insert
    return sa_sqlite.insert


@attrs.frozen
class Stored:
    message: dict[str, Any]
    #: False when the clientId had been stored before (a resend).
    created: bool


# -- the plugin ----------------------------------------------------------------


class ChatPlugin:
    app: App
    settings: ChatSettings

    def __init__(self) -> None:
        self.tables: dict[str, sa.Table] = {}
        #: (tenant, conversation) -> participant user ids; only existing ones.
        self._participants: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
        #: Changes of participants so far (see _forget).
        self._changes = 0
        self._writer: Batcher[NewMessage, Stored] | None = None

    # -- declaration -----------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return ChatSettings

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [
            incoming("conversation:join", ConversationRef, self.join,
                     doc="Join conversation:{id}; ack {success, conversationId, error?}."),
            incoming("conversation:leave", ConversationRef, self.leave,
                     doc="Leave conversation:{id}; ack {success, conversationId}."),
            incoming("message:send", SendMessage, self.send, rate=Rate(rate=20.0, burst=40.0),
                     doc="Store and broadcast a message; ack the stored message."),
            incoming("message:history", HistoryRequest, self.history,
                     doc="Ack {messages, hasMore, nextBefore}; `after` catches up."),
            incoming("message:delivered", Receipt, self.delivered,
                     doc="Mark messages up to messageId delivered to you."),
            incoming("message:read", Receipt, self.read,
                     doc="Mark messages up to messageId read by you."),
            outgoing("message:new", doc="To conversation:{id}: a stored message."),
            outgoing("message:status",
                     doc="To conversation:{id}: {conversationId, messageId, userId, status}."),
        ]

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.tables["conversations"] = sa.Table(
            "chat_conversations", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("id", sa.String(200), primary_key=True),
            sa.Column("title", sa.String(MAX_TITLE_LENGTH)),
            sa.Column("created_at", sa.Float, nullable=False),
        )
        self.tables["participants"] = sa.Table(
            "chat_participants", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("conversation_id", sa.String(200), primary_key=True),
            sa.Column("user_id", sa.String(200), primary_key=True),
            sa.Column("role", sa.String(100), nullable=False),
            sa.Column("last_delivered_id", sa.BigInteger, nullable=False, default=0),
            sa.Column("last_read_id", sa.BigInteger, nullable=False, default=0),
        )
        self.tables["messages"] = sa.Table(
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

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        return self._blueprint()

    # -- lifecycle -------------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        # A batch the database refused (not one it could not take) is written
        # again message by message: a bad message fails alone, not its neighbours.
        self._writer = Batcher(self._write_batch, max_batch=self.settings.max_batch,
                               linger=self.settings.batch_linger,
                               retry_alone=lambda exc: not isinstance(exc, StoreUnavailable))

    @hookimpl
    def switchboard_background_tasks(self) -> list[Any]:
        assert self._writer is not None
        return [self._writer.run]

    @hookimpl
    async def switchboard_authorize_join(self, session: Session, room: str) -> bool | None:
        if not room.startswith(ROOM_PREFIX):
            return None
        await self._check_access(session, room.removeprefix(ROOM_PREFIX))
        return True

    # -- access ----------------------------------------------------------------

    async def _participants_of(self, tenant: str, conversation: str) -> dict[str, str] | None:
        """user id -> role of a conversation's participants; None if it does not exist."""
        if _conversation_id_problem(conversation) is not None:
            return None  # no such id can have been created
        key = (tenant, conversation)
        cached = self._participants.get(key)
        if cached is not None:
            self._participants.move_to_end(key)
            return cached
        conv, part = self.tables["conversations"], self.tables["participants"]

        def load(conn: sa.Connection) -> dict[str, str] | None:
            exists = conn.execute(sa.select(conv.c.id).where(
                conv.c.tenant_id == tenant, conv.c.id == conversation)).first()
            if exists is None:
                return None
            rows = conn.execute(sa.select(part.c.user_id, part.c.role).where(
                part.c.tenant_id == tenant, part.c.conversation_id == conversation))
            return {row.user_id: row.role for row in rows}

        changes = self._changes
        members = await self.app.store.run(load)
        # A change committed while this load ran may be missing from what it read:
        # then its answer serves this caller but is not kept for the others.
        if members is not None and changes == self._changes:
            self._participants[key] = members
            while len(self._participants) > self.settings.cache_size:
                self._participants.popitem(last=False)
        return members

    def _forget(self, tenant: str, conversation: str) -> None:
        """After a change of participants: drop the cached ones, and keep loads
        that started before the change from caching what they read."""
        self._changes += 1
        self._participants.pop((tenant, conversation), None)

    async def _check_access(self, session: Session, conversation: str) -> dict[str, str]:
        members = await self._participants_of(session.tenant_id, conversation)
        if members is None:
            raise ClientError("not_found", f"no conversation {conversation!r}",
                              conversationId=conversation)
        if session.user_id not in members and not self.app.hub.is_agent(session):
            raise ClientError("forbidden", "you are not a participant of this conversation",
                              conversationId=conversation)
        return members

    # -- socket events -----------------------------------------------------------

    async def join(self, session: Session, ref: ConversationRef) -> dict[str, Any]:
        try:
            await self.app.join(session, ROOM_PREFIX + ref.conversationId)
        except ClientError as exc:
            return {"success": False, "conversationId": ref.conversationId,
                    "error": exc.to_dict()}
        return {"success": True, "conversationId": ref.conversationId}

    async def leave(self, session: Session, ref: ConversationRef) -> dict[str, Any]:
        await self.app.leave(session, ROOM_PREFIX + ref.conversationId)
        return {"success": True, "conversationId": ref.conversationId}

    async def send(self, session: Session, request: SendMessage) -> Deferred:
        await self._check_access(session, request.conversationId)
        assert self._writer is not None
        pending = self._writer.enqueue(NewMessage(
            session.tenant_id, request.conversationId, session.user_id, session.role,
            request.clientId, request.type, self._content(request.type, request.content),
            time.time(), exclude=session.id))

        # The ack waits for the batch (and leaves with its broadcast); the
        # client's next messages need not wait.
        return Deferred.of(pending, _stored_message)

    async def history(self, session: Session, request: HistoryRequest) -> dict[str, Any]:
        await self._check_access(session, request.conversationId)
        return await self.page(session.tenant_id, request.conversationId, before=request.before,
                               after=request.after, limit=request.limit)

    async def delivered(self, session: Session, receipt: Receipt) -> dict[str, Any]:
        return await self._receipt(session, receipt, "delivered")

    async def read(self, session: Session, receipt: Receipt) -> dict[str, Any]:
        return await self._receipt(session, receipt, "read")

    # -- storing ---------------------------------------------------------------

    def _content(self, kind: str, content: dict[str, Any]) -> dict[str, Any]:
        cls = _CONTENT[kind]
        try:
            value = _converter.structure(content, cls)
        except Exception as exc:
            err = first_error(exc, "content", content)
            raise ClientError("invalid_payload", f"{err.field}: {err.message}",
                              field=err.field) from None
        if isinstance(value, TextContent):
            if not value.text.strip():
                raise ClientError("invalid_payload", "content.text: must not be empty",
                                  field="content.text")
            if len(value.text) > self.settings.max_text_length:
                raise ClientError("invalid_payload",
                                  f"content.text: longer than {self.settings.max_text_length}",
                                  field="content.text")
        else:
            if not value.url.startswith(("https://", "http://")):
                raise ClientError("invalid_payload", "content.url: must be an http(s) URL",
                                  field="content.url")
            limits = {"url": MAX_URL_LENGTH, "caption": self.settings.max_text_length,
                      "fileName": MAX_FILE_NAME_LENGTH, "mimeType": MAX_MIME_TYPE_LENGTH}
            for name, limit in limits.items():
                given = getattr(value, name)
                if given is not None and not 0 < len(given) <= limit:
                    raise ClientError("invalid_payload",
                                      f"content.{name}: must be 1 to {limit} characters",
                                      field=f"content.{name}")
            if value.size is not None and not 0 <= value.size <= MAX_ROW_ID:
                raise ClientError("invalid_payload", "content.size: must not be negative",
                                  field="content.size")
            family = kind if kind != "document" else None
            if family and value.mimeType and not value.mimeType.startswith(family + "/"):
                raise ClientError("invalid_payload",
                                  f"content.mimeType: must be {family}/* for {kind}",
                                  field="content.mimeType")
        return {k: v for k, v in unstructure(value).items() if v is not None}

    async def store_message(self, message: NewMessage) -> Stored:
        """Store (batched) and broadcast ``message:new`` unless it was a resend."""
        assert self._writer is not None
        return await self._writer.submit(message)

    async def _write_batch(self, batch: Sequence[NewMessage]) -> list[Stored]:
        """Write a batch in one transaction, then broadcast the new messages in
        the order of their ids (the batch's order), before anyone is acknowledged."""
        results = await self._write(batch)
        for message, stored in zip(batch, results, strict=True):
            if not stored.created:
                continue
            try:
                await self.app.hub.publish(
                    message.tenant_id, ROOM_PREFIX + message.conversation_id, "message:new",
                    stored.message, exclude=message.exclude)
            except Exception:  # stored is stored: the batch must not be written again
                log.exception("broadcasting message %s failed", stored.message["id"])
        return results

    async def _write(self, batch: Sequence[NewMessage]) -> list[Stored]:
        messages = self.tables["messages"]
        key_columns = [messages.c.tenant_id, messages.c.conversation_id,
                       messages.c.sender_id, messages.c.client_id]
        # The unique index decides whether a clientId was stored before: a resend
        # is skipped by the INSERT itself (no lookup before it, which on a large
        # table can cost a scan when the planner picks the wrong index), and only
        # what was skipped is read back, one unique-index lookup each.
        insert = (_dialect_insert(self.app.store.dialect)(messages)
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
                    results[i] = Stored(_message(existing), created=False)
                    continue
                row = next(returned)
                if row.client_id != m.client_id or row.sender_id != m.sender_id:
                    raise RuntimeError("inserted rows came back out of order")
                results[i] = Stored(_message({**values, "id": row.id}), created=True)
            for i, m in enumerate(batch):
                if results[i] is None:  # the same clientId twice in one batch
                    first = results[first_of[_key(m)]]
                    assert first is not None
                    results[i] = Stored(first.message, created=False)
            return [r for r in results if r is not None]

        return await self.app.store.run(write)

    # -- receipts and history -----------------------------------------------------

    async def _receipt(self, session: Session, receipt: Receipt,
                       status: Literal["delivered", "read"]) -> dict[str, Any]:
        members = await self._check_access(session, receipt.conversationId)
        if session.user_id not in members:
            raise ClientError("forbidden", "only participants send receipts")
        part, messages = self.tables["participants"], self.tables["messages"]
        tenant, conv, user = session.tenant_id, receipt.conversationId, session.user_id

        def mark(conn: sa.Connection) -> tuple[int, bool] | None:
            exists = conn.execute(sa.select(messages.c.id).where(
                messages.c.id == receipt.messageId, messages.c.tenant_id == tenant,
                messages.c.conversation_id == conv)).first()
            if exists is None:
                return None
            where = sa.and_(part.c.tenant_id == tenant, part.c.conversation_id == conv,
                            part.c.user_id == user)
            # The watermarks only move forward, decided by the UPDATE itself: two
            # receipts of the same user committing in any order end at the larger.
            marks = [part.c.last_delivered_id]
            if status == "read":
                marks.append(part.c.last_read_id)
            moved = conn.execute(part.update().where(
                where, sa.or_(*(mark < receipt.messageId for mark in marks))
            ).values({mark: _at_least(mark, receipt.messageId) for mark in marks})).rowcount
            read_id = conn.execute(sa.select(part.c.last_read_id).where(where)).scalar_one()
            return read_id, moved > 0

        marks = await self.app.store.run(mark)
        if marks is None:
            raise ClientError("not_found", f"no message {receipt.messageId} in this conversation",
                              field="messageId")
        read_id, moved = marks
        # what this participant has now, not what this (possibly late) receipt said
        current = "read" if read_id >= receipt.messageId else "delivered"
        event = {"conversationId": conv, "messageId": receipt.messageId, "userId": user,
                 "status": current}
        if moved:
            await self.app.publish(tenant, ROOM_PREFIX + conv, "message:status", event)
        return event

    async def page(self, tenant: str, conversation: str, *, before: int | None = None,
                   after: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page of history, oldest first. ``after`` pages forward from an id
        (catching up); otherwise pages backward from ``before`` (or the newest)."""
        if before is not None and after is not None:
            raise ClientError("invalid_payload", "after: give before or after, not both",
                              field="after")
        size = min(self.settings.history_page if limit is None else limit,
                   self.settings.history_max)
        if size < 1:
            raise ClientError("invalid_payload", "limit: must be positive", field="limit")
        messages, part = self.tables["messages"], self.tables["participants"]
        where = [messages.c.tenant_id == tenant, messages.c.conversation_id == conversation]
        if after is not None:
            query = sa.select(messages).where(*where, messages.c.id > after) \
                .order_by(messages.c.id).limit(size + 1)
        else:
            if before is not None:
                where.append(messages.c.id < before)
            query = sa.select(messages).where(*where) \
                .order_by(messages.c.id.desc()).limit(size + 1)

        def fetch(conn: sa.Connection) -> tuple[list[dict[str, Any]], list[Any]]:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            marks = list(conn.execute(sa.select(part.c.user_id, part.c.last_delivered_id,
                                                part.c.last_read_id).where(
                part.c.tenant_id == tenant, part.c.conversation_id == conversation)))
            return rows, marks

        rows, marks = await self.app.store.run(fetch)
        has_more = len(rows) > size
        rows = rows[:size]
        if after is None:
            rows.reverse()
        items = [_with_status(_message(r), marks) for r in rows]
        return {
            "messages": items,
            "hasMore": has_more,
            "nextBefore": items[0]["id"] if has_more and after is None and items else None,
            "nextAfter": items[-1]["id"] if has_more and after is not None and items else None,
        }

    # -- HTTP --------------------------------------------------------------------

    def _tenant(self, given: str | None) -> str:
        key_tenant: str = g.api_key.tenant
        tenant = given or (key_tenant if key_tenant != "*" else None)
        if tenant is None:
            raise ClientError("invalid_payload", "tenant: required", field="tenant")
        if (problem := check_identifier(tenant)) is not None:
            raise ClientError("invalid_payload", f"tenant: {problem}", field="tenant")
        if not api_key_tenant_allowed(tenant):
            raise ClientError("forbidden", f"this API key may not use tenant {tenant!r}")
        return tenant

    def _blueprint(self) -> Blueprint:
        bp = Blueprint("chat", __name__)

        def insert(table: sa.Table) -> Any:
            return _dialect_insert(self.app.store.dialect)(table)

        @bp.post("/api/v1/conversations")
        @require_api_key
        async def create() -> Any:
            body = structure_body(await read_json(), CreateConversation)
            tenant = self._tenant(body.tenant)
            conv_id = body.id or secrets.token_hex(8)
            conv, part = self.tables["conversations"], self.tables["participants"]

            def create_rows(conn: sa.Connection) -> bool:
                # the primary key decides, also against a concurrent creation
                created = conn.execute(insert(conv).values(
                    tenant_id=tenant, id=conv_id, title=body.title, created_at=time.time(),
                ).on_conflict_do_nothing(index_elements=[conv.c.tenant_id, conv.c.id]))
                if created.rowcount == 0:
                    return False
                if body.participants:
                    conn.execute(part.insert(), [
                        {"tenant_id": tenant, "conversation_id": conv_id, "user_id": p.userId,
                         "role": p.role, "last_delivered_id": 0, "last_read_id": 0}
                        for p in {p.userId: p for p in body.participants}.values()])
                return True

            if not await self.app.store.run(create_rows):
                return error_response(409, "conflict", f"conversation {conv_id!r} exists")
            self._forget(tenant, conv_id)
            return {"id": conv_id, "tenant": tenant, "title": body.title,
                    "participants": [attrs.asdict(p) for p in body.participants]}, 201

        @bp.get("/api/v1/conversations/<conv_id>")
        @require_api_key
        async def show(conv_id: str) -> Any:
            tenant = self._tenant(request.args.get("tenant"))
            members = await self._participants_of(tenant, conv_id)
            if members is None:
                return error_response(404, "not_found", f"no conversation {conv_id!r}")
            return {"id": conv_id, "tenant": tenant,
                    "participants": [{"userId": u, "role": r} for u, r in members.items()]}

        @bp.post("/api/v1/conversations/<conv_id>/participants")
        @require_api_key
        async def add_participant(conv_id: str) -> Any:
            body = structure_body(await read_json(), AddParticipant)
            tenant = self._tenant(body.tenant)
            if await self._participants_of(tenant, conv_id) is None:
                return error_response(404, "not_found", f"no conversation {conv_id!r}")
            part = self.tables["participants"]

            def add(conn: sa.Connection) -> None:
                # adding someone who is a participant already changes the role and
                # keeps what they have read
                row = insert(part).values(
                    tenant_id=tenant, conversation_id=conv_id, user_id=body.userId,
                    role=body.role, last_delivered_id=0, last_read_id=0)
                conn.execute(row.on_conflict_do_update(
                    index_elements=[part.c.tenant_id, part.c.conversation_id, part.c.user_id],
                    set_={"role": row.excluded.role}))

            await self.app.store.run(add)
            self._forget(tenant, conv_id)
            return {"userId": body.userId, "role": body.role}, 201

        @bp.post("/api/v1/conversations/<conv_id>/messages")
        @require_api_key
        async def post_message(conv_id: str) -> Any:
            body = structure_body(await read_json(), PostMessage)
            tenant = self._tenant(body.tenant)
            if await self._participants_of(tenant, conv_id) is None:
                return error_response(404, "not_found", f"no conversation {conv_id!r}")
            stored = await self.store_message(NewMessage(
                tenant, conv_id, body.senderId, body.senderRole, body.clientId, body.type,
                self._content(body.type, body.content), time.time()))
            return stored.message, 201 if stored.created else 200

        @bp.get("/api/v1/conversations/<conv_id>/messages")
        @require_api_key
        async def list_messages(conv_id: str) -> Any:
            tenant = self._tenant(request.args.get("tenant"))
            if await self._participants_of(tenant, conv_id) is None:
                return error_response(404, "not_found", f"no conversation {conv_id!r}")
            cursors: dict[str, int] = {}
            for name in ("before", "after", "limit"):
                if (value := request.args.get(name)) is None:
                    continue
                if not value.isascii() or not value.isdigit() or int(value) > MAX_ROW_ID:
                    raise ClientError("invalid_payload",
                                      f"{name}: must be an integer from 0 to {MAX_ROW_ID}",
                                      field=name)
                cursors[name] = int(value)
            return await self.page(tenant, conv_id, **cursors)

        return bp


def _message(row: Any) -> dict[str, Any]:
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


def _with_status(message: dict[str, Any], marks: list[Any]) -> dict[str, Any]:
    others = [m for m in marks if m.user_id != message["senderId"]]
    if others and all(m.last_read_id >= message["id"] for m in others):
        message["status"] = "read"
    elif others and all(m.last_delivered_id >= message["id"] for m in others):
        message["status"] = "delivered"
    return message
