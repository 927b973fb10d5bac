"""Notifications: stored per user, pushed live to every device, replayed on connect.

- Created by the HTTP API (``POST /api/v1/notifications``) or by another plugin
  through the ``notifications`` service (``app.service("notifications")``,
  or the older ``switchboard_create_notification`` hook). A notification is
  stored first, then pushed as ``notification:new`` to ``user:{id}``; it is
  marked delivered when a device of the user is connected to any node (the
  devices are counted per node with ``app.cluster_count``, group
  ``notifications:{tenant}``), and reported to
  ``switchboard_notification_created``.
- A device that connects gets the notifications its user missed (not yet
  delivered), oldest first, then ``notification:unread_count``.
- Clients list them (newest first, paginated by id) and mark them read; the
  user's other devices get ``notification:read``.
- Delivery is at least once: a device that connects while a notification is
  being created may get it twice, with the same ``id``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import sqlalchemy as sa
from quart import Blueprint, request
from switchboard.core import (
    INVALID_PAYLOAD,
    MAX_ROW_ID,
    App,
    Batcher,
    BrokerUnavailable,
    ClientError,
    EventSpec,
    Notification,
    NotificationsService,
    Rate,
    Session,
    api_key_tenant_allowed,
    check_identifier,
    documented,
    error_response,
    hookimpl,
    incoming,
    keep_serving,
    object_schema,
    outgoing,
    read_json,
    require_api_key,
    row_id,
    structure_body,
    structure_payload,
)
from switchboard.core import user_room as user_room_of
from switchboard.plugins.migrations import directory as migrations_directory

T = TypeVar("T")

NOT_FOUND = "not_found"
MAX_PAGE = 100
#: Connecting devices whose missed notifications are read in one transaction.
OPENINGS_BATCH = 200

#: Longest accepted text of each field (characters).
MAX_LENGTHS = {"tenant": 200, "user": 200, "title": 200, "message": 4000, "type": 50,
               "link": 2000}


@attrs.frozen
class Missed:
    """What a connecting device of a user is sent: the notifications not
    delivered yet (oldest first) and the unread count."""

    rows: list[sa.RowMapping]
    unread: int


NOTHING_MISSED = Missed([], 0)


@attrs.frozen
class NotificationsSettings:
    #: Most missed notifications sent to a device when it connects (the newest
    #: ones; older ones stay in the list and the unread count). 0 disables it.
    replay_limit: int = attrs.field(default=100, validator=attrs.validators.ge(0))


# -- payloads ------------------------------------------------------------------


@attrs.frozen
class NotificationContent:
    """What a notification says (the body of the hook's ``notification``)."""

    title: str
    message: str
    type: str = "info"
    link: str | None = None
    data: dict[str, Any] | None = None


@attrs.frozen
class CreateRequest:
    """Body of ``POST /api/v1/notifications``."""

    tenant: str
    user: str
    title: str
    message: str
    type: str = "info"
    link: str | None = None
    data: dict[str, Any] | None = None


@attrs.frozen
class ListRequest:
    unreadOnly: bool = False
    before: int | None = None
    limit: int = 20


@attrs.frozen
class ReadRequest:
    id: int = attrs.field(validator=row_id)


@attrs.frozen
class ClientNotification:
    """A notification as its user's devices see it."""

    id: int
    title: str
    message: str
    type: str
    link: str | None
    data: dict[str, Any] | None
    createdAt: float
    read: bool


@attrs.frozen
class UnreadCount:
    count: int


@attrs.frozen
class ReadUpdate:
    ids: list[int]
    unreadCount: int


def _check_lengths(values: dict[str, Any]) -> None:
    for field, limit in MAX_LENGTHS.items():
        value = values.get(field)
        if value is None:
            continue
        if field in ("tenant", "user", "title", "type") and not value:
            raise ClientError(INVALID_PAYLOAD, f"{field}: must not be empty", field=field)
        if len(value) > limit:
            raise ClientError(INVALID_PAYLOAD, f"{field}: longer than {limit} characters",
                              field=field)
        if field in ("tenant", "user", "type") and (problem := check_identifier(value)):
            raise ClientError(INVALID_PAYLOAD, f"{field}: {problem}", field=field)
        if "\x00" in value:  # PostgreSQL text cannot hold it
            raise ClientError(INVALID_PAYLOAD, f"{field}: must not contain NUL characters",
                              field=field)


def _check_page(before: int | None, limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ClientError(INVALID_PAYLOAD, f"limit: must be between 1 and {MAX_PAGE}",
                          field="limit")
    if before is not None and not 1 <= before <= MAX_ROW_ID:
        raise ClientError(INVALID_PAYLOAD, "before: must be a positive id", field="before")


class NotificationsPlugin:
    app: App
    settings: NotificationsSettings
    table: sa.Table
    _openings: Batcher[tuple[str, str], Missed]

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return NotificationsSettings

    @hookimpl
    def switchboard_services(self) -> Mapping[str, object]:
        service: NotificationsService = Notifications(self)  # (mypy checks the contract)
        return {"notifications": service}

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        return [
            incoming("notification:list", ListRequest, self.list_for_client,
                     rate=Rate(rate=5.0, burst=20.0), ack=object_schema(
                         "nextBefore", items={"type": "array", "items": ClientNotification}),
                     doc="{unreadOnly?, before?, limit?}: ack {items, nextBefore}, newest "
                         "first; pass nextBefore as before for the next page."),
            incoming("notification:read", ReadRequest, self.mark_read,
                     rate=Rate(rate=20.0, burst=50.0), ack=object_schema(id=int, unreadCount=int),
                     doc="{id}: mark one of your notifications read; ack {id, unreadCount}."),
            incoming("notification:read_all", None, self.mark_all_read,
                     rate=Rate(rate=1.0, burst=5.0), ack=object_schema(count=int, unreadCount=int),
                     doc="Mark all your notifications read; ack {count, unreadCount}."),
            outgoing("notification:new", ClientNotification, rooms=["user:{userId}"],
                     doc="To user:{id}: a new notification; on connect, the ones missed."),
            outgoing("notification:unread_count", UnreadCount, rooms=["session"],
                     doc="To a device that connects: how many notifications are unread."),
            outgoing("notification:read", ReadUpdate, rooms=["user:{userId}"],
                     doc="To user:{id} (not the device that did it): notifications "
                         "marked read."),
        ]

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("notifications")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.table = sa.Table(
            "notifications_items", metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                      primary_key=True, autoincrement=True),
            sa.Column("tenant_id", sa.String(200), nullable=False),
            sa.Column("user_id", sa.String(200), nullable=False),
            sa.Column("title", sa.String(200), nullable=False),
            sa.Column("message", sa.Text, nullable=False),
            sa.Column("type", sa.String(50), nullable=False),
            sa.Column("link", sa.Text, nullable=True),
            sa.Column("data", sa.JSON, nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("read_at", sa.Float, nullable=True),
            sa.Column("delivered_at", sa.Float, nullable=True),
            sa.Index("notifications_items_user", "tenant_id", "user_id", "id"),
            sqlite_autoincrement=True,
        )

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("notifications", __name__)

        @bp.post("/api/v1/notifications")
        @documented(
            "Create a notification for a user and push it to their devices",
            body=CreateRequest,
            responses={201: "the notification", 403: "the key may not notify that tenant"},
        )
        @require_api_key
        async def create() -> Any:
            req = structure_body(await read_json(), CreateRequest)
            if not api_key_tenant_allowed(req.tenant):
                return error_response(403, "forbidden",
                                      f"this API key may not notify tenant {req.tenant!r}")
            content = NotificationContent(req.title, req.message, req.type, req.link, req.data)
            return self._stored_view(await self.create(req.tenant, req.user, content)), 201

        @bp.get("/api/v1/notifications/<tenant>/<user>")
        @documented(
            "A page of a user's notifications, newest first",
            description="An empty parameter (`?limit=`) is left out.",
            query={
                "unread": {"type": "string", "description": "true, false, 1, 0, yes or no",
                           "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]"
                                      "|[Nn][Oo]|1|0|)$"},
                "before": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
                                     {"const": ""}]},
                "limit": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                                    {"const": ""}]},
            },
            responses={200: "`{items, nextBefore}`", 403: "the key may not use this tenant"},
        )
        @require_api_key
        async def list_for_api(tenant: str, user: str) -> Any:
            if not api_key_tenant_allowed(tenant):
                return error_response(403, "forbidden", "API key not valid for this tenant")
            _check_lengths({"tenant": tenant, "user": user})
            unread = _query_bool("unread", False)
            limit = _query_int("limit", 20) or 0
            before = _query_int("before", None)
            _check_page(before, limit)
            rows, next_before = await self._page(tenant, user, unread, before, limit)
            return {"items": [self._stored_view(r) for r in rows], "nextBefore": next_before}

        return bp

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    async def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        # What the devices that connect in the same moment missed, read for all
        # of them at once: a reconnect storm costs a read per batch, not two
        # per connection.
        self._openings = Batcher(self._read_missed, max_batch=OPENINGS_BATCH)
        await app.nursery.start(keep_serving, self._openings.run,
                                "NotificationsPlugin.openings", app.task_failed)

    async def _count_device(self, session: Session, delta: int) -> None:
        try:
            await self.app.cluster_count(f"notifications:{session.tenant_id}",
                                         session.user_id, delta)
        except BrokerUnavailable:
            pass  # (this node's devices still count for what it creates)

    async def _connected_anywhere(self, tenant: str, user: str) -> bool:
        if self.app.user_sessions(tenant, user):
            return True
        try:
            return await self.app.cluster_count(f"notifications:{tenant}", user) > 0
        except BrokerUnavailable:
            return False  # not marked: replayed at the next connect (at least once)

    @hookimpl
    async def switchboard_session_closed(self, session: Session) -> None:
        await self._count_device(session, -1)

    @hookimpl
    async def switchboard_session_opened(self, session: Session) -> None:
        """Replay what the user missed to this device, then its unread count."""
        await self._count_device(session, +1)
        missed = await self._openings.submit((session.tenant_id, session.user_id))
        rows, unread = missed.rows, missed.unread
        for row in rows:
            session.emit("notification:new", self._client_view(row))
        session.emit("notification:unread_count", attrs.asdict(UnreadCount(unread)))
        if rows and not session.closed:
            # Everything up to the newest one sent counts as delivered, including
            # older misses beyond replay_limit (still listed, still unread).
            t = self.table
            mine = self._owner(session.tenant_id, session.user_id)
            await self.app.store.execute(
                t.update().where(mine, t.c.delivered_at.is_(None), t.c.id <= rows[-1]["id"])
                .values(delivered_at=time.time()))

    # -- the service offered to other plugins -------------------------------

    @hookimpl
    async def switchboard_create_notification(self, tenant_id: str, user_id: str,
                                              notification: dict[str, Any]) -> dict[str, Any]:
        content = structure_body(notification, NotificationContent)
        return self._stored_view(await self.create(tenant_id, user_id, content))

    async def create(self, tenant: str, user: str,
                     content: NotificationContent) -> dict[str, Any]:
        """Store a notification, push it to the user's devices and report it to
        ``switchboard_notification_created``; return the stored row."""
        _check_lengths({"tenant": tenant, "user": user, **attrs.asdict(content)})
        t = self.table
        values: dict[str, Any] = {
            "tenant_id": tenant, "user_id": user, "title": content.title,
            "message": content.message, "type": content.type, "link": content.link,
            "data": content.data, "created_at": time.time(), "read_at": None,
            "delivered_at": None,
        }

        def insert(conn: sa.Connection) -> int:
            key = conn.execute(t.insert().values(values)).inserted_primary_key
            assert key is not None
            return int(key[0])

        row = {**values, "id": await self.app.store.run(insert)}
        await self.app.publish(tenant, user_room_of(user), "notification:new",
                               self._client_view(row))
        if await self._connected_anywhere(tenant, user):
            row["delivered_at"] = time.time()
            await self.app.store.execute(
                t.update().where(t.c.id == row["id"]).values(delivered_at=row["delivered_at"]))
        if self.app.implements(CREATED):
            self.app.notify_soon(CREATED, notification=_notification(row))
        return row

    def _read_missed(self, owners: Sequence[tuple[str, str]]) -> Awaitable[list[Missed]]:
        """For each (tenant, user) of connecting devices: the newest
        notifications not delivered yet (up to ``replay_limit``, oldest first)
        and the unread count, in one read transaction (no write lock on
        SQLite): per tenant, one statement counts the unread and the
        undelivered of its users; the undelivered are then read for the users
        that have some (after a storm of reconnects, few or none)."""
        t = self.table
        limit = max(0, self.settings.replay_limit)
        users: dict[str, set[str]] = {}
        for tenant, user in owners:
            users.setdefault(tenant, set()).add(user)

        def read(conn: sa.Connection) -> list[Missed]:
            found: dict[tuple[str, str], Missed] = {}
            for tenant, names in users.items():
                counts = conn.execute(
                    sa.select(t.c.user_id,
                              sa.func.count().filter(t.c.read_at.is_(None)).label("unread"),
                              sa.func.count().filter(t.c.delivered_at.is_(None))
                              .label("undelivered"))
                    .where(t.c.tenant_id == tenant, t.c.user_id.in_(sorted(names)),
                           sa.or_(t.c.read_at.is_(None), t.c.delivered_at.is_(None)))
                    .group_by(t.c.user_id))
                for user, unread, undelivered in counts:
                    rows: list[sa.RowMapping] = []
                    if undelivered and limit:
                        newest = conn.execute(
                            sa.select(t).where(self._owner(tenant, user),
                                               t.c.delivered_at.is_(None))
                            .order_by(t.c.id.desc()).limit(limit)).mappings().all()
                        rows = list(newest[::-1])
                    found[(tenant, user)] = Missed(rows, int(unread))
            return [found.get(owner, NOTHING_MISSED) for owner in owners]

        return self.app.store.read(read)

    async def unread_count(self, tenant: str, user: str) -> int:
        count = await self.app.store.fetch_one(self._unread_query(self._owner(tenant, user)))
        return int(count["n"]) if count is not None else 0

    # -- client events -----------------------------------------------------

    async def list_for_client(self, session: Session, req: ListRequest) -> dict[str, Any]:
        _check_page(req.before, req.limit)
        rows, next_before = await self._page(session.tenant_id, session.user_id,
                                             req.unreadOnly, req.before, req.limit)
        return {"items": [self._client_view(r) for r in rows], "nextBefore": next_before}

    async def mark_read(self, session: Session, req: ReadRequest) -> dict[str, Any]:
        t = self.table
        mine = self._owner(session.tenant_id, session.user_id)

        def read(conn: sa.Connection) -> tuple[bool, bool, int]:
            exists = conn.execute(
                sa.select(t.c.read_at).where(mine, t.c.id == req.id)).first()
            if exists is None:
                return False, False, 0
            changed = conn.execute(
                t.update().where(mine, t.c.id == req.id, t.c.read_at.is_(None))
                .values(read_at=time.time())).rowcount > 0
            return True, changed, self._unread_count(conn, mine)

        found, changed, unread = await self.app.store.run(
            read, serialize_on=self._reads_of(session))
        if not found:
            raise ClientError(NOT_FOUND, f"no notification {req.id}", id=req.id)
        if changed:
            await self._announce_read(session, [req.id], unread)
        return {"id": req.id, "unreadCount": unread}

    async def mark_all_read(self, session: Session, _: Any) -> dict[str, Any]:
        t = self.table
        mine = self._owner(session.tenant_id, session.user_id)

        def read_all(conn: sa.Connection) -> tuple[list[int], int]:
            ids = [int(i) for i in conn.execute(
                sa.select(t.c.id).where(mine, t.c.read_at.is_(None)).order_by(t.c.id)
            ).scalars()]
            if ids:
                conn.execute(t.update().where(mine, t.c.read_at.is_(None), t.c.id <= ids[-1])
                             .values(read_at=time.time()))
            return ids, self._unread_count(conn, mine)

        ids, unread = await self.app.store.run(read_all, serialize_on=self._reads_of(session))
        if ids:
            await self._announce_read(session, ids, unread)
        return {"count": len(ids), "unreadCount": unread}

    @staticmethod
    def _reads_of(session: Session) -> tuple[str, str, str]:
        """The key that makes a user's read markings wait for each other.

        Without it, two devices marking different notifications read at the
        same moment on PostgreSQL would each count the other's as still
        unread and announce a count one too high.
        """
        return ("notifications:read", session.tenant_id, session.user_id)

    async def _announce_read(self, session: Session, ids: list[int], unread: int) -> None:
        await self.app.publish(session.tenant_id, user_room_of(session.user_id),
                               "notification:read", ReadUpdate(ids, unread), exclude=session)

    # -- queries -----------------------------------------------------------

    def _owner(self, tenant: str, user: str) -> sa.ColumnElement[bool]:
        t = self.table
        return sa.and_(t.c.tenant_id == tenant, t.c.user_id == user)

    def _unread_query(self, mine: sa.ColumnElement[bool]) -> sa.Select[Any]:
        t = self.table
        return (sa.select(sa.func.count().label("n")).select_from(t)
                .where(mine, t.c.read_at.is_(None)))

    def _unread_count(self, conn: sa.Connection, mine: sa.ColumnElement[bool]) -> int:
        return int(conn.execute(self._unread_query(mine)).scalar_one())

    async def _page(self, tenant: str, user: str, unread_only: bool, before: int | None,
                    limit: int) -> tuple[list[sa.RowMapping], int | None]:
        """One page, newest first, and the ``before`` of the next page (None at the end)."""
        t = self.table
        query = sa.select(t).where(self._owner(tenant, user))
        if unread_only:
            query = query.where(t.c.read_at.is_(None))
        if before is not None:
            query = query.where(t.c.id < before)
        rows = await self.app.store.fetch_all(query.order_by(t.c.id.desc()).limit(limit + 1))
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, int(rows[-1]["id"])
        return rows, None

    @staticmethod
    def _client_view(row: Any) -> dict[str, Any]:
        return attrs.asdict(ClientNotification(
            id=int(row["id"]), title=row["title"], message=row["message"], type=row["type"],
            link=row["link"], data=row["data"], createdAt=row["created_at"],
            read=row["read_at"] is not None))

    @classmethod
    def _stored_view(cls, row: Any) -> dict[str, Any]:
        return {**cls._client_view(row), "tenant": row["tenant_id"], "user": row["user_id"],
                "readAt": row["read_at"], "deliveredAt": row["delivered_at"]}


