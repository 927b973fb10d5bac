"""The desk over several nodes on the real Redis: an agent connected to one
node is online for all of them (their auto-assignment, their lists of
statuses), agent:online and agent:offline go out once for the cluster, and
the agents of a node that dies go offline on the nodes left, their tickets
given back to their queues."""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

import pytest
import trio
from desk import call, new_ticket, put_queue
from switchboard.plugins.desk import queues
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
    start_process_node,
)

DESK = {"plugins": {"desk": {
    "offline_grace": 0.3, "reassign_after": 0.3,
    "queues": [{"tenant": "acme", "id": "support", "name": "Support", "members": ["ana"]}],
}}}
#: The same, for a node started as a process.
DESK_TOML = """
[plugins.desk]
offline_grace = 0.3
reassign_after = 0.3

[[plugins.desk.queues]]
tenant = "acme"
id = "support"
name = "Support"
members = ["ana"]
"""


async def agent(node: Harness, user: str) -> TestClient:
    """An agent of acme connected to ``node`` (her connect's hooks have run)."""
    client = await node.connect(user, "acme", "agent")
    await client.request("agent:list")
    return client


async def statuses(node: Harness) -> dict[str, str]:
    """The statuses of acme's agents as ``node`` lists them."""
    listed = await call(node, "GET", "/api/v1/agents?tenant=acme", status=200)
    return {a["userId"]: a["status"] for a in listed["agents"]}


async def listed_as(node: Harness, user: str, status: str) -> bool:
    return (await statuses(node)).get(user) == status


async def marker(node: Harness, *watchers: TestClient) -> None:
    """Every watcher has received all that was published before (on any node)."""
    await node.app.publish("acme", "tenant:acme:agents", "marker", None)
    for watcher in watchers:
        await watcher.expect("marker", timeout=TIMEOUT)


async def test_a_ticket_created_through_another_node_goes_to_an_agent_online_on_one(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=DESK), nursery, 2)
        ana = await agent(a, "ana")
        await eventually(lambda: listed_as(b, "ana", "online"))
        ticket = await new_ticket(b, queueId="support")
        event = await ana.expect("ticket:assigned", timeout=TIMEOUT)
        assert event["ticket"]["id"] == ticket["id"]
        assert (event["ticket"]["assigneeId"], event["reason"]) == ("ana", "auto_assign")
        stored = await call(a, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
        assert stored["assigneeId"] == "ana"
        for node in (a, b):
            await node.stop()


async def test_a_queue_changed_on_one_node_counts_at_once_on_another(
        redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # (a copy is read again within 5 s anyway: kept here for an hour, only the
    # node that made the change can tell the other)
    monkeypatch.setattr(queues, "CACHE_SECONDS", 3600.0)
    monkeypatch.setattr(queues, "REFRESH_AFTER", 3600.0)
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=DESK), nursery, 2)
        await agent(a, "ana")
        await agent(a, "bob")
        await eventually(lambda: listed_as(b, "bob", "online"))
        first = await new_ticket(b, queueId="support")  # node b keeps the queue: ana's
        assert first["assigneeId"] == "ana"
        await put_queue(a, "support", ["bob"])

        async def given_to_bob() -> bool:
            return bool((await new_ticket(b, queueId="support"))["assigneeId"] == "bob")

        await eventually(given_to_bob)
        for node in (a, b):
            await node.stop()


async def test_a_status_set_on_one_node_rules_the_assignment_on_another(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=DESK), nursery, 2)
        ana = await agent(a, "ana")
        watcher = await agent(b, "wb")
        await ana.request("agent:status", {"status": "busy"})
        assert (await next_about(watcher, "agent:status", "ana"))["status"] == "busy"
        await eventually(lambda: listed_as(b, "ana", "busy"))
        ticket = await new_ticket(b, queueId="support")
        queued = await ana.expect("ticket:queued", timeout=TIMEOUT)
        assert queued["ticket"]["id"] == ticket["id"]
        assert queued["ticket"]["assigneeId"] is None
        assert ana.received("ticket:assigned") == []
        # online again (on node a): the waiting ticket is hers
        await ana.request("agent:status", {"status": "online"})
        event = await ana.expect("ticket:assigned", timeout=TIMEOUT)
        assert (event["ticket"]["id"], event["ticket"]["assigneeId"]) == (ticket["id"], "ana")
        await eventually(lambda: listed_as(b, "ana", "online"))
        for node in (a, b):
            await node.stop()


