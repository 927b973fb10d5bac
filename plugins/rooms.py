"""Rooms: ``room:join`` / ``room:leave`` and the default join policy.

Policy for the canonical rooms (names are always within the client's tenant):

- ``user:{id}``: only that user.
- ``tenant:{id}``: members of that tenant; ``tenant:{id}:agents``: agent roles.
- any other room: agent roles (``rooms.agent_roles``) of the tenant; other
  clients only through another plugin that allows it (for example the chat
  plugin for the participants of a conversation) or ``rooms.public_patterns``.
"""

from __future__ import annotations

from typing import Any

import attrs
from switchboard.core import App, Session, hookimpl, incoming, object_schema, outgoing


@attrs.frozen
class RoomRequest:
    room: str


class RoomsPlugin:
    app: App

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [
            incoming("room:join", RoomRequest, self.join, ack=object_schema(room=str),
                     doc="Join a room of your tenant; ack {room} or error forbidden."),
            incoming("room:leave", RoomRequest, self.leave, ack=object_schema(room=str),
                     doc="Leave a room; ack {room}."),
            outgoing("session", rooms=["session"], schema=object_schema(
                "expires_at", sid=str, heartbeat_interval=float, heartbeat_timeout=float,
                user_id=str, tenant_id=str, role=str),
                     doc="First frame (plain WebSocket): sid, heartbeat interval and timeout, "
                         "identity."),
            outgoing("error", rooms=["session"], schema={"$ref": "#/components/schemas/Error"},
                     doc="{code, message, field?}: a refused or malformed request."),
        ]

    async def join(self, session: Session, request: RoomRequest) -> dict[str, Any]:
        return {"room": await self.app.join(session, request.room)}

    async def leave(self, session: Session, request: RoomRequest) -> dict[str, Any]:
        return {"room": await self.app.leave(session, request.room)}

    @hookimpl
    def switchboard_authorize_join(self, session: Session, room: str) -> bool | None:
        kind, _, rest = room.partition(":")
        if kind == "user":
            return rest == session.user_id
        if kind == "tenant":
            tenant, _, sub = rest.partition(":")
            if tenant != session.tenant_id or session.identity.confined:
                return False
            if sub == "":
                return True
            return self.app.hub.is_agent(session) if sub == "agents" else None
        return True if self.app.hub.is_agent(session) else None
