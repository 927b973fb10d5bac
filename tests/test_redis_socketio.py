"""Several nodes on the real Redis, judged by the real socket.io-client (npm):
one room's members spread over three nodes (Socket.IO and plain WebSocket);
a node killed with -9 during a steady stream, its clients recovering on the
others with nothing lost or duplicated."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import coredis
import httpx
import pytest
import trio
from switchboard.testing import TEST_API_KEY, Harness

from tests.redis_nodes import (
    REDIS_URL,
    TIMEOUT,
    Balancer,
    cluster_config,
    eventually,
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
    start_process_node,
)
from tests.socketio_fixtures import (
    DRIVER,
    SOCKETIO_DIR,
    MemoryWebSocket,
    NodeClients,
    node_modules_fixture,  # noqa: F401  (fixture)
)

ROOM = "lobby:1"
RECOVERY = {"socketio": {"recovery_window": 30}}
#: socket.io-client reconnecting at once, always to the same address.
RECONNECT = {"transports": ["websocket"], "reconnectionDelay": 50,
             "reconnectionDelayMax": 200, "randomizationFactor": 0}


@pytest.fixture(name="sio")
async def sio_fixture(node_modules: Path) -> AsyncIterator[NodeClients]:
    """socket.io-client sockets in a Node process; aim each with ``base_url``."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(partial(
            trio.run_process, ["node", str(DRIVER)], cwd=SOCKETIO_DIR, check=False,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        clients = NodeClients(process, "")
        nursery.start_soon(clients._read_stdout)
        nursery.start_soon(clients._read_stderr)
        await clients.expect(None, "ready")
        yield clients
        await clients.close()


def stream_position(offset: str) -> tuple[int, int]:
    _epoch, _, entry = offset.partition(":")
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq)


async def ticks(sio: NodeClients, client: str, count: int) -> list[Any]:
    """The next ``count`` ``tick`` events of ``client``: their data, checking
    that their recovery offsets only go forward."""
    values, last = [], (0, 0)
    for _ in range(count):
        report = await sio.expect(client, "event", event="tick")
        value, offset = report["args"]
        assert stream_position(offset) > last
        last = stream_position(offset)
        values.append(value)
    return values


async def emit(url: str, body: Any) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(f"{url}/api/v1/emit", json=body,
                                   headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert response.status_code == 202, response.text


async def test_one_room_over_three_nodes_socketio_and_websocket(
        redis_prefix: str, sio: NodeClients) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix, overrides=RECOVERY), nursery,
                                  3, listen=True)
        plain = []
        for n, node in enumerate(nodes):
            sio.base_url = node.http_url()
            await sio.connected(f"s{n}", node.token(f"sio{n}", "t1", "customer"),
                                transports=["websocket"])
            assert (await sio.call(f"s{n}", "room:join", {"room": ROOM}))["args"] == [
                {"room": ROOM}]
            client = await node.connect(f"ws{n}", "t1", role="customer")
            assert await client.request("room:join", {"room": ROOM}) == {"room": ROOM}
            plain.append(client)
        for i in range(30):  # from each node's HTTP API in turn
            await emit(nodes[i % 3].http_url(),
                       {"tenant": "t1", "room": ROOM, "event": "tick", "data": i})
        for n in range(3):
            assert await ticks(sio, f"s{n}", 30) == list(range(30))
        for client in plain:
            assert [await client.expect("tick", timeout=TIMEOUT) for _ in range(30)] == \
                list(range(30))
        await emit(nodes[0].http_url(),
                   {"tenant": "t1", "room": ROOM, "event": "marker", "data": None})
        for n in range(3):
            await sio.expect(f"s{n}", "event", event="marker")
            assert not sio.received(f"s{n}", "event", event="tick")
        for client in plain:
            await client.expect("marker", timeout=TIMEOUT)
            assert not client.received("tick")
        for node in nodes:
            await node.stop()


async def presence_counts(node: Harness, expected: dict[str, int]) -> bool:
    counts: dict[str, int] = await node.app.cluster_counts("presence:t1")
    return counts == expected


