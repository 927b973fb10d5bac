"""Help requests: a customer raises a hand, the agents of the tenant are told.

What a client sees:

- ``help:request {reason}`` (rate limited) stores the request and sends
  ``help:requested {id, userId, reason, at}`` to ``tenant:{id}:agents``; the
  ack is ``{id, at}``.
- A customer may join ``help:{their user id}`` to follow their request; agents
  may join any ``help:*`` room (the default room policy lets them).
- A request still open ``expire_after`` seconds later expires: it is deleted
  and ``help:expired {id, userId}`` goes to the agents and to ``help:{userId}``.

Server to server: ``GET /api/v1/help/<tenant>`` (API key) lists the open
requests of a tenant and how many it received since the server started.

Everything here goes through the public plugin API of ``switchboard.core``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa
import trio
from quart import Blueprint
from switchboard.core import (
    App,
    ClientError,
    Rate,
    Session,
    agents_room,
    api_key_tenant_allowed,
    documented,
    error_response,
    hookimpl,
    incoming,
    outgoing,
    require_api_key,
)

#: Longest accepted reason, in characters.
MAX_REASON = 500


@attrs.frozen
class HelpSettings:
    """``[plugins.help_demo]``."""

    #: Seconds after which an open help request expires.
    expire_after: float = 600.0


@attrs.frozen
class HelpRequest:
    reason: str


@attrs.frozen
class HelpRequested:
    id: int
    userId: str
    reason: str
    at: float


@attrs.frozen
class HelpExpired:
    id: int
    userId: str


@attrs.define
class _Open:
    """An open request as the expiry task sees it."""

    tenant: str
    user_id: str
    #: When it expires, on Trio's clock.
    deadline: float


def help_room(user_id: str) -> str:
    return f"help:{user_id}"


class HelpRequestPlugin:
    app: App
    settings: HelpSettings

    def __init__(self) -> None:
        self.table: sa.Table | None = None
        #: Requests received per tenant since the server started.
        self.received: Counter[str] = Counter()
        self._open: dict[int, _Open] = {}
        self._changed = trio.Event()

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return HelpSettings

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [
            incoming("help:request", HelpRequest, self.request,
                     rate=Rate(rate=0.1, burst=3.0),
                     doc="Ask the agents of your tenant for help; ack {id, at}."),
            outgoing("help:requested", HelpRequested,
                     doc="To tenant:{id}:agents: a user asked for help."),
            outgoing("help:expired", HelpExpired,
                     doc="To the agents and help:{userId}: a request expired unanswered."),
        ]

    @hookimpl
    def switchboard_migrations(self) -> Path:
        # Alembic revision scripts, shipped as package data (pyproject.toml)
        return Path(__file__).resolve().parent / "migrations"

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.table = sa.Table(
            "help_demo_requests", metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("tenant_id", sa.String(200), nullable=False, index=True),
            sa.Column("user_id", sa.String(200), nullable=False),
            sa.Column("reason", sa.String(MAX_REASON), nullable=False),
            sa.Column("at", sa.Float, nullable=False),
        )

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("help_demo", __name__)

        @bp.get("/api/v1/help/<tenant>")
        @documented("The tenant's open help requests", responses={
            200: "`{tenant, received, open}`", 403: "the key may not use this tenant"})
        @require_api_key
        async def open_requests(tenant: str) -> Any:
            if not api_key_tenant_allowed(tenant):
                return error_response(403, "forbidden", "API key not valid for this tenant")
            return {"tenant": tenant, "received": self.received[tenant],
                    "open": await self.open_requests(tenant)}

        return bp

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)

    @hookimpl
    def switchboard_background_tasks(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.expire_old_requests]

    @hookimpl
    def switchboard_authorize_join(self, session: Session, room: str) -> bool | None:
        kind, _, owner = room.partition(":")
        if kind == "help" and owner == session.user_id:
            return True
        return None  # other help rooms: agents only, as for any room

    # -- the event -----------------------------------------------------------

    async def request(self, session: Session, payload: HelpRequest) -> dict[str, Any]:
        reason = payload.reason.strip()
        if not reason:
            raise ClientError("invalid_payload", "reason: must not be empty", field="reason")
        if len(reason) > MAX_REASON:
            raise ClientError("invalid_payload", f"reason: at most {MAX_REASON} characters",
                              field="reason")
        at, deadline = time.time(), trio.current_time() + self.settings.expire_after
        request_id = await self._insert(session.tenant_id, session.user_id, reason, at)
        self.received[session.tenant_id] += 1
        self._track(request_id, session.tenant_id, session.user_id, deadline)
        await self.app.publish(session.tenant_id, agents_room(session.tenant_id),
                               "help:requested",
                               HelpRequested(request_id, session.user_id, reason, at))
        return {"id": request_id, "at": at}

    # -- expiry ----------------------------------------------------------------

    async def expire_old_requests(self) -> None:
        """Expire each open request ``expire_after`` seconds after it was made."""
        await self._load_open()
        while True:
            deadline = min((r.deadline for r in self._open.values()), default=math.inf)
            with trio.move_on_at(deadline):
                await self._changed.wait()
                self._changed = trio.Event()
            await self._expire_due(trio.current_time())

    def _track(self, request_id: int, tenant: str, user_id: str, deadline: float) -> None:
        self._open[request_id] = _Open(tenant, user_id, deadline)
        self._changed.set()

    async def _load_open(self) -> None:
        """Requests left open by a previous run keep their remaining time."""
        assert self.table is not None
        rows = await self.app.store.fetch_all(sa.select(self.table))
        now, wall = trio.current_time(), time.time()
        for row in rows:
            left = max(0.0, self.settings.expire_after - (wall - row["at"]))
            self._open.setdefault(row["id"], _Open(row["tenant_id"], row["user_id"], now + left))

    async def _expire_due(self, now: float) -> None:
        due = {rid: r for rid, r in self._open.items() if r.deadline <= now}
        if not due:
            return
        assert self.table is not None
        await self.app.store.execute(self.table.delete().where(self.table.c.id.in_(due)))
        for rid, req in due.items():
            del self._open[rid]
            expired = HelpExpired(rid, req.user_id)
            await self.app.publish(req.tenant, agents_room(req.tenant), "help:expired", expired)
            await self.app.publish(req.tenant, help_room(req.user_id), "help:expired", expired)

    # -- storage ---------------------------------------------------------------

    async def _insert(self, tenant: str, user_id: str, reason: str, at: float) -> int:
        assert self.table is not None
        stmt = self.table.insert().values(tenant_id=tenant, user_id=user_id, reason=reason, at=at)

        def insert(conn: sa.Connection) -> int:
            key = conn.execute(stmt).inserted_primary_key
            assert key is not None
            return int(key[0])

        return await self.app.store.run(insert)

    async def open_requests(self, tenant: str) -> list[dict[str, Any]]:
        assert self.table is not None
        t = self.table
        rows = await self.app.store.fetch_all(
            sa.select(t).where(t.c.tenant_id == tenant).order_by(t.c.id))
        return [attrs.asdict(HelpRequested(r["id"], r["user_id"], r["reason"], r["at"]))
                for r in rows]
