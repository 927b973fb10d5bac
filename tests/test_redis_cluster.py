"""Several nodes on the real Redis: every publication reaches every member on
every node once and in order, tenants stay apart, announcements reach every
node, stats cover the cluster; Redis going away and coming back."""

from __future__ import annotations

import itertools
from typing import Any

import coredis
import httpx
import pytest
import trio
from switchboard.core import Announcement, BrokerUnavailable
from switchboard.core.redis_encoding import stream_id
from switchboard.testing import TEST_API_KEY, Harness, TestClient

from tests.redis_nodes import (
    REDIS_URL,
    TIMEOUT,
    OwnRedis,
    cluster_config,
    eventually,
    own_redis_fixture,  # noqa: F401  (fixture)
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
)

ROOM = "lobby:1"


async def stream_offset(url: str, broker: Any) -> str:
    """The recovery offset of the newest publication in the cluster's stream."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url)
    async with client:
        epoch = await client.get(broker.epoch_key)
        newest = await client.xrevrange(broker.stream_key, count=1)
    assert epoch is not None and newest
    return f"{epoch.decode()}:{newest[0].identifier.decode()}"


async def members(nodes: list[Harness], per_node: int, *, tenant: str = "t1",
                  room: str = ROOM) -> list[TestClient]:
    clients = []
    for n, node in enumerate(nodes):
        for i in range(per_node):
            client = await node.connect(f"user{n}-{i}", tenant, role="customer")
            assert await client.request("room:join", {"room": room}) == {"room": room}
            clients.append(client)
    return clients


async def values_of(client: TestClient, event: str, count: int) -> list[Any]:
    return [await client.expect(event, timeout=TIMEOUT) for _ in range(count)]


async def test_three_nodes_every_event_once_in_order(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix), nursery, 3)
        clients = await members(nodes, 2)
        # published one after the other from each node in turn, and through the
        # HTTP API of another: every member sees 0..29 once, in that order
        for i in range(30):
            node = nodes[i % 3]
            if i % 5 == 4:
                async with node.http() as http:
                    response = await http.post("/api/v1/emit", json={
                        "tenant": "t1", "room": ROOM, "event": "tick", "data": i},
                        headers=node.api_headers())
                assert response.status_code == 202
            else:
                await node.app.publish("t1", ROOM, "tick", i)
        for client in clients:
            assert await values_of(client, "tick", 30) == list(range(30))
        # published concurrently from the three nodes: every member sees the same
        # order, each node's publications in the order it sent them
        async with trio.open_nursery() as publishers:
            for n, node in enumerate(nodes):
                async def send(node: Harness = node, n: int = n) -> None:
                    for i in range(20):
                        await node.app.publish("t1", ROOM, "burst", [n, i])
                publishers.start_soon(send)
        orders = [await values_of(client, "burst", 60) for client in clients]
        assert all(order == orders[0] for order in orders)
        for n in range(3):
            assert [i for m, i in orders[0] if m == n] == list(range(20))
        # nothing twice: a marker after everything comes next
        await nodes[0].app.publish("t1", ROOM, "marker", None)
        for client in clients:
            await client.expect("marker", timeout=TIMEOUT)
            assert not client.received("tick")
            assert not client.received("burst")
        for node in nodes:
            await node.stop()


async def test_the_sender_is_left_out_and_tenants_stay_apart(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix), nursery, 2)
        ours = await members(nodes, 1)
        theirs = await members(nodes, 1, tenant="t2")  # the same room name in t2
        sender = ours[0]
        session = next(iter(nodes[0].app.user_sessions("t1", "user0-0")))
        await nodes[0].app.publish("t1", ROOM, "said", "hi", exclude=session)
        assert await ours[1].expect("said", timeout=TIMEOUT) == "hi"
        await nodes[1].app.publish("t1", ROOM, "marker", None)
        for client in [*ours, *theirs]:
            if client in ours:
                await client.expect("marker", timeout=TIMEOUT)
        await nodes[1].app.publish("t2", ROOM, "marker", None)
        for client in theirs:
            await client.expect("marker", timeout=TIMEOUT)
        assert not sender.received("said")
        assert not any(client.received("said") for client in theirs)
        assert not any(len(client.received("marker")) > 1 for client in [*ours, *theirs])
        for node in nodes:
            await node.stop()


async def test_announcements_reach_every_node_once(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix), nursery, 3)
        heard: list[list[Announcement]] = [[] for _ in nodes]
        done = trio.Event()
        for n, node in enumerate(nodes):
            def handler(announcement: Announcement, n: int = n) -> None:
                heard[n].append(announcement)
                if all(len(h) == 3 for h in heard):
                    done.set()
            node.app.on_announcement("test:cache", handler)
        for n, node in enumerate(nodes):
            await node.app.announce("test:cache", {"drop": n})
        with trio.fail_after(TIMEOUT):
            await done.wait()
        for n in range(3):
            assert [a.data for a in heard[n]] == [{"drop": 0}, {"drop": 1}, {"drop": 2}]
            assert [a.node for a in heard[n]] == [node.app.node_id for node in nodes]
        for node in nodes:
            await node.stop()


async def test_stats_cover_the_cluster(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix), nursery, 3)
        await members(nodes[:2], 2)
        await members(nodes[2:], 1, tenant="t2")
        ids = {node.app.node_id for node in nodes}

        async def stats(key_headers: dict[str, str]) -> dict[str, Any]:
            async with nodes[0].http() as http:
                response = await http.get("/api/v1/stats", headers=key_headers)
            assert response.status_code == 200
            data: dict[str, Any] = await response.get_json()
            return data

        with trio.fail_after(TIMEOUT):  # every node's heartbeat has its sessions
            while True:
                data = await stats(nodes[0].api_headers())
                if set(data["nodes"]) == ids and data["connections"] == 5:
                    break
                await trio.sleep(0.05)
        assert data["node"] == nodes[0].app.node_id
        assert data["tenants"]["t1"]["connections"] == 4
        assert data["tenants"]["t2"]["connections"] == 1
        assert data["users_online"] == 5
        assert [data["nodes"][n.app.node_id]["connections"] for n in nodes] == [2, 2, 1]
        for node in nodes:
            await node.stop()


async def test_redis_down_local_traffic_goes_on_then_it_resumes(own_redis: OwnRedis) -> None:
    await own_redis.wait_answering()
    config = cluster_config("sbdown", url=own_redis.url)
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(config, nursery, 2, listen=True)
        clients = await members(nodes, 1)
        await nodes[0].app.publish("t1", ROOM, "tick", 0)
        for client in clients:
            assert await client.expect("tick", timeout=TIMEOUT) == 0
        # the recovery offset of tick 0, as a Socket.IO client would hold it
        broker = nodes[0].app.hub.broker
        recovery = broker.recovery(30, 1000)
        offset = await stream_offset(own_redis.url, broker)
        await nodes[1].app.publish("t1", ROOM, "tick", 0.5)
        missed = await recovery.missed(offset, {ROOM}, "t1", "someone")
        assert [p.data for _, p in missed] == [0.5]
        own_redis.kill()
        # A publication is either refused with a clear error or, accepted before
        # the node noticed, delivered once Redis is back: never silently dropped.
        accepted: list[Any] = []
        with trio.fail_after(TIMEOUT):
            for i in itertools.count():
                try:
                    await nodes[0].app.publish("t1", ROOM, "tick", f"during-{i}")
                except BrokerUnavailable:
                    break
                accepted.append(f"during-{i}")
                await trio.sleep(0.01)
        async with httpx.AsyncClient(timeout=60) as http:
            ready = await http.get(nodes[0].http_url("/ready"))
            assert ready.status_code == 503
            assert ready.json()["code"] == "degraded"
            with trio.fail_after(TIMEOUT):
                while True:
                    emitted = await http.post(nodes[1].http_url("/api/v1/emit"), json={
                        "tenant": "t1", "room": ROOM, "event": "tick", "data": "refused"},
                        headers={"Authorization": f"Bearer {TEST_API_KEY}"})
                    if emitted.status_code == 503:
                        break
                    assert emitted.status_code == 202  # (node 1 had not noticed yet)
                    accepted.append("refused")  # accepted after all: delivered later
                    await trio.sleep(0.01)
            assert emitted.json()["code"] == "broker_unavailable"
        # the node still serves its connections: a request is answered, a new client joins
        assert await clients[0].request("room:join", {"room": "lobby:2"}) == {"room": "lobby:2"}
        late = await nodes[1].connect("late", "t1", role="customer")
        assert await late.request("room:join", {"room": ROOM}) == {"room": ROOM}
        # Redis comes back (empty, as after a crash): the nodes reconnect and resume
        own_redis.start()
        await own_redis.wait_answering()
        async with httpx.AsyncClient(timeout=60) as http:
            with trio.fail_after(TIMEOUT):
                while (await http.get(  # noqa: ASYNC110 (a real process's state)
                        nodes[0].http_url("/ready"))).status_code != 200:
                    await trio.sleep(0.05)
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    await nodes[1].app.publish("t1", ROOM, "tick", 1)
                    break
                except BrokerUnavailable:  # (the node has not seen Redis back yet)
                    await trio.sleep(0.05)
        for client in clients:
            assert await client.expect("tick", timeout=TIMEOUT) == 0.5
        for client in [*clients, late]:
            got = [await client.expect("tick", timeout=TIMEOUT)
                   for _ in range(len(accepted) + 1)]
            assert sorted(got[:-1], key=str) == sorted(accepted, key=str)
            assert [g for g in got if str(g).startswith("during")] == [
                a for a in accepted if a.startswith("during")]  # node 0's, in its order
            assert got[-1] == 1
        await nodes[0].app.publish("t1", ROOM, "marker", None)
        for client in [*clients, late]:
            await client.expect("marker", timeout=TIMEOUT)
            assert not client.received("tick")
        # Redis came back empty: the old offset's history is gone, and that is said
        # (a client must re-sync) instead of replaying nothing as if nothing was missed
        assert await recovery.missed(offset, {ROOM}, "t1", "someone") is None
        for node in nodes:
            await node.stop()


async def test_counts_are_whole_again_once_redis_is_back(own_redis: OwnRedis) -> None:
    await own_redis.wait_answering()
    config = cluster_config("sbcounts", url=own_redis.url)
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(config, nursery, 2)
        assert await a.app.cluster_count("g", "kept", +1) == 1
        assert await b.app.cluster_count("g", "kept", +1) == 2
        assert await a.app.cluster_count("g", "gone", +1) == 1
        own_redis.kill()
        # counted on the node while Redis is unreachable
        with pytest.raises(BrokerUnavailable):
            await a.app.cluster_count("g", "gone", -1)
        with pytest.raises(BrokerUnavailable):
            await a.app.cluster_count("g", "new", +1)
        own_redis.start()  # (empty, as after a crash)
        await own_redis.wait_answering()
        brokers = [node.app.hub.broker for node in (a, b)]

        async def restored() -> bool:
            return not any(broker._counts_lost for broker in brokers) and \
                await a.app.cluster_counts("g") == {"kept": 2, "new": 1}

        await eventually(restored)
        # restored once more (as after another outage): set again, not added
        brokers[0]._counts_lost = True
        await eventually(lambda: _not_lost(brokers[0]))
        assert await b.app.cluster_counts("g") == {"kept": 2, "new": 1}
        assert await a.app.cluster_count("g", "new", -1) == 0
        for node in (a, b):
            await node.stop()


async def _not_lost(broker: Any) -> bool:
    return not broker._counts_lost


async def test_skip_room_holds_on_every_node(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix), nursery, 2)
        clients = await members(nodes, 2)  # user0-0, user0-1 on node 0; user1-* on node 1
        for client in (clients[1], clients[3]):  # one on each node is also in lobby:2
            assert await client.request("room:join", {"room": "lobby:2"}) == {"room": "lobby:2"}
        await nodes[0].app.publish("t1", ROOM, "news", 1, skip_room="lobby:2")
        await nodes[1].app.publish("t1", ROOM, "marker", None)
        for client in clients:
            await client.expect("marker", timeout=TIMEOUT)
        assert [len(c.received("news")) for c in clients] == [1, 0, 1, 0]
        for node in nodes:
            await node.stop()


async def test_a_node_started_while_redis_is_down_serves_degraded_then_joins(
        own_redis: OwnRedis) -> None:
    own_redis.kill()  # (the port stays the test's: nothing answers on it yet)
    config = cluster_config("sblate", url=own_redis.url)
    async with trio.open_nursery() as nursery:
        node = (await start_nodes(config, nursery, 1, listen=True))[0]
        client = (await members([node], 1))[0]
        with pytest.raises(BrokerUnavailable):
            await node.app.publish("t1", ROOM, "tick", 0)
        async with httpx.AsyncClient(timeout=60) as http:
            assert (await http.get(node.http_url("/ready"))).status_code == 503
        own_redis.start()
        await own_redis.wait_answering()

        async def published() -> bool:
            try:
                await node.app.publish("t1", ROOM, "tick", 1)
            except BrokerUnavailable:
                return False
            return True

        await eventually(published)
        assert await client.expect("tick", timeout=TIMEOUT) == 1
        await node.stop()


async def test_recovery_replays_what_the_reader_delivered_and_leaves_the_rest_live(
        redis_prefix: str) -> None:
    """A recovering session is attached right after its replay is read: what
    this node's reader handed to the hub by then is in the replay, what it
    has not handed over yet is not (it reaches the session live), so an event
    published while the replay is read is neither lost nor sent twice."""
    config = cluster_config(redis_prefix, overrides={"socketio": {"recovery_window": 30}})
    async with trio.open_nursery() as nursery:
        (node,) = await start_nodes(config, nursery, 1)
        broker = node.app.hub.broker
        for i in range(3):
            await node.app.publish("t1", ROOM, "tick", i)
        client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
        async with client:
            ids = [e.identifier.decode()
                   for e in await client.xrange(broker.stream_key, "-", "+")]
            epoch = (await client.get(broker.epoch_key) or b"").decode()
        assert len(ids) == 3

        async def delivered_all() -> bool:
            return broker.delivered_id == stream_id(ids[2])
        await eventually(delivered_all)
        recovery = node.app.hub.recovery
        missed = await recovery.missed(f"{epoch}:{ids[0]}", {ROOM}, "t1", "gone")
        assert [(o, p.data) for o, p in missed] == [(f"{epoch}:{ids[1]}", 1),
                                                     (f"{epoch}:{ids[2]}", 2)]
        broker.delivered_id = stream_id(ids[1])  # the reader has not handed over 2 yet
        missed = await recovery.missed(f"{epoch}:{ids[0]}", {ROOM}, "t1", "gone")
        assert [p.data for _, p in missed] == [1]
        await node.stop()