async def sessions_in_room(prefix: str, count: int) -> bool:
    """``count`` Socket.IO sessions are kept in Redis for recovery with ``ROOM``."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
    async with client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:session:*")]
        values = [await client.get(key) for key in keys]
    return sum(1 for value in values if value and ROOM in json.loads(value)["rooms"]) == count


async def has_nodes(node: Harness, count: int) -> bool:
    async with node.http() as http:
        response = await http.get("/api/v1/stats", headers=node.api_headers())
    return len((await response.get_json())["nodes"]) == count


async def test_a_node_killed_during_a_stream_its_clients_recover_on_the_others(
        redis_prefix: str, sio: NodeClients, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'cluster.db'}"
    config = cluster_config(redis_prefix, overrides={
        **RECOVERY, "store": {"url": store_url},
        "plugins": {"presence": {"grace_period": 0.3}}})
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(config, nursery, 2, listen=True)
        process, port = await start_process_node(tmp_path, nursery, redis_prefix, store_url)
        balancer = Balancer(port)
        await nursery.start(balancer.run)
        sio.base_url = balancer.url
        first = {}
        for name in ("x", "y"):
            first[name] = await sio.connected(name, a.token(name, "t1", "customer"),
                                              **RECONNECT)
            assert first[name]["recovered"] is False
            assert (await sio.call(name, "room:join", {"room": ROOM}))["args"] == [
                {"room": ROOM}]
        # z is on the doomed node only and will not come back
        sio.base_url = f"http://127.0.0.1:{port}"
        await sio.connected("z", a.token("z", "t1", "customer"), transports=["websocket"],
                            reconnection=False)
        watcher = await b.connect("watcher", "t1", role="agent")
        assert await watcher.request("room:join", {"room": ROOM}) == {"room": ROOM}
        # the node to kill has had its heartbeat in Redis, and has written its
        # sessions' rooms there (it does so with its heartbeats: a room joined
        # since the last one is not recovered from a node that dies)
        await eventually(lambda: has_nodes(a, 3))
        await eventually(lambda: sessions_in_room(redis_prefix, 2))
        total, killed_at = 200, 60
        sent = trio.Event()

        async def stream() -> None:
            for i in range(total):
                await a.app.publish("t1", ROOM, "tick", i)
                await trio.sleep(0.005)
            sent.set()

        nursery.start_soon(stream)
        assert await ticks(sio, "x", killed_at) == list(range(killed_at))
        process.send_signal(signal.SIGKILL)
        balancer.target = b.server.port  # reconnects go to a live node
        for name in ("x", "y"):
            assert (await sio.expect(name, "disconnect"))["reason"] == "transport close"
            again = await sio.expect(name, "connect")
            assert again["recovered"] is True
            assert again["id"] == first[name]["id"]
        with trio.fail_after(TIMEOUT):
            await sent.wait()
        # every tick once, in order: those before the kill, those missed while
        # reconnecting (replayed from Redis), those after
        assert await ticks(sio, "x", total - killed_at) == list(range(killed_at, total))
        assert await ticks(sio, "y", total) == list(range(total))
        assert [await watcher.expect("tick", timeout=TIMEOUT) for _ in range(total)] == \
            list(range(total))
        await a.app.publish("t1", ROOM, "marker", None)
        for name in ("x", "y"):
            await sio.expect(name, "event", event="marker")
            assert not sio.received(name, "event", event="tick")
        # the recovered sessions are still in the room, now on node b
        assert len(b.app.hub.rooms.members("t1", ROOM)) == 3
        # the dead node stops counting within node_ttl: its devices with it
        await eventually(lambda: has_nodes(a, 2))
        offline = await watcher.expect("user:offline", timeout=TIMEOUT)
        assert offline["userId"] == "z"
        await eventually(lambda: presence_counts(a, {"x": 1, "y": 1, "watcher": 1}))
        await b.app.publish("t1", "tenant:t1", "marker", None)
        await watcher.expect("marker", timeout=TIMEOUT)
        assert not watcher.received("user:offline")
        for name in ("x", "y"):  # customers: a customer's presence is the agents' only
            await sio.expect(name, "event", event="marker")
            assert not sio.received(name, "event", event="user:offline")
        for node in (a, b):
            await node.stop()
        nursery.cancel_scope.cancel()


async def test_a_recovery_offset_redis_would_refuse_is_a_new_session_not_a_failure(
        redis_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    async with trio.open_nursery() as nursery:
        [node] = await start_nodes(cluster_config(redis_prefix, overrides=RECOVERY), nursery, 1)
        target = f"/socket.io/?EIO=4&transport=websocket&token={node.token('ann', 't1')}"

        async def connect(auth: dict[str, Any] | None = None) -> tuple[MemoryWebSocket, Any]:
            ws = await MemoryWebSocket.connect(node, target)
            await ws.receive()  # open
            await ws.send("40" + (json.dumps(auth) if auth else ""))
            answer = (await ws.receive_until_prefix("40"))[-1]
            return ws, json.loads(str(answer)[2:])

        async def gone(ws: MemoryWebSocket, pid: str) -> None:
            """Close ``ws`` and wait until its session is kept for recovery."""
            await ws.aclose()
            key = f"{redis_prefix}:session:{pid}"
            async with coredis.Redis.from_url(REDIS_URL) as redis:
                await eventually(lambda: redis.exists([key]))

        ws, first = await connect()
        await node.app.publish("t1", "user:ann", "x", 1)
        offset = json.loads(str((await ws.receive_until_prefix('42["x"'))[-1])[2:])[-1]
        epoch, _, entry = offset.partition(":")
        pid = first["pid"]
        await gone(ws, pid)
        # what int() takes but Redis refuses: a space, an underscore, a sign, a
        # digit of another script, more than 64 bits
        for bad in (" 1-0", "1_0-0", "1--5", "+1-0", "\uff11-0", "1" * 21 + "-0",
                    "18446744073709551616-0", entry + " "):
            ws, answer = await connect({"pid": pid, "offset": f"{epoch}:{bad}"})
            assert answer["sid"] != first["sid"]  # a new session: the client re-syncs
            pid, sid = answer["pid"], answer["sid"]
            await gone(ws, pid)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        ws, answer = await connect({"pid": pid, "offset": offset})  # a good one still works
        assert answer["sid"] == sid  # (the last session's)
        await ws.aclose()
        await node.stop()