async def test_online_and_offline_once_for_an_agent_with_devices_on_two_nodes(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=DESK), nursery, 2)
        watchers = (await agent(a, "wa"), await agent(b, "wb"))
        phone = await agent(a, "ana")
        for watcher in watchers:
            assert (await next_about(watcher, "agent:online", "ana"))["status"] == "online"
            assert (await next_about(watcher, "agent:status", "ana"))["status"] == "online"
        # her second device, on the other node: no second agent:online
        laptop = await agent(b, "ana")
        await marker(b, *watchers)
        for watcher in watchers:
            assert about(watcher, "agent:online", "ana") == []
            assert about(watcher, "agent:status", "ana") == []
        ticket = await new_ticket(b, queueId="support")
        for watcher in watchers:
            event = await watcher.expect("ticket:assigned", timeout=TIMEOUT)
            assert (event["ticket"]["id"], event["ticket"]["assigneeId"]) == (
                ticket["id"], "ana")
        # the phone goes: its grace ends on node a with the laptop still there
        await phone.close()
        agents_a = a.app.plugins.pm.get_plugin("desk").agents
        await eventually(partial(_grace_over, a, "ana"))
        await marker(a, *watchers)
        for watcher in watchers:
            assert about(watcher, "agent:offline", "ana") == []
            assert about(watcher, "agent:status", "ana") == []
        assert agents_a.status("acme", "ana") == "online"
        for node in (a, b):
            assert await listed_as(node, "ana", "online")
        # the laptop goes: offline, once for each watcher
        await laptop.close()
        for watcher in watchers:
            assert (await next_about(watcher, "agent:offline", "ana"))["status"] == "offline"
            assert (await next_about(watcher, "agent:status", "ana"))["status"] == "offline"
        for node in (a, b):
            await eventually(partial(_not_listed, node, "ana"))
        await marker(a, *watchers)
        for watcher in watchers:
            assert about(watcher, "agent:offline", "ana") == []
            assert about(watcher, "agent:online", "ana") == []
        # her ticket back to its queue, reassign_after later, once (by node b)
        for watcher in watchers:
            back = await watcher.expect("ticket:assigned", timeout=TIMEOUT)
            assert (back["ticket"]["id"], back["ticket"]["assigneeId"], back["reason"]) == (
                ticket["id"], None, "assignee_offline")
        await marker(a, *watchers)
        for watcher in watchers:
            assert watcher.received("ticket:assigned") == []
        for node in (a, b):
            await node.stop()


async def test_an_agent_moving_to_another_node_within_the_grace_does_not_flap(
        redis_prefix: str) -> None:
    # a grace long enough for the reconnect on a loaded machine
    slow = {"plugins": {"desk": {**DESK["plugins"]["desk"], "offline_grace": 3.0}}}
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=slow), nursery, 2)
        watcher = await agent(b, "wb")
        phone = await agent(a, "ana")
        await next_about(watcher, "agent:online", "ana")
        await phone.close()
        again = await agent(b, "ana")  # reconnects elsewhere
        await eventually(partial(_grace_over, a, "ana"), timeout=TIMEOUT + 5)
        await marker(a, watcher)
        assert about(watcher, "agent:offline", "ana") == []
        assert about(watcher, "agent:online", "ana") == []
        for node in (a, b):
            assert await listed_as(node, "ana", "online")
        await again.close()
        assert (await next_about(watcher, "agent:offline", "ana"))["status"] == "offline"
        for node in (a, b):
            await node.stop()


