"""Presence over several nodes on the real Redis: a user is online while any
device on any node is; user:online and user:offline go out once for the
cluster; statuses and lists cover every node."""

from __future__ import annotations

import time

import trio
from switchboard.testing import Harness, TestClient

from tests.redis_nodes import (
    TIMEOUT,
    OwnRedis,
    about,
    cluster_config,
    eventually,
    next_about,
    own_redis_fixture,  # noqa: F401  (fixture)
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
)

GRACE = {"plugins": {"presence": {"grace_period": 0.3, "update_interval": 0.05}}}


async def test_online_while_any_device_on_any_node_is(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=GRACE), nursery, 2)
        watcher_a = await a.connect("wa", "t1", role="agent")
        watcher_b = await b.connect("wb", "t1", role="agent")
        phone = await a.connect("alice", "t1", role="agent")
        for watcher in (watcher_a, watcher_b):
            assert (await next_about(watcher, "user:online", "alice"))["userId"] == "alice"
        laptop = await b.connect("alice", "t1", role="agent")
        # listed on both nodes with her two devices
        for watcher in (watcher_a, watcher_b):
            listed = {u["userId"]: u for u in (await watcher.request("presence:list"))["users"]}
            assert listed["alice"]["devices"] == 2
        await phone.close()
        # still online through the laptop on the other node: the phone's grace
        # period ends on node a without an offline
        await eventually(lambda: _grace_over(a, "alice"))
        await laptop.request("presence:update", {"status": "busy"})
        await eventually(lambda: _listed_status(watcher_a, "alice", "busy"))
        await laptop.close()
        for watcher in (watcher_a, watcher_b):
            offline = await next_about(watcher, "user:offline", "alice")
            assert offline["lastSeen"] > 0
        # once each, for the whole cluster
        await a.app.publish("t1", "tenant:t1", "marker", None)
        for watcher in (watcher_a, watcher_b):
            await watcher.expect("marker", timeout=TIMEOUT)
            assert about(watcher, "user:online", "alice") == []
            assert about(watcher, "user:offline", "alice") == []
        presence = a.app.service("presence")
        info = await presence.presence_of("t1", "alice")
        assert info.status == "offline" and info.devices == 0
        listed = (await watcher_b.request("presence:list"))["users"]
        assert "alice" not in {u["userId"] for u in listed}
        for node in (a, b):
            await node.stop()


async def test_a_device_moving_to_another_node_in_its_grace_does_not_flap(
        redis_prefix: str) -> None:
    # a grace period long enough for the reconnect on a loaded machine
    slow = {"plugins": {"presence": {"grace_period": 3.0}}}
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=slow), nursery, 2)
        watcher = await b.connect("w", "t1", role="agent")
        phone = await a.connect("alice", "t1", role="customer")
        await next_about(watcher, "user:online", "alice")
        await phone.close()
        again = await b.connect("alice", "t1", role="customer")  # reconnects elsewhere
        await again.request("presence:heartbeat")  # (her connect's hooks have run)
        await eventually(lambda: _grace_over(a, "alice"), timeout=TIMEOUT + 5)
        info = await b.app.service("presence").presence_of("t1", "alice")
        assert info.status == "online"
        await b.app.publish("t1", "tenant:t1", "marker", None)
        await watcher.expect("marker", timeout=TIMEOUT)
        assert about(watcher, "user:offline", "alice") == []
        assert about(watcher, "user:online", "alice") == []
        await again.close()
        await next_about(watcher, "user:offline", "alice")
        for node in (a, b):
            await node.stop()


async def test_presence_of_a_user_on_another_node_and_tenants_apart(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=GRACE), nursery, 2)
        alice = await b.connect("alice", "t1", role="agent")
        await alice.request("presence:heartbeat")  # (her connect's hooks have run)
        other = await a.connect("mallory", "t2", role="agent")
        await other.request("presence:heartbeat")
        info = await a.app.service("presence").presence_of("t1", "alice")
        assert (info.status, info.devices) == ("online", 1)
        assert await a.app.service("presence").presence_of("t2", "alice") is None
        listed = (await other.request("presence:list"))["users"]
        assert [u["userId"] for u in listed] == ["mallory"]
        async with a.http() as http:
            response = await http.get("/api/v1/presence/t1/alice", headers=a.api_headers())
            assert (await response.get_json())["devices"] == 1
            response = await http.get("/api/v1/presence/t1", headers=a.api_headers())
            assert [u["userId"] for u in (await response.get_json())["users"]] == ["alice"]
        for node in (a, b):
            await node.stop()


