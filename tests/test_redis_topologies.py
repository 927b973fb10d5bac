"""Redis where production runs it: behind Sentinel (the primary found, and
followed across a failover) and as a Redis Cluster (the cluster's keys in one
slot), each started by the test from the machine's ``redis-server``; and the
``broker.url`` forms, with clear errors for the wrong ones."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import coredis
import pytest
import trio
from switchboard.core import BrokerUnavailable
from switchboard.core.config import ConfigError
from switchboard.core.redis_encoding import decode_publication
from switchboard.core.redis_location import Location, parse_url
from switchboard.testing import Harness

from tests.redis_nodes import TIMEOUT, cluster_config, eventually, free_port, start_nodes
from tests.test_redis_cluster import ROOM, members, values_of

# -- broker.url ------------------------------------------------------------------


@pytest.mark.parametrize(("url", "location"), [
    ("redis://127.0.0.1:6379/0", Location("server", (("127.0.0.1", 6379),))),
    ("rediss://u:p%40ss@redis.internal/3",
     Location("server", (("redis.internal", 6379),), db=3, username="u", password="p@ss",
              tls=True)),
    ("redis+sentinel://s1:26380,s2,[::1]:26381/mymaster/2?sentinel_password=sp",
     Location("sentinel", (("s1", 26380), ("s2", 26379), ("::1", 26381)), service="mymaster",
              db=2, sentinel_password="sp")),
    ("redis+cluster://:secret@n1:7000,n2:7001",
     Location("cluster", (("n1", 7000), ("n2", 7001)), password="secret")),
    ("rediss+cluster://n1", Location("cluster", (("n1", 6379),), tls=True)),
])
def test_broker_urls_say_where_redis_is(url: str, location: Location) -> None:
    assert parse_url(url) == location


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://s1:26379", "name the primary"),
    ("redis://a:6379,b:6379/0", "redis+sentinel:// or redis+cluster://"),
    ("redis+cluster://n1:7000/1", "no database number"),
    ("redis://n1:port/0", "bad port"),
    ("redis://n1/zero", "bad database"),
    ("redis+sentinels://s1/m", "expected one of"),
    ("nats://127.0.0.1:4222", "expected one of"),
])
def test_a_wrong_broker_url_is_a_config_error_that_says_why(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cluster_config("x", url)
    assert caught.value.key == "broker.url"
    assert says in str(caught.value)


# -- servers of the test's own ----------------------------------------------------------


def redis_server() -> str:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is required for the Sentinel and Cluster tests")
    return server


class Processes:
    """``redis-server`` processes of one test, killed at its end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> None:
        self.running.append(subprocess.Popen(
            [redis_server(), *args], cwd=self.directory,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for process in self.running:
            process.kill()
            process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop()


async def answering(port: int) -> None:
    async def pong() -> bool:
        client: coredis.Redis[bytes] = coredis.Redis("127.0.0.1", port)
        try:
            async with client:
                return bool(await client.ping())
        except Exception:  # (not up yet: refused, or the client's task group)
            return False
        except BaseExceptionGroup:
            return False
    await eventually(pong)


def plain(port: int, *extra: str) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            *extra]


# -- Sentinel -----------------------------------------------------------------------


async def test_sentinel_finds_the_primary_and_follows_a_failover(
        processes: Processes, tmp_path: Path) -> None:
    primary, replica, sentinel = free_port(), free_port(), free_port()
    processes.start(*plain(primary))
    processes.start(*plain(replica, "--replicaof", "127.0.0.1", str(primary)))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel}\nbind 127.0.0.1\n"
                    f"sentinel monitor mymaster 127.0.0.1 {primary} 1\n"
                    "sentinel down-after-milliseconds mymaster 1000\n"
                    "sentinel failover-timeout mymaster 5000\n")
    for port in (primary, replica):
        await answering(port)
    processes.start(str(conf), "--sentinel")
    await answering(sentinel)

    async def replica_in_sync() -> bool:
        client: coredis.Redis[bytes] = coredis.Redis("127.0.0.1", replica)
        async with client:
            info = await client.info("replication")
        return info.get("master_link_status") == "up"
    await eventually(replica_in_sync, timeout=3 * TIMEOUT)

    url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster"
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config("sbtest-sentinel", url), nursery, 2)
        clients = await members(nodes, 1)
        for i in range(4):
            await nodes[i % 2].app.publish("t1", ROOM, "tick", i)
        for client in clients:
            assert await values_of(client, "tick", 4) == [0, 1, 2, 3]

        # the primary hands over to the replica (as when its machine is replaced)
        watcher: coredis.Redis[bytes] = coredis.Redis("127.0.0.1", sentinel)
        async with watcher:
            async def failed_over() -> bool:
                try:
                    return bool(await watcher.sentinel_failover("mymaster"))
                except coredis.exceptions.ResponseError as exc:
                    # the sentinel has not seen the replica yet (it asks every few s)
                    if "NOGOODSLAVE" in str(exc):
                        return False
                    raise
            await eventually(failed_over, timeout=3 * TIMEOUT)

            async def promoted() -> bool:
                address = await watcher.sentinel_get_master_addr_by_name("mymaster")
                return address is not None and int(address[1]) == replica
            await eventually(promoted, timeout=3 * TIMEOUT)

        # ... and the old primary has stepped down (until then it still takes
        # writes, which it drops when it copies the new primary: Redis
        # replicates asynchronously, so what it took last may be lost with it)
        async def stepped_down() -> bool:
            async with coredis.Redis("127.0.0.1", primary) as old:
                info = await old.info("replication")
            return info.get("role") == "slave" and info.get("master_link_status") == "up"
        await eventually(stepped_down, timeout=3 * TIMEOUT)

        # the nodes follow it: a publication is refused while they find it
        # (never lost), then taken by the new primary and read by every node
        async def published(node: Harness, value: int) -> bool:
            try:
                await node.app.publish("t1", ROOM, "tock", value)
            except BrokerUnavailable:
                return False
            return True
        for i in range(4):
            await eventually(lambda i=i: published(nodes[i % 2], i), timeout=3 * TIMEOUT)
        for client in clients:
            assert await values_of(client, "tock", 4) == [0, 1, 2, 3]
            assert not client.received("tick")

        # the new primary holds the publications made after the hand-over
        new_primary: coredis.Redis[bytes] = coredis.Redis("127.0.0.1", replica)
        async with new_primary:
            newest = await new_primary.xrevrange(nodes[0].app.hub.broker.stream_key, count=1)
        last = decode_publication(newest[0].field_values[b"p"])
        assert (last.event, last.data) == ("tock", 3)
        for node in nodes:
            await node.stop()