async def test_an_agent_said_offline_by_a_node_that_raced_her_reconnection_is_online_again(
        redis_prefix: str) -> None:
    """Node a's grace for ana's last connection ends with the cluster's count
    at 0 just before her new connection on node b counts: b announced her
    online, then a's agent:offline comes. Node b, where she is connected,
    says she is online again, so every client's last word on her is online,
    and her tickets stay hers."""
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=DESK), nursery, 2)
        watchers = (await agent(a, "wa"), await agent(b, "wb"))
        await agent(b, "ana")
        for watcher in watchers:
            await next_about(watcher, "agent:online", "ana")
            await next_about(watcher, "agent:status", "ana")
        ticket = await new_ticket(a, queueId="support")
        for watcher in watchers:
            await watcher.expect("ticket:assigned", timeout=TIMEOUT)
        # what node a does when its grace for her ends with the count at 0;
        # its task ends reassign_after later, having given nothing back
        agents_a = a.app.plugins.pm.get_plugin("desk").agents
        async with trio.open_nursery() as going:
            going.start_soon(agents_a._give_back_later, ("acme", "ana"))
            for watcher in watchers:
                assert (await next_about(watcher, "agent:offline", "ana"))["status"] == "offline"
                assert (await next_about(watcher, "agent:online", "ana"))["status"] == "online"
                statuses = [(await next_about(watcher, "agent:status", "ana"))["status"]
                            for _ in range(2)]
                assert statuses == ["offline", "online"]
            for node in (a, b):
                await eventually(partial(listed_as, node, "ana", "online"))
        await marker(a, *watchers)
        for watcher in watchers:
            assert watcher.received("ticket:assigned") == []
        held = await call(a, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme", status=200)
        assert held["assigneeId"] == "ana"
        for node in (a, b):
            await node.stop()


async def test_a_node_started_later_knows_the_agents_online_and_their_statuses(
        redis_prefix: str) -> None:
    config = cluster_config(redis_prefix, overrides=DESK)
    async with trio.open_nursery() as nursery:
        (a,) = await start_nodes(config, nursery, 1)
        ana = await agent(a, "ana")
        await agent(a, "bob")
        await ana.request("agent:status", {"status": "away"})
        (b,) = await start_nodes(config, nursery, 1)
        await eventually(lambda: _statuses_are(b, {"ana": "away", "bob": "online"}))
        # and assigns accordingly: ana is away
        ticket = await new_ticket(b, queueId="support")
        assert (await ana.expect("ticket:queued", timeout=TIMEOUT))["ticket"]["id"] == \
            ticket["id"]
        await ana.request("agent:status", {"status": "online"})
        event = await ana.expect("ticket:assigned", timeout=TIMEOUT)
        assert (event["ticket"]["id"], event["ticket"]["assigneeId"]) == (ticket["id"], "ana")
        for node in (a, b):
            await node.stop()


async def test_the_agents_of_a_dead_node_go_offline_and_their_tickets_back(
        redis_prefix: str, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'cluster.db'}"
    config = cluster_config(redis_prefix, overrides={**DESK, "store": {"url": store_url}})
    async with trio.open_nursery() as nursery:
        (a,) = await start_nodes(config, nursery, 1)
        process, port = await start_process_node(tmp_path, nursery, redis_prefix, store_url,
                                                 DESK_TOML)
        watcher = await agent(a, "wa")
        ana = await _connect_to_port(a, port, "ana", nursery)
        await next_about(watcher, "agent:online", "ana")
        await eventually(lambda: listed_as(a, "ana", "online"))
        ticket = await new_ticket(a, queueId="support")
        assigned = await watcher.expect("ticket:assigned", timeout=TIMEOUT)
        assert (assigned["ticket"]["id"], assigned["ticket"]["assigneeId"]) == (
            ticket["id"], "ana")
        assert (await ana.expect("ticket:assigned", timeout=TIMEOUT))["ticket"]["id"] == \
            ticket["id"]
        process.send_signal(signal.SIGKILL)
        # her node stops counting after node_ttl; node a takes her offline after
        # the grace, and gives her ticket back reassign_after later
        offline = await next_about(watcher, "agent:offline", "ana")
        assert offline["status"] == "offline"
        back = await watcher.expect("ticket:assigned", timeout=TIMEOUT)
        assert back["ticket"]["id"] == ticket["id"]
        assert (back["ticket"]["assigneeId"], back["reason"]) == (None, "assignee_offline")
        assert back["previousAssigneeId"] == "ana"
        assert not await listed_as(a, "ana", "online")
        await marker(a, watcher)
        assert about(watcher, "agent:offline", "ana") == []
        assert watcher.received("ticket:assigned") == []
        await a.stop()
        nursery.cancel_scope.cancel()


async def test_while_redis_is_unreachable_a_node_keeps_its_view_then_catches_up(
        own_redis: OwnRedis, caplog: pytest.LogCaptureFixture) -> None:
    await own_redis.wait_answering()
    config = cluster_config("sbdesk", url=own_redis.url, overrides=DESK)
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(config, nursery, 2)
        ana = await agent(a, "ana")
        await eventually(lambda: listed_as(b, "ana", "online"))
        own_redis.kill()
        await eventually(partial(_degraded, a))
        # node a goes on with what it knows: a status set, an agent connecting
        assert await ana.request("agent:status", {"status": "busy"}) == {
            "userId": "ana", "status": "busy"}
        cleo = await agent(a, "cleo")
        # a queue changed: stored, the other nodes not told (their copy ages out)
        await put_queue(a, "support", ["ana", "cleo"])
        await eventually(lambda: _logged(caplog, "queue acme/support changed: other nodes "
                                                 "not told"))
        assert (await cleo.request("agent:list"))["agents"] == [
            {"userId": "ana", "status": "busy"}, {"userId": "cleo", "status": "online"}]
        # Redis comes back (empty, as after a crash): node b learns what it missed
        own_redis.start()
        await own_redis.wait_answering()
        await eventually(lambda: _statuses_are(b, {"ana": "busy", "cleo": "online"}))
        # and the counts are whole again: cleo's last connection takes her offline
        watcher = await agent(b, "wb")
        await cleo.close()
        assert (await next_about(watcher, "agent:offline", "cleo"))["status"] == "offline"
        await eventually(lambda: _statuses_are(b, {"ana": "busy", "wb": "online"}))
        for node in (a, b):
            await node.stop()


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


async def _degraded(node: Harness) -> bool:
    return not node.app.hub.broker.available


async def _connect_to_port(node: Harness, port: int, user: str,
                           nursery: trio.Nursery) -> TestClient:
    """An agent of acme connected over TCP to the node listening on ``port``."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = TestClient(stream, nursery)
    await client._handshake(node.config.server.ws_path,
                            [("Authorization", f"Bearer {node.token(user, 'acme', 'agent')}")])
    client.session = await client.expect("session", timeout=TIMEOUT)
    await client.request("agent:list", timeout=TIMEOUT)
    return client


async def _grace_over(node: Harness, user: str) -> bool:
    """The node has forgotten the agent's connections (their grace ended)."""
    return ("acme", user) not in node.app.plugins.pm.get_plugin("desk").agents._agents


async def _not_listed(node: Harness, user: str) -> bool:
    return user not in await statuses(node)


async def _statuses_are(node: Harness, expected: dict[str, str]) -> bool:
    return await statuses(node) == expected
