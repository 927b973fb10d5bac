"""Typing and notifications over several nodes on the real Redis."""

from __future__ import annotations

import trio
from switchboard.testing import ErrorReply

from tests.redis_nodes import (
    TIMEOUT,
    cluster_config,
    eventually,
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
)

ROOM = "lobby:1"
FAST = {"plugins": {"typing": {"throttle_interval": 0.01, "idle_timeout": 30}}}


async def test_typing_once_per_user_over_the_cluster(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=FAST), nursery, 2)
        phone = await a.connect("alice", "t1", role="customer")
        laptop = await b.connect("alice", "t1", role="customer")
        carol = await a.connect("carol", "t1", role="customer")
        bob = await b.connect("bob", "t1", role="customer")
        for client in (phone, laptop, carol, bob):
            assert await client.request("room:join", {"room": ROOM}) == {"room": ROOM}
        await phone.request("typing:start", {"room": ROOM})
        for watcher in (carol, bob):
            assert await watcher.expect("typing:update", timeout=TIMEOUT) == {
                "room": ROOM, "userId": "alice", "typing": True}
        # her other device, on the other node: no second update either way
        await laptop.request("typing:start", {"room": ROOM})
        await phone.request("typing:stop", {"room": ROOM})
        await laptop.request("typing:stop", {"room": ROOM})
        for watcher in (carol, bob):
            assert await watcher.expect("typing:update", timeout=TIMEOUT) == {
                "room": ROOM, "userId": "alice", "typing": False}
        await a.app.publish("t1", ROOM, "marker", None)
        for watcher in (carol, bob):
            await watcher.expect("marker", timeout=TIMEOUT)
            assert not watcher.received("typing:update")
        # a start on the other node after that is a new start
        await laptop.request("typing:start", {"room": ROOM})
        assert (await carol.expect("typing:update", timeout=TIMEOUT))["typing"] is True
        for node in (a, b):
            await node.stop()


async def test_a_notification_is_delivered_to_a_device_on_another_node(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix), nursery, 2)
        phone = await b.connect("alice", "t1", role="customer")
        assert (await phone.expect("notification:unread_count", timeout=TIMEOUT)) == {
            "count": 0}
        async with a.http() as http:
            response = await http.post("/api/v1/notifications", headers=a.api_headers(),
                                        json={"tenant": "t1", "user": "alice",
                                              "title": "Hi", "message": "there"})
            assert response.status_code == 201
            created = await response.get_json()
            assert created["deliveredAt"] is not None  # her phone is on node b
        assert (await phone.expect("notification:new", timeout=TIMEOUT))["id"] == created["id"]
        # so another device does not get it again as missed (but counts it unread)
        laptop = await a.connect("alice", "t1", role="customer")
        assert (await laptop.expect("notification:unread_count", timeout=TIMEOUT)) == {
            "count": 1}
        assert not laptop.received("notification:new")
        # and for a user connected nowhere it stays undelivered, replayed later
        async with b.http() as http:
            response = await http.post("/api/v1/notifications", headers=b.api_headers(),
                                        json={"tenant": "t1", "user": "bob",
                                              "title": "Hi", "message": "later"})
            assert (await response.get_json())["deliveredAt"] is None
        bob = await a.connect("bob", "t1", role="customer")
        assert (await bob.expect("notification:new", timeout=TIMEOUT))["message"] == "later"
        for node in (a, b):
            await node.stop()


async def test_a_users_rate_limit_holds_over_all_their_devices_on_all_nodes(
        redis_prefix: str) -> None:
    limits = {"limits": {"user": {"rate": 0.01, "burst": 4}}}
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=limits), nursery, 2)
        phone = await a.connect("alice", "t1", role="customer")
        laptop = await b.connect("alice", "t1", role="customer")

        async def split() -> bool:
            # both nodes have seen both devices (within a heartbeat): the two
            # counts may reach the broker in either order, so the node that
            # counted first learns of the other device only at its refresh
            return all(node.app._user_buckets[("t1", "alice")].burst == 2 for node in (a, b))

        await eventually(split)
        answered, limited = 0, 0
        for client in (phone, laptop):
            for _ in range(3):
                try:
                    await client.request("presence:heartbeat")
                    answered += 1
                except ErrorReply as exc:
                    assert exc.code == "rate_limited"
                    limited += 1
        assert (answered, limited) == (4, 2)  # the burst of 4, over both nodes
        # once the laptop is gone, the phone's node has the whole limit again
        await laptop.close()

        async def whole() -> bool:
            return bool(a.app._user_buckets[("t1", "alice")].burst == 4)

        await eventually(whole)
        for node in (a, b):
            await node.stop()


async def test_a_participant_added_on_one_node_may_join_on_another(redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix), nursery, 2)
        async with a.http() as http:
            response = await http.post("/api/v1/conversations", headers=a.api_headers(),
                                        json={"tenant": "t1", "id": "c1",
                                              "participants": [{"userId": "carl"}]})
            assert response.status_code == 201
        dave = await b.connect("dave", "t1", role="customer")
        # node b now knows the participants, without dave
        refused = await dave.request("conversation:join", {"conversationId": "c1"})
        assert refused["success"] is False and refused["error"]["code"] == "forbidden"
        async with a.http() as http:
            response = await http.post("/api/v1/conversations/c1/participants",
                                        headers=a.api_headers(),
                                        json={"tenant": "t1", "userId": "dave"})
            assert response.status_code == 201

        async def may_join() -> bool:
            ack = await dave.request("conversation:join", {"conversationId": "c1"})
            assert ack["success"] or ack["error"]["code"] == "forbidden"
            return bool(ack["success"])

        await eventually(may_join)  # node b dropped what it knew, told by node a
        for node in (a, b):
            await node.stop()


async def test_a_console_logout_on_one_node_ends_the_session_on_every_node(
        redis_prefix: str) -> None:
    import httpx
    from admin_console import CONSOLE, PASSWORD, logged_in
    from switchboard.core.admin.login import SESSION_COOKIE

    admin = {"path": CONSOLE, "password": PASSWORD,
             "secret": "one-cookie-secret-for-every-node-0123456789"}
    config = cluster_config(redis_prefix, overrides={"admin": admin})
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(config, nursery, 2, listen=True)
        async with httpx.AsyncClient(base_url=a.http_url()) as on_a, \
                httpx.AsyncClient(base_url=b.http_url()) as on_b:
            csrf = await logged_in(on_a)
            cookie = on_a.cookies[SESSION_COOKIE]
            on_b.cookies.set(SESSION_COOKIE, cookie, path=CONSOLE)
            assert (await on_b.get(f"{CONSOLE}/state.json")).status_code == 200
            assert (await on_a.post(f"{CONSOLE}/logout", data={"csrf": csrf})).status_code \
                == 303

            async def refused_on_b() -> bool:
                return (await on_b.get(f"{CONSOLE}/state.json")).status_code == 401

            await eventually(refused_on_b, timeout=TIMEOUT)
        for node in (a, b):
            await node.stop()
