"""The pipeline plugin's hooks: what it declares, and how it starts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from quart import Blueprint
from switchboard.core import (
    App,
    EventSpec,
    PipelineService,
    Session,
    hookimpl,
    keep_serving,
)
from switchboard.plugins.migrations import directory as migrations_directory

from .events import PipelineEvents
from .http import blueprint
from .payloads import BOARD_ROOM, LEAD_ROOM, PipelineSettings
from .service import Pipelines
from .storage import PipelineStorage


class PipelinePlugin:
    """Sales pipelines, leads on a live board, their activity and conversation;
    the ``pipeline`` service."""

    def __init__(self) -> None:
        self.storage = PipelineStorage()
        #: The engine, and the service other plugins get with ``app.service("pipeline")``.
        self.pipelines = Pipelines(self.storage)
        self.events = PipelineEvents(self.pipelines)

    @hookimpl
    def switchboard_config_class(self) -> type:
        return PipelineSettings

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        return self.events.specs()

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("pipeline")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.storage.declare(metadata)

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        return blueprint(self.pipelines)

    @hookimpl
    def switchboard_services(self) -> Mapping[str, object]:
        service: PipelineService = self.pipelines  # (checked by mypy: it keeps the contract)
        return {"pipeline": service}

    @hookimpl
    async def switchboard_startup(self, app: App) -> None:
        writer = self.pipelines.start(app, app.settings(self))
        # Running before any plugin's background task starts, so that one
        # creating a lead at once finds the writer there.
        await app.nursery.start(keep_serving, writer.run, "PipelinePlugin.writer",
                                app.task_failed)

    @hookimpl
    async def switchboard_authorize_join(self, session: Session, room: str) -> bool | None:
        if room.startswith(LEAD_ROOM):
            return await self.pipelines.may_join_lead(session, room.removeprefix(LEAD_ROOM))
        if room.startswith(BOARD_ROOM):
            return await self.pipelines.may_join_board(session,
                                                       room.removeprefix(BOARD_ROOM))
        return None
