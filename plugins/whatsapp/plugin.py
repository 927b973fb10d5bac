"""The whatsapp plugin's hooks: what it declares, and how it starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from quart import Blueprint
from switchboard.core import (
    MAX_ROW_ID,
    App,
    ClientError,
    EventSpec,
    Profile,
    Rate,
    Session,
    StoreUnavailable,
    hookimpl,
    incoming,
    object_schema,
    outgoing,
)
from switchboard.plugins.migrations import directory as migrations_directory

from . import events
from .compat import SYSZAP
from .engine import WhatsApp
from .events import SessionRef
from .http import blueprint
from .inbound import CONVERSATION_PREFIX
from .settings import WhatsAppSettings

#: The rooms of WhatsApp conversations.
WHATSAPP_ROOMS = "conversation:" + CONVERSATION_PREFIX


#: A session as the events, acks and the HTTP API describe it.
SESSION = {"type": "object", "description": "A WhatsApp session: {id, tenant, provider, "
           "status, ...}."}


class WhatsAppPlugin:
    """WhatsApp sessions, QR codes and states; WhatsApp as a chat channel."""

    def __init__(self) -> None:
        self.engine = WhatsApp()
        #: (tenant, conversation, message id) of messages heard, to queue.
        self._heard: list[tuple[str, str, int]] = []
        self._heard_event = trio.Event()

    # -- declaration -----------------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return WhatsAppSettings

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("whatsapp")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.engine.storage.declare(metadata)

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        return blueprint(self.engine)

    @hookimpl
    def switchboard_profiles(self) -> list[Profile]:
        return [SYSZAP]

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        agents = ["tenant:{tenantId}:agents"]
        specs = [
            incoming("whatsapp:sessions", None, self.list_sessions,
                     ack=object_schema(sessions={"type": "array", "items": SESSION}),
                     doc="agents: ack {sessions: [session]} of the tenant"),
            outgoing(events.SESSION, rooms=agents, schema=object_schema(
                "reason", sessionId=str, status=str, provider=str, timestamp=float),
                     doc="to tenant:{id}:agents: {sessionId, status, provider, reason, "
                         "timestamp}"),
            outgoing(events.QR, rooms=agents, schema=object_schema(
                sessionId=str, qr=str, svg=str, png=str, expiresAt=float, timestamp=float),
                     doc="to tenant:{id}:agents: {sessionId, qr, svg, png, expiresAt, "
                         "timestamp}"),
            outgoing(events.QR_EXPIRED, rooms=agents,
                     schema=object_schema(sessionId=str, timestamp=float),
                     doc="to tenant:{id}:agents: {sessionId, timestamp}"),
            outgoing(events.CONTACT, rooms=agents, schema=object_schema(
                "name", "picture", "lastContactAt", sessionId=str, waId=str, userId=str,
                conversationId=str, created=bool),
                     doc="to tenant:{id}:agents: {sessionId, waId, userId, name, picture, "
                         "conversationId, created, lastContactAt}"),
            outgoing(events.MESSAGE, rooms=agents, schema=object_schema(
                "message", "contact", sessionId=str,
                direction={"enum": ["in", "out"]}, timestamp=float),
                     doc="to tenant:{id}:agents: {sessionId, direction, message, contact, "
                         "timestamp}"),
        ]
        for command in events.COMMANDS:
            async def handler(session: Session, payload: SessionRef,
                              command: str = command) -> dict[str, Any]:
                return await self.command(session, payload, command)
            specs.append(incoming(f"whatsapp:session:{command}", SessionRef, handler,
                                  rate=Rate(rate=1.0, burst=5), ack=SESSION,
                                  doc=f"admin roles: {{sessionId}}; ack the session "
                                      f"after {command}"))
        return specs

    # -- lifecycle ---------------------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.engine.start(app, app.settings(self))
        # New chat messages are heard from their broadcast, not from the chat's
        # switchboard_chat_message_stored hook: a hook implementation makes the
        # chat queue a call for every message of every conversation, where this
        # looks at the room name of each and takes WhatsApp conversations only.
        app.watch_publications(["message:new"], self._published)

    @hookimpl
    def switchboard_background_tasks(self) -> list[Any]:
        return [self._resume, self._take_published]

    async def _resume(self) -> None:
        await self.engine.outbox.resume()

    def _published(self, publication: Any) -> None:
        room, data = publication.room, publication.data
        if not room.startswith(WHATSAPP_ROOMS) or not isinstance(data, dict):
            return
        message_id = data.get("id")
        if isinstance(message_id, int) and not isinstance(message_id, bool) \
                and 1 <= message_id <= MAX_ROW_ID:
            self._heard.append((publication.tenant, room.removeprefix("conversation:"),
                                message_id))
            self._heard_event.set()

    async def _take_published(self) -> None:
        """Queue the messages heard for WhatsApp, as the chat stored them (what
        was published is only a hint: a backend may publish anything)."""
        chat = self.engine.app.service("chat")
        delay = 1.0
        while True:
            while not self._heard:
                await self._heard_event.wait()
                self._heard_event = trio.Event()
            tenant, conversation, message_id = self._heard[0]
            try:
                page = await chat.history(tenant, conversation, after=message_id - 1, limit=1)
                for message in page.messages[:1]:
                    if message.id == message_id:
                        await self.engine.message_stored(message)
            except StoreUnavailable:
                await trio.sleep(delay)  # the same message again, once the store answers
                delay = min(delay * 2, 30.0)
                continue
            except ClientError:
                pass  # no such conversation: nothing to send
            delay = 1.0
            self._heard.pop(0)

    @hookimpl
    async def switchboard_shutdown(self) -> None:
        await self.engine.close()

    # -- socket events -------------------------------------------------------------------

    async def list_sessions(self, session: Session, payload: Any) -> dict[str, Any]:
        if not self.engine.app.is_agent(session):
            raise ClientError("forbidden", "only agents see the WhatsApp sessions")
        rows = await self.engine.storage.sessions_of(session.tenant_id)
        return {"sessions": [self.engine.sessions.describe(r) for r in rows]}

    async def command(self, session: Session, payload: SessionRef,
                      command: str) -> dict[str, Any]:
        if session.role not in self.engine.settings.admin_roles:
            raise ClientError("forbidden", f"only {', '.join(self.engine.settings.admin_roles)}"
                              f" may {command} a WhatsApp session")
        return await self.engine.sessions.command(session.tenant_id, payload.sessionId, command)