# -- Cluster -----------------------------------------------------------------------


async def test_a_redis_cluster_carries_the_cluster(processes: Processes) -> None:
    ports = [free_port() for _ in range(3)]
    for port in ports:
        # (the cluster bus port is given: its default, port + 10000, may be
        # past 65535 or taken)
        processes.start(*plain(port, "--cluster-enabled", "yes",
                               "--cluster-port", str(free_port()),
                               "--cluster-config-file", f"nodes-{port}.conf"))
    for port in ports:
        await answering(port)
    create = await trio.run_process(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
         "--cluster-replicas", "0", "--cluster-yes"], capture_stdout=True, capture_stderr=True)
    assert create.returncode == 0, create.stderr

    async def cluster_ok() -> bool:
        for port in ports:
            client: coredis.Redis[bytes] = coredis.Redis("127.0.0.1", port)
            async with client:
                info = await client.cluster_info()
            if info.get("cluster_state") not in ("ok", b"ok"):
                return False
        return True
    await eventually(cluster_ok, timeout=3 * TIMEOUT)

    url = f"redis+cluster://127.0.0.1:{ports[0]}"
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config("sbtest-cluster", url), nursery, 3)
        clients = await members(nodes, 1)
        # concurrently from the three nodes: one order for every member, each
        # node's publications in the order it sent them
        async with trio.open_nursery() as publishers:
            for n, node in enumerate(nodes):
                async def send(node: Harness = node, n: int = n) -> None:
                    for i in range(10):
                        await node.app.publish("t1", ROOM, "burst", [n, i])
                publishers.start_soon(send)
        orders = [await values_of(client, "burst", 30) for client in clients]
        assert all(order == orders[0] for order in orders)
        for n in range(3):
            assert [i for m, i in orders[0] if m == n] == list(range(10))

        # presence and stats across the nodes (the counting scripts, the heartbeats)
        async def everyone_counted() -> bool:
            reports = await nodes[0].app.hub.broker.nodes()
            return sorted(report.get("connections") for report in reports.values()) == [1, 1, 1]
        await eventually(everyone_counted)
        online = await nodes[2].app.cluster_counts("switchboard:users:t1")
        assert online == {"user0-0": 1, "user1-0": 1, "user2-0": 1}
        for node in nodes:
            await node.stop()
