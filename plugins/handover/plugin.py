"""The handover plugin's hooks: what it declares, and how it starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import sqlalchemy as sa
from quart import Blueprint
from switchboard.core import App, EventSpec, HandoverService, hookimpl
from switchboard.plugins.migrations import directory as migrations_directory

from .events import HandoverEvents
from .http import blueprint
from .payloads import HandoverSettings
from .service import Handover
from .storage import HandoverStorage


class HandoverPlugin:
    """Bot-to-human handover: requests, the atomic accept, transfers,
    escalation; the ``handover`` service.

    ``clock`` (UNIX time, for tests): by default the wall clock as it was at
    start-up, moved on by Trio's clock.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.storage = HandoverStorage()
        #: The engine, and the service other plugins get with ``app.service("handover")``.
        self.engine = Handover(self.storage, clock)
        self.events = HandoverEvents(self.engine)

    @hookimpl
    def switchboard_config_class(self) -> type:
        return HandoverSettings

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        return self.events.specs()

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("handover")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.storage.declare(metadata)

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        return blueprint(self.engine)

    @hookimpl
    def switchboard_services(self) -> Mapping[str, object]:
        service: HandoverService = self.engine  # (checked by mypy: it keeps the contract)
        return {"handover": service}

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.engine.start(app, app.settings(self))

    @hookimpl
    def switchboard_background_tasks(self, app: App) -> list[Callable[[], Awaitable[None]]]:
        return [self.engine.run_timer]
