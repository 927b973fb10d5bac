"""The desk plugin's hooks: what it declares, and how it starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from quart import Blueprint
from switchboard.core import (
    App,
    ChatMessage,
    EventSpec,
    JsonHandler,
    Profile,
    Session,
    TicketService,
    agents_room,
    hookimpl,
    keep_serving,
)
from switchboard.plugins.migrations import directory as migrations_directory

from .agents import Agents
from .compat import desk_profiles
from .events import DeskEvents
from .http import CreateRoutes, blueprint
from .payloads import QUEUE_ROOM, TICKET_ROOM, DeskSettings
from .queues import QueueDirectory
from .sla import SlaTimers
from .storage import DeskStorage
from .tickets import Tickets, not_found


class DeskPlugin:
    """Tickets, queues, agent status and SLA timers; the ``tickets`` service."""

    app: App

    def __init__(self) -> None:
        self.storage = DeskStorage()
        self.queues = QueueDirectory(self.storage)
        #: The engine, and the service other plugins get with ``app.service("tickets")``.
        self.tickets = Tickets(self.storage, self.queues)
        self.agents = Agents(self.storage, self.tickets, self.queues)
        self.sla = SlaTimers(self.storage, self.tickets)
        self.events = DeskEvents(self.tickets, self.agents)
        self.create_routes = CreateRoutes(self.tickets)

    # -- declaration -------------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return DeskSettings

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        return self.events.specs()

    @hookimpl
    def switchboard_profiles(self) -> list[Profile]:
        return desk_profiles()

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("desk")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.storage.declare(metadata)

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        return blueprint(self.create_routes, self.agents)

    @hookimpl
    def switchboard_json_routes(self) -> Mapping[tuple[str, str], JsonHandler]:
        return self.create_routes.routes()

    @hookimpl
    def switchboard_services(self) -> Mapping[str, object]:
        service: TicketService = self.tickets  # (checked by mypy: it keeps the contract)
        return {"tickets": service}

    # -- lifecycle ---------------------------------------------------------------

    @hookimpl
    async def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.storage.start(app.store)
        settings: DeskSettings = app.settings(self)
        self.queues.start(app)
        self.tickets.start(app, settings)
        # running before any request can create a ticket
        await app.nursery.start(keep_serving, self.tickets.writer.run, "DeskPlugin.writer",
                                app.task_failed)
        self.agents.start(app, settings)
        self.sla.start(app, settings)
        await self.agents.declare_queues(settings.queues)

    @hookimpl
    def switchboard_background_tasks(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.sla.run]

    @hookimpl
    async def switchboard_session_opened(self, session: Session) -> None:
        await self.agents.session_opened(session)

    @hookimpl
    async def switchboard_session_closed(self, session: Session) -> None:
        await self.agents.session_closed(session)

    @hookimpl
    async def switchboard_authorize_join(self, session: Session, room: str) -> bool | None:
        if room.startswith(QUEUE_ROOM):
            queue = room.removeprefix(QUEUE_ROOM)
            if not await self.tickets.queue_exists(session.tenant_id, queue):
                return None  # not one of the desk's queues: the other policies decide
            return await self.agents.may_join_queue(session, queue)
        if not room.startswith(TICKET_ROOM):
            return None
        ticket_id = room.removeprefix(TICKET_ROOM)
        ticket = await self.tickets.get(session.tenant_id, ticket_id)
        if ticket is None:
            if self.tickets.settings.unknown_tickets == "defer":
                return None  # not ours: the other policies (a join proxy) decide
            raise not_found(ticket_id)
        if self.app.is_agent(session) and not session.identity.confined:
            return True
        return ticket.customer_id == session.user_id

    # -- the chat's messages -----------------------------------------------------

    @hookimpl
    async def switchboard_chat_message_stored(self, message: ChatMessage) -> None:
        ticket_id = self.tickets.ticket_of_conversation(message.conversation_id)
        if ticket_id is None:
            return
        ticket = await self.tickets.get(message.tenant_id, ticket_id)
        if ticket is None:
            return
        await self.app.publish(ticket.tenant_id, ticket.room, "ticket:message",
                               {"message": message.to_json(), "ticket": ticket.to_json()})
        if message.sender_role in self.app.config.rooms.agent_roles:
            if ticket.first_response_at is None:
                await self.tickets.mark_first_response(ticket.tenant_id, ticket.id,
                                                       message.created_at)
            return
        if ticket.assignee_id is None and ticket.is_active:
            tenant = ticket.tenant_id
            room = agents_room(tenant) if ticket.queue_id is None \
                else QUEUE_ROOM + ticket.queue_id
            data: dict[str, Any] = {"message": message.to_json(), "ticket": ticket.to_json()}
            await self.app.publish(tenant, room, "ticket:message_unassigned", data)
