"""The whatsapp plugin's hooks: what it declares, and how it starts."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import trio
from quart import Blueprint
from switchboard.core import (
    App,
    ChatMessage,
    ClientError,
    EventSpec,
    MessageSource,
    Profile,
    Rate,
    Session,
    StoreUnavailable,
    hookimpl,
    incoming,
    outgoing,
)

from . import events
from .compat import SYSZAP
from .engine import WhatsApp
from .events import SessionRef
from .http import blueprint
from .settings import WhatsAppSettings


class WhatsAppPlugin:
    """WhatsApp sessions, QR codes and states; WhatsApp as a chat channel."""

    def __init__(self) -> None:
        self.engine = WhatsApp()

    # -- declaration -----------------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return WhatsAppSettings

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
        specs = [
            incoming("whatsapp:sessions", None, self.list_sessions,
                     doc="agents: ack {sessions: [session]} of the tenant"),
            outgoing(events.SESSION, doc="to tenant:{id}:agents: {sessionId, status, "
                     "provider, reason, timestamp}"),
            outgoing(events.QR, doc="to tenant:{id}:agents: {sessionId, qr, svg, png, "
                     "expiresAt, timestamp}"),
            outgoing(events.QR_EXPIRED, doc="to tenant:{id}:agents: {sessionId, timestamp}"),
            outgoing(events.CONTACT, doc="to tenant:{id}:agents: {sessionId, waId, userId, "
                     "name, picture, conversationId, created, lastContactAt}"),
            outgoing(events.MESSAGE, doc="to tenant:{id}:agents: {sessionId, direction, "
                     "message, contact, timestamp}"),
        ]
        for command in events.COMMANDS:
            async def handler(session: Session, payload: SessionRef,
                              command: str = command) -> dict[str, Any]:
                return await self.command(session, payload, command)
            specs.append(incoming(f"whatsapp:session:{command}", SessionRef, handler,
                                  rate=Rate(rate=1.0, burst=5),
                                  doc=f"admin roles: {{sessionId}}; ack the session "
                                      f"after {command}"))
        return specs

    # -- lifecycle ---------------------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.engine.start(app, app.settings(self))

    @hookimpl
    def switchboard_background_tasks(self) -> list[Any]:
        return [self._resume]

    async def _resume(self) -> None:
        await self.engine.outbox.resume()

    @hookimpl
    async def switchboard_shutdown(self) -> None:
        await self.engine.close()

    @hookimpl
    async def switchboard_chat_message_stored(self, message: ChatMessage,
                                              source: MessageSource) -> None:
        try:
            await self.engine.message_stored(message)
        except StoreUnavailable:
            # queued again in the background until the store answers
            self.engine.app.nursery.start_soon(self._queue_later, message)

    async def _queue_later(self, message: ChatMessage) -> None:
        delay = 1.0
        while True:
            await trio.sleep(delay)
            try:
                await self.engine.message_stored(message)
                return
            except StoreUnavailable:
                delay = min(delay * 2, 30.0)

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
