"""A node cut off from Redis for longer than ``broker.node_ttl``: the others
take it for gone (its counts dropped, its users offline there); at its first
heartbeat back it counts its connections again and its users and agents are
announced online again."""

from __future__ import annotations

from functools import partial

import coredis
import trio
from desk import call, new_ticket
from switchboard.core import Announcement
from switchboard.testing import Harness

from tests.redis_nodes import (
    REDIS_URL,
    TIMEOUT,
    cluster_config,
    eventually,
    next_about,
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
)
from tests.test_redis_desk import DESK, agent, listed_as

GRACE = {"plugins": {"presence": {"grace_period": 0.3, "update_interval": 0.05}}}


async def taken_for_gone(prefix: str, node: Harness, seen_by: Harness) -> None:
    """Make the cluster take ``node`` for gone, as if its heartbeats had stopped
    reaching Redis: its entry among the live nodes is made expired until a
    live node removes it (``node``'s own next heartbeat may come first and
    renew it: then again)."""
    gone: list[Announcement] = []
    seen_by.app.on_announcement("switchboard:node_gone", gone.append)
    redis: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
    async with redis:
        with trio.fail_after(TIMEOUT):
            while not any(a.data["node"] == node.app.node_id for a in gone):
                await redis.zadd(f"{prefix}:alive", {node.app.node_id: 0})
                await trio.sleep(0.25)


async def test_a_node_taken_for_gone_counts_its_users_again_and_they_are_online(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=GRACE), nursery, 2)
        watcher = await b.connect("wb", "t1", role="agent")
        alice = await a.connect("alice", "t1", role="agent")
        await next_about(watcher, "user:online", "alice")
        await taken_for_gone(redis_prefix, a, b)
        # her device on node a counts again, and the others hear she is online
        await next_about(watcher, "user:online", "alice")

        async def counted() -> bool:
            return await b.app.cluster_count("presence:t1", "alice") == 1

        await eventually(counted)
        listed = {u["userId"] for u in (await watcher.request("presence:list"))["users"]}
        assert "alice" in listed
        await alice.close()
        await next_about(watcher, "user:offline", "alice")  # and offline when she goes
        for node in (a, b):
            await node.stop()


async def test_a_node_taken_for_gone_has_its_agents_online_again_for_the_others(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=DESK), nursery, 2)
        watcher = await agent(b, "wb")
        await agent(a, "ana")
        await next_about(watcher, "agent:online", "ana")
        await taken_for_gone(redis_prefix, a, b)
        # the others hear she is online, count her, and give her tickets
        assert (await next_about(watcher, "agent:online", "ana"))["status"] == "online"

        async def counted() -> bool:
            return await b.app.cluster_count("desk:acme", "ana") == 1

        await eventually(counted)
        await eventually(lambda: listed_as(b, "ana", "online"))
        ticket = await new_ticket(b, queueId="support")
        await eventually(partial(assigned_to, b, ticket["id"], "ana"))
        for node in (a, b):
            await node.stop()


async def assigned_to(node: Harness, ticket: str, user: str) -> bool:
    stored = await call(node, "GET", f"/api/v1/tickets/{ticket}?tenant=acme")
    return bool(stored["assigneeId"] == user)