CREATED = "switchboard_notification_created"


def _notification(row: Mapping[str, Any]) -> Notification:
    return Notification(
        id=int(row["id"]), tenant_id=row["tenant_id"], user_id=row["user_id"],
        title=row["title"], message=row["message"], type=row["type"], link=row["link"],
        data=row["data"], created_at=row["created_at"], read_at=row["read_at"],
        delivered_at=row["delivered_at"])


class Notifications:
    """The ``notifications`` service (:class:`switchboard.core.NotificationsService`)."""

    def __init__(self, plugin: NotificationsPlugin) -> None:
        self._plugin = plugin

    async def create(self, tenant_id: str, user_id: str, *, title: str, message: str,
                     type: str = "info", link: str | None = None,
                     data: dict[str, Any] | None = None) -> Notification:
        _check_owner(tenant_id, user_id)
        content = structure_payload({"title": title, "message": message, "type": type,
                                     "link": link, "data": data}, NotificationContent)
        return _notification(await self._plugin.create(tenant_id, user_id, content))

    async def unread_count(self, tenant_id: str, user_id: str) -> int:
        _check_owner(tenant_id, user_id)
        return await self._plugin.unread_count(tenant_id, user_id)


def _check_owner(tenant_id: object, user_id: object) -> None:
    for field, value in (("tenant_id", tenant_id), ("user_id", user_id)):
        problem = (check_identifier(value) if isinstance(value, str)
                   else "must be a string")
        if problem is not None:
            raise ClientError(INVALID_PAYLOAD, f"{field}: {problem}", field=field)


# -- query strings ---------------------------------------------------------------


def _query_value(name: str, default: T, parse: Callable[[str], T]) -> T:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ClientError(INVALID_PAYLOAD, f"{name}: invalid value {raw!r}", field=name) from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(raw)


def _query_bool(name: str, default: bool) -> bool:
    return _query_value(name, default, _parse_bool)


def _parse_int(raw: str) -> int:
    """Digits only (``int()`` would take `` 5``, ``+5`` and ``5_0``)."""
    if not raw.isascii() or not raw.isdigit():
        raise ValueError(raw)
    return int(raw)


def _query_int(name: str, default: int | None) -> int | None:
    return _query_value(name, default, _parse_int)
