"""The chat plugin's hooks: what it declares, and how it starts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from quart import Blueprint
from switchboard.core import App, ChatService, EventSpec, Session, hookimpl, keep_serving
from switchboard.plugins.migrations import directory as migrations_directory

from .events import ChatEvents
from .http import blueprint
from .payloads import ROOM_PREFIX, ChatSettings
from .service import Chat
from .storage import ChatStorage


class ChatPlugin:
    """Conversations, durable messages, receipts and history; the ``chat`` service."""

    def __init__(self) -> None:
        self.storage = ChatStorage()
        #: The engine, and the service other plugins get with ``app.service("chat")``.
        self.chat = Chat(self.storage)
        self.events = ChatEvents(self.chat)

    # -- declaration -----------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return ChatSettings

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        return self.events.specs()

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("chat")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.storage.declare(metadata)

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        return blueprint(self.chat)

    @hookimpl
    def switchboard_services(self) -> Mapping[str, object]:
        service: ChatService = self.chat  # (checked by mypy: it keeps the contract)
        return {"chat": service}

    # -- lifecycle -------------------------------------------------------------

    @hookimpl
    async def switchboard_startup(self, app: App) -> None:
        writer = self.chat.start(app, app.settings(self))
        # Running before any plugin's background task starts, so that one
        # posting a message at once finds the writer there.
        await app.nursery.start(keep_serving, writer.run, "ChatPlugin.writer",
                                app.task_failed)

    @hookimpl
    async def switchboard_authorize_join(self, session: Session, room: str) -> bool | None:
        if not room.startswith(ROOM_PREFIX):
            return None
        conversation = room.removeprefix(ROOM_PREFIX)
        if self.chat.settings.unknown_conversations == "defer" \
                and await self.chat.members(session.tenant_id, conversation) is None:
            return None  # not ours: the other policies (a join proxy) decide
        await self.chat.check_access(session, conversation)
        return True
