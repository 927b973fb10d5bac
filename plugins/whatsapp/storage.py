"""The whatsapp plugin's tables and queries: sessions, contacts, and the
outbox of messages to send (kept after sending, with their delivery status)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from switchboard.core import Store

from .model import STATUS_RANK, Contact


@attrs.frozen
class SessionRow:
    tenant: str
    id: str
    provider: str
    config: dict[str, Any]
    status: str
    reason: str | None
    updated_at: float


@attrs.frozen
class ContactChange:
    """A contact as stored after a webhook, and what changed: ``created``, or
    its name or picture (``changed``)."""

    contact: Contact
    created: bool
    changed: bool
    last_contact_at: float


@attrs.frozen
class OutboxRow:
    id: int
    tenant: str
    session: str
    conversation: str
    message_id: int
    to: str
    type: str
    content: dict[str, Any]
    status: str
    attempts: int
    last_error: str | None
    provider_id: str | None


def _id_column() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                     primary_key=True, autoincrement=True)


class WhatsAppStorage:
    store: Store

    def declare(self, metadata: sa.MetaData) -> None:
        self.sessions = sa.Table(
            "whatsapp_sessions", metadata,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("id", sa.String(100), primary_key=True),
            sa.Column("provider", sa.String(20), nullable=False),
            #: The provider's settings (JSON), secrets included.
            sa.Column("config", sa.Text, nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("reason", sa.String(500), nullable=True),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
        self.contacts = sa.Table(
            "whatsapp_contacts", metadata,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("session", sa.String(100), primary_key=True),
            sa.Column("wa_id", sa.String(20), primary_key=True),
            sa.Column("name", sa.String(200), nullable=True),
            sa.Column("picture", sa.String(2048), nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("last_contact_at", sa.Float, nullable=False),
        )
        #: Inbound messages already taken in (a webhook delivered twice is one message).
        self.inbound = sa.Table(
            "whatsapp_inbound", metadata,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("session", sa.String(100), primary_key=True),
            sa.Column("provider_id", sa.String(200), primary_key=True),
            sa.Column("message_id", sa.BigInteger, nullable=False),
            # (the last message recorded for a number: see recent_contacts)
            sa.Index("whatsapp_inbound_session_message", "tenant", "session", "message_id"),
        )
        self.outbox = sa.Table(
            "whatsapp_outbox", metadata,
            _id_column(),
            sa.Column("tenant", sa.String(200), nullable=False),
            sa.Column("session", sa.String(100), nullable=False),
            sa.Column("conversation", sa.String(200), nullable=False),
            #: The chat message this sends: one row per message, so one send.
            sa.Column("message_id", sa.BigInteger, nullable=False),
            sa.Column("to", sa.String(20), nullable=False),
            sa.Column("type", sa.String(20), nullable=False),
            sa.Column("content", sa.Text, nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False, default=0),
            sa.Column("last_error", sa.String(500), nullable=True),
            sa.Column("provider_id", sa.String(200), nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            #: When a sender took it (status ``sending``): one sender at a time.
            sa.Column("claimed_at", sa.Float, nullable=True),
            sa.UniqueConstraint("tenant", "message_id", name="whatsapp_outbox_message"),
            sa.Index("whatsapp_outbox_provider", "tenant", "session", "provider_id"),
            sa.Index("whatsapp_outbox_pending", "status", "tenant", "session", "id"),
            sa.Index("whatsapp_outbox_session_message", "tenant", "session", "message_id"),
            sqlite_autoincrement=True,
        )

    # -- sessions -------------------------------------------------------------------

    async def create_session(self, tenant: str, session: str, provider: str,
                             config: dict[str, Any]) -> bool:
        """Store a new session (``disconnected``); False if it exists."""
        t = self.sessions
        count = await self.store.execute(self.store.upsert(t, {
            "tenant": tenant, "id": session, "provider": provider,
            "config": json.dumps(config), "status": "disconnected", "reason": None,
            "updated_at": time.time()}, key=["tenant", "id"], update=[]))
        return count == 1

    async def session(self, tenant: str, session: str) -> SessionRow | None:
        t = self.sessions
        row = await self.store.fetch_one(sa.select(t).where(t.c.tenant == tenant,
                                                            t.c.id == session))
        return None if row is None else _session(row)

    async def sessions_of(self, tenant: str | None = None) -> list[SessionRow]:
        t = self.sessions
        query = sa.select(t).order_by(t.c.tenant, t.c.id)
        if tenant is not None:
            query = query.where(t.c.tenant == tenant)
        return [_session(r) for r in await self.store.fetch_all(query)]

    async def set_status(self, tenant: str, session: str, status: str,
                         reason: str | None) -> bool:
        t = self.sessions
        return await self.store.execute(
            t.update().where(t.c.tenant == tenant, t.c.id == session)
            .values(status=status, reason=reason, updated_at=time.time())) == 1

    async def delete_session(self, tenant: str, session: str) -> bool:
        t = self.sessions
        return await self.store.execute(
            t.delete().where(t.c.tenant == tenant, t.c.id == session)) == 1

    # -- contacts -------------------------------------------------------------------

    async def touch_contact(self, tenant: str, session: str, contact: Contact,
                            *, message: bool) -> ContactChange:
        """Record a contact seen in a webhook: created, or its name and picture
        updated when the webhook says them (and the time of its last message)."""
        t = self.contacts
        now = time.time()

        def fn(conn: sa.Connection) -> ContactChange:
            key = (t.c.tenant == tenant, t.c.session == session, t.c.wa_id == contact.wa_id)
            row = conn.execute(sa.select(t).where(*key)).mappings().first()
            if row is None:
                inserted = conn.execute(self.store.upsert(t, {
                    "tenant": tenant, "session": session, "wa_id": contact.wa_id,
                    "name": contact.name, "picture": contact.picture, "created_at": now,
                    "last_contact_at": now}, key=["tenant", "session", "wa_id"], update=[]))
                if inserted.rowcount == 1:
                    return ContactChange(contact, True, False, now)
                row = conn.execute(sa.select(t).where(*key)).mappings().one()
            name = contact.name or row["name"]
            picture = contact.picture or row["picture"]
            changed = (name, picture) != (row["name"], row["picture"])
            last = now if message else row["last_contact_at"]
            if changed or message:
                conn.execute(t.update().where(*key).values(name=name, picture=picture,
                                                           last_contact_at=last))
            return ContactChange(Contact(contact.wa_id, name, picture), False, changed, last)

        return await self.store.run(fn)

    async def contact(self, tenant: str, session: str, wa_id: str) -> Contact | None:
        t = self.contacts
        row = await self.store.fetch_one(sa.select(t).where(
            t.c.tenant == tenant, t.c.session == session, t.c.wa_id == wa_id))
        return None if row is None else Contact(row["wa_id"], row["name"], row["picture"])

    async def took_in(self, tenant: str, session: str, provider_id: str,
                      message_id: int) -> bool:
        """Record an inbound message as taken in; False if it was already."""
        return await self.store.execute(self.store.upsert(self.inbound, {
            "tenant": tenant, "session": session, "provider_id": provider_id,
            "message_id": message_id}, key=["tenant", "session", "provider_id"],
            update=[])) == 1

    # -- the outbox -----------------------------------------------------------------

    async def queue(self, tenant: str, session: str, conversation: str, message_id: int,
                    to: str, type: str, content: dict[str, Any]) -> bool:
        """Put a message in the outbox; False if it was there already."""
        t = self.outbox
        return await self.store.execute(self.store.upsert(t, {
            "tenant": tenant, "session": session, "conversation": conversation,
            "message_id": message_id, "to": to, "type": type,
            "content": json.dumps(content), "status": "pending", "attempts": 0,
            "created_at": time.time()}, key=["tenant", "message_id"], update=[])) == 1

    async def pending(self, tenant: str, session: str, limit: int = 50) -> list[OutboxRow]:
        t = self.outbox
        rows = await self.store.fetch_all(
            sa.select(t).where(t.c.status == "pending", t.c.tenant == tenant,
                               t.c.session == session).order_by(t.c.id).limit(limit))
        return [_outbox(r) for r in rows]

    async def recent_contacts(self, since: float) -> list[tuple[str, str, str, int]]:
        """(tenant, session, wa_id, watermark) of contacts who wrote since
        ``since``: the watermark is the highest chat message id this plugin
        recorded for their session (sent or taken in), 0 if none."""
        c = self.contacts

        def read(conn: sa.Connection) -> list[tuple[str, str, str, int]]:
            contacts = conn.execute(sa.select(c.c.tenant, c.c.session, c.c.wa_id)
                                    .where(c.c.last_contact_at >= since)).all()
            marks = {(tenant, session): self.last_message_id(conn, tenant, session)
                     for tenant, session in {(r.tenant, r.session) for r in contacts}}
            return [(r.tenant, r.session, r.wa_id, marks[(r.tenant, r.session)])
                    for r in contacts]

        # reads only (no write lock): start-up must not hold one
        return await self.store.read(read)

    def last_message_id(self, conn: sa.Connection, tenant: str, session: str) -> int:
        """The highest chat message id recorded for the number (sent or taken
        in), 0 if none: the last entry of each table's (tenant, session,
        message_id) index, whatever the plan (LIMIT written in the statement)."""
        top = 0
        for table in (self.outbox, self.inbound):
            found = conn.execute(
                sa.select(table.c.message_id)
                .where(table.c.tenant == tenant, table.c.session == session)
                .order_by(table.c.message_id.desc()).limit(sa.literal_column("1"))).scalar()
            top = max(top, int(found or 0))
        return top

    async def senders_due(self) -> list[tuple[str, str]]:
        """(tenant, session) of every number with messages waiting."""
        t = self.outbox
        rows = await self.store.fetch_all(
            sa.select(t.c.tenant, t.c.session).where(t.c.status == "pending").distinct())
        return [(r["tenant"], r["session"]) for r in rows]

    async def claim(self, row_id: int) -> bool:
        """Take a pending message to send it (``sending``); False if another
        sender (of this or another node) took it, or it is no longer pending."""
        t = self.outbox
        return await self.store.execute(
            t.update().where(t.c.id == row_id, t.c.status == "pending")
            .values(status="sending", claimed_at=time.time())) == 1

    async def release_stale(self, older_than: float) -> int:
        """Messages taken before ``older_than`` by a sender that never said how
        the send went (its node stopped): pending again."""
        t = self.outbox
        stale = (t.c.status == "sending", t.c.claimed_at < older_than)
        if await self.store.fetch_one(sa.select(t.c.id).where(*stale).limit(1)) is None:
            return 0  # (no write transaction for nothing)
        return await self.store.execute(t.update().where(*stale)
                                        .values(status="pending", claimed_at=None))

    async def attempted(self, row_id: int, attempts: int, error: str, *, failed: bool) -> None:
        """A failed try: pending again (to be tried later), or failed for good."""
        t = self.outbox
        await self.store.execute(t.update().where(t.c.id == row_id).values(
            attempts=attempts, last_error=error, status="failed" if failed else "pending",
            claimed_at=None))

    async def sent(self, row_id: int, attempts: int, provider_id: str) -> None:
        t = self.outbox
        await self.store.execute(t.update().where(t.c.id == row_id).values(
            status="sent", attempts=attempts, provider_id=provider_id, claimed_at=None))

    async def by_provider_id(self, tenant: str, session: str,
                             provider_id: str) -> OutboxRow | None:
        t = self.outbox
        row = await self.store.fetch_one(sa.select(t).where(
            t.c.tenant == tenant, t.c.session == session, t.c.provider_id == provider_id))
        return None if row is None else _outbox(row)

    async def move_status(self, row: OutboxRow, status: str, error: str | None) -> bool:
        """Move a sent message's status forward (a late ``delivered`` after
        ``read`` changes nothing; ``failed`` only before ``delivered``)."""
        t = self.outbox
        if status == "failed":
            allowed: Sequence[str] = ("pending", "sending", "sent")
        else:
            allowed = [s for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
        values: dict[str, Any] = {"status": status}
        if error is not None:
            values["last_error"] = error
        return await self.store.execute(t.update().where(
            t.c.id == row.id, t.c.status.in_(list(allowed))).values(**values)) == 1

    async def message_status(self, tenant: str, message_id: int) -> OutboxRow | None:
        t = self.outbox
        row = await self.store.fetch_one(sa.select(t).where(t.c.tenant == tenant,
                                                            t.c.message_id == message_id))
        return None if row is None else _outbox(row)

    async def forget_session(self, tenant: str, session: str) -> None:
        """A deleted session's contacts and unsent messages go with it."""
        def fn(conn: sa.Connection) -> None:
            conn.execute(self.inbound.delete().where(self.inbound.c.tenant == tenant,
                                                     self.inbound.c.session == session))
            conn.execute(self.contacts.delete().where(self.contacts.c.tenant == tenant,
                                                      self.contacts.c.session == session))
            o = self.outbox
            conn.execute(o.update().where(o.c.tenant == tenant, o.c.session == session,
                                          o.c.status.in_(["pending", "sending"]))
                         .values(status="failed", last_error="the session was deleted"))
        await self.store.run(fn)


def _session(row: Any) -> SessionRow:
    return SessionRow(row["tenant"], row["id"], row["provider"], json.loads(row["config"]),
                      row["status"], row["reason"], row["updated_at"])


def _outbox(row: Any) -> OutboxRow:
    return OutboxRow(row["id"], row["tenant"], row["session"], row["conversation"],
                     row["message_id"], row["to"], row["type"], json.loads(row["content"]),
                     row["status"], row["attempts"], row["last_error"], row["provider_id"])
