"""Handover changes racing on PostgreSQL, made deterministic without sleeping:
a second connection holds the request's row so that the server's transactions
have all read it (``pending``) before any of them writes, as concurrent
transactions under READ COMMITTED do; then it lets go. (On SQLite a
transaction takes the write lock first, so they cannot interleave: the
concurrent tests of ``test_handover.py`` and ``test_handover_http.py`` run on
both databases.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from handovers import (  # noqa: F401  (fixtures are found by name)
    agent,
    conversation,
    customer,
    database,
    handover_settings,
    history_texts,
    switchboard_config,
)
from switchboard.testing import Harness, TestClient

POSTGRESQL = pytest.mark.parametrize("database", ["postgresql"], indirect=True)


def _wait_for_lock_waiters(url: str, count: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for _ in range(1000):
                waiting = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar_one()
                conn.rollback()
                if waiting >= count:
                    return
                time.sleep(0.01)
    finally:
        engine.dispose()
    raise AssertionError(f"never saw {count} sessions waiting on a lock")


class RowHolder:
    """A transaction of a second connection holding handover rows ``FOR UPDATE``."""

    def __init__(self, switchboard: Harness) -> None:
        self.switchboard = switchboard
        self.engine = sa.create_engine(switchboard.config.store.url)
        self.conn = self.engine.connect()
        self.tx = self.conn.begin()

    async def _run(self, fn: Any, *args: Any) -> Any:
        with self.switchboard.app.store.around_call():  # the mock clock stands still
            return await trio.to_thread.run_sync(fn, *args)

    async def hold(self, request_id: int) -> None:
        await self._run(self.conn.execute, sa.text(
            f"SELECT 1 FROM handover_requests WHERE id = {int(request_id)} FOR UPDATE"))

    async def waiters(self, count: int) -> None:
        await self._run(_wait_for_lock_waiters, self.switchboard.config.store.url, count)

    async def release(self) -> None:
        await self._run(self.tx.commit)

    def close(self) -> None:
        if self.tx.is_active:
            self.tx.rollback()
        self.conn.close()
        self.engine.dispose()


async def answers(clients: dict[str, TestClient]) -> dict[str, dict[str, Any]]:
    """The answer frame of request id ``race`` of each client."""
    return {name: await client._wait(lambda f: f.get("id") == "race", 10)
            for name, client in clients.items()}


@POSTGRESQL
async def test_two_accepts_that_both_read_the_request_pending_one_wins(
        switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    await conversation(switchboard)
    carl = await customer(switchboard)
    request = await carl.request("handover:request", {"leadId": "c1"})
    holder = RowHolder(switchboard)
    try:
        await holder.hold(request["id"])
        await ana.emit("handover:accept", {"requestId": request["id"]}, id="race")
        await holder.waiters(1)
        await bob.emit("handover:accept", {"requestId": request["id"]}, id="race")
        await holder.waiters(2)
        await holder.release()
    finally:
        holder.close()
    frames = await answers({"ana": ana, "bob": bob})
    assert frames["ana"]["type"] != "error"  # first in line
    assert frames["ana"]["data"]["assignee"] == "ana"
    assert frames["bob"]["type"] == "error" and frames["bob"]["data"]["code"] == "conflict"
    assert frames["bob"]["data"]["request"]["assignee"] == "ana"
    stored = await switchboard.app.service("handover").get("t1", request["id"])
    assert (stored.assignee, stored.version) == ("ana", 2)
    assert [t for _, t in await history_texts(switchboard)].count(
        "ana joined the conversation.") == 1


@POSTGRESQL
async def test_a_cancel_and_an_accept_at_once_only_one_applies(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    await conversation(switchboard)
    carl = await customer(switchboard)
    request = await carl.request("handover:request", {"leadId": "c1"})
    holder = RowHolder(switchboard)
    try:
        await holder.hold(request["id"])
        await carl.emit("handover:cancel", {"requestId": request["id"]}, id="race")
        await holder.waiters(1)
        await ana.emit("handover:accept", {"requestId": request["id"]}, id="race")
        await holder.waiters(2)
        await holder.release()
    finally:
        holder.close()
    frames = await answers({"carl": carl, "ana": ana})
    assert frames["carl"]["data"]["status"] == "cancelled"
    assert frames["ana"]["data"]["code"] == "conflict"
    assert frames["ana"]["data"]["request"]["status"] == "cancelled"
    stored = await switchboard.app.service("handover").get("t1", request["id"])
    assert (stored.status, stored.assignee) == ("cancelled", None)
