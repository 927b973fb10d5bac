"""What a session's webhooks bring in: messages into chat conversations (one
per session and contact), contacts created or changed, delivery statuses of
what was sent."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from switchboard.core import ChatParticipant, ClientError, agents_room

from . import events
from .model import (
    Contact,
    ContactUpdate,
    Event,
    InboundMessage,
    StatusUpdate,
)
from .storage import ContactChange, OutboxRow, SessionRow

if TYPE_CHECKING:
    from .engine import WhatsApp

log = logging.getLogger("switchboard.whatsapp")

CONVERSATION_PREFIX = "whatsapp:"
#: Statuses kept for provider ids not known yet, at most.
MAX_EARLY = 10_000
CONTACT_PREFIX = "wa:"


def conversation_id(session: str, wa_id: str) -> str:
    """The chat conversation of a session and a contact."""
    return f"{CONVERSATION_PREFIX}{session}:{wa_id}"


def contact_user(wa_id: str) -> str:
    """The chat participant (user id) a contact writes as."""
    return CONTACT_PREFIX + wa_id


def parse_conversation(conversation: str) -> tuple[str, str] | None:
    """(session, wa_id) of a WhatsApp conversation id; None for another one."""
    if not conversation.startswith(CONVERSATION_PREFIX):
        return None
    session, _, wa_id = conversation.removeprefix(CONVERSATION_PREFIX).partition(":")
    if not session or not wa_id.isdigit():
        return None
    return session, wa_id


def contact_json(tenant: str, session: str, change: ContactChange) -> dict[str, Any]:
    contact = change.contact
    return {"tenant": tenant, "sessionId": session, "waId": contact.wa_id,
            "userId": contact_user(contact.wa_id),
            "name": contact.name, "picture": contact.picture,
            "conversationId": conversation_id(session, contact.wa_id),
            "created": change.created, "lastContactAt": change.last_contact_at}


class Inbound:
    def __init__(self, engine: WhatsApp) -> None:
        self.engine = engine
        #: Statuses of provider ids not known yet: (tenant, session, id) -> status.
        self._early: OrderedDict[tuple[str, str, str], StatusUpdate] = OrderedDict()

    async def handle(self, row: SessionRow, happened: list[Event]) -> None:
        """Act on the events of one webhook, in order."""
        for event in happened:
            if isinstance(event, InboundMessage):
                await self._message(row, event)
            elif isinstance(event, StatusUpdate):
                await self._status(row, event)
            elif isinstance(event, ContactUpdate):
                await self._contact(row, event.contact, message=False)
        await self.engine.sessions.apply(row.tenant, row.id, happened)

    async def _contact(self, row: SessionRow, contact: Contact, *,
                       message: bool) -> ContactChange:
        change = await self.engine.storage.touch_contact(row.tenant, row.id, contact,
                                                         message=message)
        if change.created or change.changed:
            await self.engine.app.publish(row.tenant, agents_room(row.tenant), events.CONTACT,
                                          contact_json(row.tenant, row.id, change))
        return change

    async def _message(self, row: SessionRow, message: InboundMessage) -> None:
        tenant = row.tenant
        change = await self._contact(row, message.contact, message=True)
        contact = change.contact
        chat = self.engine.app.service("chat")
        user = contact_user(contact.wa_id)
        conversation, _ = await chat.get_or_create_conversation(
            tenant, conversation_id(row.id, contact.wa_id),
            title=contact.name or f"+{contact.wa_id}",
            participants=[ChatParticipant(user, "customer")])
        try:
            stored = await chat.post_message(
                tenant, conversation.id, sender_id=user, sender_role="customer",
                type=message.type, content=message.content, client_id=message.provider_id)
        except ClientError as exc:
            if exc.code != "invalid_payload":
                raise
            log.info("whatsapp message %s kept as text: %s", message.provider_id, exc.message)
            stored = await chat.post_message(
                tenant, conversation.id, sender_id=user, sender_role="customer",
                content={"text": f"({message.type} message)"}, client_id=message.provider_id)
        if await self.engine.storage.took_in(tenant, row.id, message.provider_id, stored.id):
            await self.engine.app.publish(tenant, agents_room(tenant), events.MESSAGE, {
                "sessionId": row.id, "direction": "in", "message": stored.to_json(),
                "contact": contact_json(row.tenant, row.id, change), "timestamp": time.time()})
            if change.created:
                await self._open_ticket(tenant, row.id, contact, conversation.id)

    async def _open_ticket(self, tenant: str, session: str, contact: Contact,
                           conversation: str) -> None:
        """A new contact's first message: a ticket in the configured queue, when
        the service desk is on. Its failure never refuses the message."""
        queue = self.engine.settings.ticket_queue
        if not queue:
            return
        try:
            tickets = self.engine.app.service("tickets")
        except LookupError:
            return  # no service desk
        name = contact.name or f"+{contact.wa_id}"
        try:
            await tickets.create(tenant, subject=f"WhatsApp: {name}"[:200],
                                 customer_id=contact_user(contact.wa_id), channel="whatsapp",
                                 queue_id=queue, tags=[conversation], by="whatsapp")
        except ClientError as exc:
            log.warning("whatsapp: no ticket for %s of session %s of %s: %s",
                        contact.wa_id, session, tenant, exc.message)

    async def _status(self, row: SessionRow, update: StatusUpdate) -> None:
        storage = self.engine.storage
        sent = await storage.by_provider_id(row.tenant, row.id, update.provider_id)
        if sent is None:
            # not ours, or ours before the provider's answer to the send was
            # recorded: kept a while, and applied when it is (see apply_early)
            self._early[(row.tenant, row.id, update.provider_id)] = update
            while len(self._early) > MAX_EARLY:
                self._early.popitem(last=False)
            return
        await self.apply_status(row.tenant, sent, update)

    async def apply_early(self, tenant: str, sent: OutboxRow) -> None:
        """A send's provider id is recorded: the statuses that came before it."""
        if sent.provider_id is None:
            return
        update = self._early.pop((tenant, sent.session, sent.provider_id), None)
        if update is not None:
            await self.apply_status(tenant, sent, update)

    async def apply_status(self, tenant: str, sent: OutboxRow, update: StatusUpdate) -> None:
        storage = self.engine.storage
        if not await storage.move_status(sent, update.status, update.error):
            return  # nothing moved (a repeat, or one arriving late)
        if update.status in ("delivered", "read"):
            # the contact's receipt: the chat moves their watermark (history shows
            # it) and broadcasts message:status
            try:
                await self.engine.app.service("chat").mark_receipt(
                    tenant, sent.conversation, contact_user(sent.to), sent.message_id,
                    update.status)
            except ClientError as exc:  # (the contact left the conversation meanwhile)
                log.info("whatsapp receipt of message %s not kept: %s", sent.message_id,
                         exc.message)
            return
        await self.engine.announce_status(sent, update.status, update.error)
