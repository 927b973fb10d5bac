"""The whatsapp plugin at work: the shared parts (settings, storage, the HTTP
client) and the three jobs, :class:`~.sessions.Sessions`,
:class:`~.inbound.Inbound` and :class:`~.outbox.Outbox`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
from switchboard.core import App, ChatMessage, ClientError, agents_room

from . import events
from .inbound import CONTACT_PREFIX, Inbound, contact_user, parse_conversation
from .outbox import Outbox
from .sessions import Sessions
from .settings import WhatsAppSettings
from .storage import OutboxRow, WhatsAppStorage


class WebhookRefused(Exception):
    """A webhook that is not the session's provider's (401), or not JSON (400)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class WhatsApp:
    app: App
    settings: WhatsAppSettings

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self.storage = WhatsAppStorage()
        self.sessions = Sessions(self)
        self.inbound = Inbound(self)
        self.outbox = Outbox(self)

    def start(self, app: App, settings: WhatsAppSettings) -> None:
        self.app = app
        self.settings = settings
        self.storage.store = app.store

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client of provider calls, made on first use (a server that
        never talks to a provider builds no TLS context)."""
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client

    @client.setter
    def client(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # -- webhooks -----------------------------------------------------------------------

    async def webhook(self, tenant: str, session: str, body: bytes,
                      headers: Mapping[str, str]) -> int:
        """Take in a provider's webhook: refused unless authentic; the number
        of events it carried."""
        row = await self.sessions.get(tenant, session)
        provider = self.sessions.provider(row)
        try:
            parsed: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None
        if not provider.authentic(body, headers, parsed):
            raise WebhookRefused(401, "unauthorized", "the webhook's signature or key is wrong")
        if parsed is None:
            raise WebhookRefused(400, "invalid_json", "the webhook body is not JSON")
        happened = provider.parse(parsed)
        await self.inbound.handle(row, happened)
        return len(happened)

    # -- outgoing -------------------------------------------------------------------------

    async def message_stored(self, message: ChatMessage, *, wake: bool = True) -> None:
        """A chat message was stored: queue it for WhatsApp if it is a message
        of a WhatsApp conversation that the contact did not write (and wake
        its number's sender)."""
        where = parse_conversation(message.conversation_id)
        if where is None or message.sender_id.startswith(CONTACT_PREFIX):
            return
        session, wa_id = where
        if await self.storage.session(message.tenant_id, session) is None:
            return
        tenant = message.tenant_id
        if not await self.storage.queue(tenant, session, message.conversation_id, message.id,
                                        wa_id, message.type, message.content):
            return
        if wake:
            self.outbox.wake(tenant, session)
        contact = await self.storage.contact(tenant, session, wa_id)
        await self.app.publish(tenant, agents_room(tenant), events.MESSAGE, {
            "sessionId": session, "direction": "out", "message": message.to_json(),
            "contact": {"tenant": tenant, "sessionId": session, "waId": wa_id,
                        "userId": contact_user(wa_id),
                        "name": contact.name if contact else None,
                        "picture": contact.picture if contact else None,
                        "conversationId": message.conversation_id},
            "timestamp": time.time()})

    async def announce_status(self, row: OutboxRow, status: str, error: str | None) -> None:
        data: dict[str, Any] = {"conversationId": row.conversation, "messageId": row.message_id,
                                "userId": contact_user(row.to), "status": status}
        if error is not None:
            data["error"] = error
        await self.app.publish(row.tenant, f"conversation:{row.conversation}", events.STATUS,
                               data)

    async def delivery(self, tenant: str, message_id: int) -> dict[str, Any]:
        """The WhatsApp delivery of a chat message: status, tries, last error."""
        row = await self.storage.message_status(tenant, message_id)
        if row is None:
            raise ClientError("not_found", f"message {message_id} was not sent to WhatsApp",
                              messageId=message_id)
        return {"messageId": row.message_id, "conversationId": row.conversation,
                "sessionId": row.session, "to": row.to, "status": row.status,
                "attempts": row.attempts, "error": row.last_error,
                "providerMessageId": row.provider_id}
