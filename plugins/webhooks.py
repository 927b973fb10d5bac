"""Webhooks out: what happens here, POSTed to your backend, signed, durable.

Configured events (``session.opened``, ``session.closed`` and any published
event: ``user:online``, ``message:new``, a plugin's outgoing events, what
``POST /api/v1/emit`` publishes...) are written to an outbox table in the
store, then POSTed to each endpoint whose patterns match, signed with an
HMAC of the endpoint's secret. A delivery that fails (the backend down,
slow, answering other than 2xx) is tried again with a back-off, in order per
key (a tenant's room, or a user's sessions), while the other keys go on;
after ``max_attempts`` it is a dead letter, kept and counted
(``GET /api/v1/webhooks``), and the key moves on. A backend outage, or a
restart of this server, loses nothing that reached the outbox.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import sqlalchemy as sa
import trio
from quart import Blueprint, g
from switchboard.core import (
    App,
    Publication,
    Session,
    StoreUnavailable,
    documented,
    error_response,
    hookimpl,
    require_api_key,
    trio_time_of,
    wall_time,
)
from switchboard.core.args import json_default
from switchboard.plugins.migrations import directory as migrations_directory

log = logging.getLogger("switchboard.webhooks")
#: Deliveries looked at per pass of an endpoint's sender.
PASS_SIZE = 200


@attrs.frozen
class Endpoint:
    #: Where deliveries are POSTed.
    url: str
    #: Key of the HMAC-SHA256 signature (``X-Switchboard-Signature``).
    secret: str
    #: Glob patterns of the event names sent there.
    events: list[str] = attrs.Factory(lambda: ["*"])
    #: A name for stats and logs (default: the URL).
    name: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must be an http(s) URL")
        if len(self.secret) < 16:
            raise ValueError("secret: must be at least 16 characters")

    @property
    def label(self) -> str:
        return self.name or self.url


@attrs.frozen
class WebhookSettings:
    endpoints: list[Endpoint] = attrs.Factory(list)
    #: Seconds one delivery may take.
    timeout: float = 5.0
    #: Tries before a delivery becomes a dead letter.
    max_attempts: int = 12
    #: Back-off after a failed try: first and longest wait, in seconds.
    retry_first: float = 1.0
    retry_longest: float = 300.0

    def __attrs_post_init__(self) -> None:
        if self.timeout <= 0 or self.max_attempts < 1 or not 0 < self.retry_first \
                <= self.retry_longest:
            raise ValueError("timeout must be positive, max_attempts at least 1, and "
                             "0 < retry_first <= retry_longest")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=HEX`` of HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhooksPlugin:
    app: App
    settings: WebhookSettings

    def __init__(self) -> None:
        self.table: sa.Table | None = None
        self._queued: list[dict[str, Any]] = []
        self._queued_added = trio.Event()
        self._due: dict[str, trio.Event] = {}
        self._client: httpx.AsyncClient | None = None
        #: The HTTP transport of the senders' client (None: httpx's own; tests
        #: answer in-process).
        self.transport: httpx.AsyncBaseTransport | None = None
        self.delivered = 0

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return WebhookSettings

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return migrations_directory("webhooks")

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.table = sa.Table(
            "webhooks_outbox", metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                      primary_key=True, autoincrement=True),
            sa.Column("endpoint", sa.String(500), nullable=False),
            #: Deliveries of one key go out in order.
            sa.Column("key", sa.String(500), nullable=False),
            sa.Column("event", sa.String(200), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False, default=0),
            #: Wall-clock time of the next try.
            sa.Column("next_at", sa.Float, nullable=False),
            sa.Column("dead", sa.Boolean, nullable=False, default=False),
            sa.Column("last_error", sa.String(500), nullable=True),
            sa.Index("webhooks_outbox_pending", "endpoint", "dead", "id"),
            sqlite_autoincrement=True,
        )

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("webhooks", __name__)

        @bp.get("/api/v1/webhooks")
        @documented(
            "The outgoing webhook endpoints: queued, dead, last error",
            responses={200: "`{endpoints}`", 403: "needs a key for every tenant (`*`)"},
        )
        @require_api_key
        async def stats() -> Any:
            if g.api_key.tenant != "*":
                return error_response(403, "forbidden", "needs an API key for every tenant")
            return {"endpoints": await self.stats()}

        @bp.post("/api/v1/webhooks/dead/retry")
        @documented(
            "Queue every dead delivery again",
            responses={200: "`{retried}`", 403: "needs a key for every tenant (`*`)"},
        )
        @require_api_key
        async def retry_dead() -> Any:
            if g.api_key.tenant != "*":
                return error_response(403, "forbidden", "needs an API key for every tenant")
            return {"retried": await self.retry_dead()}

        return bp

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        if not self.settings.endpoints:
            return
        self._due = {e.label: trio.Event() for e in self.settings.endpoints}
        patterns = [p for e in self.settings.endpoints for p in e.events]
        app.watch_publications(patterns, self._published)

    @hookimpl
    def switchboard_background_tasks(self) -> list[Any]:
        if not self.settings.endpoints:
            return []
        return [self._write_queued, self._send_every_endpoint]

    async def _send_every_endpoint(self) -> None:
        """The senders, one per endpoint, sharing one HTTP client that is closed
        after they stop (never under a sender still running)."""
        async with httpx.AsyncClient(timeout=self.settings.timeout,
                                     transport=self.transport) as client:
            self._client = client
            try:
                async with trio.open_nursery() as nursery:
                    for endpoint in self.settings.endpoints:
                        nursery.start_soon(self._send_all, endpoint)
            finally:
                self._client = None

    @hookimpl
    async def switchboard_shutdown(self) -> None:
        if self._queued:
            with trio.move_on_after(5):
                await self._write(self._take_queued())

    # -- what happens ------------------------------------------------------

    @hookimpl
    def switchboard_session_opened(self, session: Session) -> None:
        self._session_event("session.opened", session, None)

    @hookimpl
    def switchboard_session_closed(self, session: Session, reason: str) -> None:
        self._session_event("session.closed", session, reason)

    def _session_event(self, event: str, session: Session, reason: str | None) -> None:
        if not self.settings.endpoints:
            return
        data: dict[str, Any] = {"sessionId": session.id, "userId": session.user_id,
                                "role": session.role, "protocol": session.transport.protocol}
        if reason is not None:
            data["reason"] = reason
        self._queue(event, session.tenant_id, f"user:{session.user_id}", data)

    def _published(self, publication: Publication) -> None:
        self._queue(publication.event, publication.tenant, publication.room, publication.data,
                    room=publication.room)

    def _queue(self, event: str, tenant: str, key: str, data: Any, *,
               room: str | None = None) -> None:
        body: dict[str, Any] = {"event": event, "tenant": tenant, "data": data,
                                "createdAt": time.time()}
        if room is not None:
            body["room"] = room
        try:
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False, default=json_default)
        except (TypeError, ValueError) as exc:  # (a plugin's bytes or NaN: not JSON)
            log.warning("webhooks: %s not delivered: %s", event, exc)
            return
        for endpoint in self.settings.endpoints:
            if any(_match(event, p) for p in endpoint.events):
                self._queued.append({"endpoint": endpoint.label, "key": f"{tenant}/{key}",
                                     "event": event, "body": text, "attempts": 0,
                                     "next_at": 0.0, "dead": False})
        self._queued_added.set()

    # -- the outbox --------------------------------------------------------

    def _take_queued(self) -> list[dict[str, Any]]:
        rows, self._queued = self._queued, []
        return rows

    async def _write_queued(self) -> None:
        """Write queued deliveries to the outbox in batches (kept and tried again
        while the store is unavailable), then wake the endpoints' senders."""
        delay = 1.0
        while True:
            while not self._queued:
                await self._queued_added.wait()
                self._queued_added = trio.Event()
            rows = self._take_queued()
            try:
                await self._write(rows)
            except StoreUnavailable as exc:
                self._queued[:0] = rows
                log.warning("webhooks: %d deliveries not written to the outbox (%s); "
                            "trying again in %g s", len(rows), exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            for label in {row["endpoint"] for row in rows}:
                self._due[label].set()

    async def _write(self, rows: Sequence[dict[str, Any]]) -> None:
        assert self.table is not None
        if rows:
            await self.app.store.execute_many(self.table.insert(), rows)

    async def _send_all(self, endpoint: Endpoint) -> None:
        """One endpoint's sender: passes over its pending deliveries in order
        (each key's in order), then waits until one is due or new ones come."""
        assert self.table is not None
        t = self.table
        started = True
        while True:
            rows = await self.app.store.fetch_all(
                sa.select(t).where(t.c.endpoint == endpoint.label, t.c.dead.is_(False))
                .order_by(t.c.id).limit(PASS_SIZE))
            blocked: set[str] = set()
            next_due = float("inf")
            # the first pass after a start tries everything pending at once: what
            # waited for a backend through a restart need not wait out its back-off
            now = float("inf") if started else wall_time()
            started = False
            for row in rows:
                if row["key"] in blocked:
                    continue
                if row["next_at"] > now:
                    blocked.add(row["key"])
                    next_due = min(next_due, row["next_at"])
                    continue
                delivered = await self._deliver(endpoint, row)
                if not delivered:
                    retry = await self._failed(endpoint, row, delivered.error)
                    if retry is not None:  # (a dead letter lets its key move on)
                        blocked.add(row["key"])
                        next_due = min(next_due, retry)
            if len(rows) == PASS_SIZE and len(blocked) < PASS_SIZE:
                continue  # more may be due behind this pass
            due = self._due[endpoint.label]
            with trio.move_on_at(trio_time_of(next_due)):
                await due.wait()
            self._due[endpoint.label] = trio.Event()

    async def _deliver(self, endpoint: Endpoint, row: Any) -> _Outcome:
        assert self._client is not None and self.table is not None
        body = row["body"].encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json",
                   "X-Switchboard-Event": row["event"],
                   "X-Switchboard-Delivery": str(row["id"]),
                   "X-Switchboard-Timestamp": timestamp,
                   "X-Switchboard-Signature": signature(endpoint.secret, timestamp, body)}
        try:
            with trio.fail_after(self.settings.timeout):
                response = await self._client.post(endpoint.url, content=body,
                                                   headers=headers)
        except trio.TooSlowError:
            return _Outcome(f"no answer within {self.settings.timeout} s")
        except httpx.HTTPError as exc:
            return _Outcome(f"{type(exc).__name__}: {exc}"[:300])
        if not 200 <= response.status_code < 300:
            return _Outcome(f"HTTP {response.status_code}")
        t = self.table
        await self.app.store.execute(t.delete().where(t.c.id == row["id"]))
        self.delivered += 1
        return _Outcome(None)

    async def _failed(self, endpoint: Endpoint, row: Any, error: str | None) -> float | None:
        """Record a failed try; the time of the next one, or None for a dead letter."""
        assert self.table is not None
        t = self.table
        attempts = int(row["attempts"]) + 1
        dead = attempts >= self.settings.max_attempts
        wait = min(self.settings.retry_first * 2.0 ** (attempts - 1), self.settings.retry_longest)
        next_at = wall_time() + wait
        await self.app.store.execute(
            t.update().where(t.c.id == row["id"])
            .values(attempts=attempts, next_at=next_at, dead=dead, last_error=error))
        if dead:
            log.warning("webhook %s to %s is a dead letter after %d tries: %s", row["id"],
                        endpoint.label, attempts, error)
            return None
        log.info("webhook %s to %s failed (%s); try %d in %g s", row["id"], endpoint.label,
                 error, attempts + 1, wait)
        return next_at

    # -- stats -------------------------------------------------------------

    async def stats(self) -> list[dict[str, Any]]:
        assert self.table is not None
        t = self.table
        rows = await self.app.store.fetch_all(
            sa.select(t.c.endpoint, t.c.dead, sa.func.count().label("n"))
            .group_by(t.c.endpoint, t.c.dead))
        counts = {(r["endpoint"], bool(r["dead"])): int(r["n"]) for r in rows}
        out = []
        for endpoint in self.settings.endpoints:
            last = await self.app.store.fetch_one(
                sa.select(t.c.last_error).where(t.c.endpoint == endpoint.label,
                                                t.c.last_error.is_not(None))
                .order_by(t.c.id.desc()).limit(1))
            out.append({"endpoint": endpoint.label,
                        "pending": counts.get((endpoint.label, False), 0),
                        "dead": counts.get((endpoint.label, True), 0),
                        "lastError": last["last_error"] if last else None})
        return out

    async def retry_dead(self) -> int:
        """Give every dead letter its tries again (now); how many."""
        assert self.table is not None
        t = self.table
        count = await self.app.store.execute(
            t.update().where(t.c.dead.is_(True)).values(dead=False, attempts=0, next_at=0.0))
        for due in self._due.values():
            due.set()
        return count


@attrs.frozen
class _Outcome:
    error: str | None

    def __bool__(self) -> bool:
        return self.error is None


def _match(event: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(event, pattern)