async def _grace_over(node: Harness, user: str) -> bool:
    """The node has forgotten the user's devices (their grace period ended)."""
    return ("t1", user) not in node.app.service("presence")._users


async def _listed_status(client: TestClient, user: str, status: str) -> bool:
    listed = {u["userId"]: u for u in (await client.request("presence:list"))["users"]}
    return user in listed and listed[user]["status"] == status



async def test_a_user_said_offline_by_a_node_that_raced_her_reconnection_is_online_again(
        redis_prefix: str) -> None:
    """Node a's grace period for alice's last device ends with the cluster's
    count at 0 just before her new device on node b counts: b announced her
    online, then a's user:offline comes. Node b, where she is connected, says
    she is online again, so every client's last word on her is user:online."""
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=GRACE), nursery, 2)
        watcher_a = await a.connect("wa", "t1", role="agent")
        watcher_b = await b.connect("wb", "t1", role="agent")
        await b.connect("alice", "t1", role="agent")
        for watcher in (watcher_a, watcher_b):
            await next_about(watcher, "user:online", "alice")
        # what node a does when its grace for her ends with the count at 0
        await a.app.service("presence")._announce_offline(("t1", "alice"), time.time(), True)
        for watcher in (watcher_a, watcher_b):
            assert (await next_about(watcher, "user:offline", "alice"))["userId"] == "alice"
            assert (await next_about(watcher, "user:online", "alice"))["userId"] == "alice"
        for node in (a, b):
            await eventually(lambda node=node: _online(node, "alice"))
        for node in (a, b):
            await node.stop()


async def _online(node: Harness, user: str) -> bool:
    return (await node.app.service("presence").presence_of("t1", user)).status == "online"


async def test_a_customers_presence_reaches_the_agents_of_every_node_and_no_customer(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=GRACE), nursery, 2)
        agent_a = await a.connect("wa", "t1", role="agent")
        agent_b = await b.connect("wb", "t1", role="agent")
        bob = await b.connect("bob", "t1", role="customer")
        await next_about(agent_a, "user:online", "bob")
        carol = await a.connect("carol", "t1", role="customer")
        for agent in (agent_a, agent_b):
            assert (await next_about(agent, "user:online", "carol"))["role"] == "customer"
        # bob's node lists the agents of both nodes, and bob; never carol
        listed = (await bob.request("presence:list"))["users"]
        assert sorted(u["userId"] for u in listed) == ["bob", "wa", "wb"]
        await carol.close()
        for agent in (agent_a, agent_b):
            await next_about(agent, "user:offline", "carol")
        await a.app.publish("t1", "tenant:t1", "marker", None)
        await bob.expect("marker", timeout=TIMEOUT)
        for event in ("user:online", "user:offline"):
            assert about(bob, event, "carol") == []
        for node in (a, b):
            await node.stop()


async def test_an_agent_who_came_while_redis_was_down_is_listed_once_it_is_back(
        own_redis: OwnRedis) -> None:
    await own_redis.wait_answering()
    config = cluster_config("sbagents", url=own_redis.url, overrides=GRACE)
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(config, nursery, 2)
        customer = await b.connect("bob", "t1", role="customer")
        own_redis.kill()
        await a.connect("ann", "t1", role="agent")  # counted on node a alone
        own_redis.start()  # (empty, as after a crash)
        await own_redis.wait_answering()

        async def ann_listed() -> bool:
            listed = (await customer.request("presence:list"))["users"]
            return sorted(u["userId"] for u in listed) == ["ann", "bob"]

        await eventually(ann_listed)
        for node in (a, b):
            await node.stop()
