"""A node's own publications reach its members when Redis answers the publish,
without waiting for the node's reader to read them back from the stream, and
this keeps every guarantee of the stream: each member gets each publication
once, every node in the same order, recovery offsets without gap or repeat.

The interleavings are made with a proxy in front of the machine's Redis that
holds back the answers to one node's reader (the reader is behind) or to its
publishing connection (the reader is ahead)."""

from __future__ import annotations

from typing import Any

import coredis
import pytest
import trio
from switchboard.core import redis_broker
from switchboard.core.redis_broker import _PUBLISH_MANY, script_sha
from switchboard.core.redis_encoding import stream_id, text_of
from switchboard.testing import Harness, TestClient

from tests.redis_nodes import (
    REDIS_URL,
    TIMEOUT,
    cluster_config,
    eventually,
    redis_prefix_fixture,  # noqa: F401  (fixture)
)

ROOM = "lobby:1"
#: Who a connection to Redis is, by what it sends first of its kind: the
#: reader reads the stream, the publisher runs the publish script (by its SHA1).
KINDS = ((b"XREAD", "reader"), (script_sha(_PUBLISH_MANY).encode(), "publisher"),
         (_PUBLISH_MANY.encode(), "publisher"))


class RedisGate:
    """A TCP proxy in front of the machine's Redis that can hold back what
    Redis sends to a node's reader (the connection that sent ``XREAD``) or to
    its publishing connection (the one that ran the publish script)."""

    def __init__(self) -> None:
        self.port = 0
        self._held: dict[str, trio.Event] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def hold(self, kind: str) -> None:
        self._held[kind] = trio.Event()

    def release(self, kind: str) -> None:
        self._held.pop(kind).set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, client: trio.SocketStream) -> None:
        host, _, port = REDIS_URL.removeprefix("redis://").partition("/")[0].partition(":")
        upstream = await trio.open_tcp_stream(host, int(port))
        kind: list[str] = []

        async def requests() -> None:
            while data := await client.receive_some(65536):
                for marker, name in KINDS:
                    if not kind and marker in data:
                        kind.append(name)
                await upstream.send_all(data)

        async def answers() -> None:
            while data := await upstream.receive_some(65536):
                while kind and (held := self._held.get(kind[0])) is not None:
                    await held.wait()
                await client.send_all(data)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(requests)
                nursery.start_soon(answers)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # (a node's connection reset as it stops: in the nursery's group)
        finally:
            with trio.CancelScope(shield=True):
                await upstream.aclose()
                await client.aclose()


async def member(node: Harness, user: str) -> TestClient:
    client = await node.connect(user, "t1", role="customer")
    assert await client.request("room:join", {"room": ROOM}) == {"room": ROOM}
    return client


async def values_of(client: TestClient, event: str, count: int) -> list[Any]:
    return [await client.expect(event, timeout=TIMEOUT) for _ in range(count)]


async def no_tick_more_then_stop(publisher: Harness, clients: list[TestClient],
                                  nodes: list[Harness], nursery: trio.Nursery) -> None:
    """A marker published last reaches every client with no ``tick`` beyond
    those already read (none twice, none late); then the nodes stop."""
    await publisher.app.publish("t1", ROOM, "marker", None)
    for client in clients:
        await client.expect("marker", timeout=TIMEOUT)
        assert not client.received("tick")
    for node in nodes:
        await node.stop()
    nursery.cancel_scope.cancel()


async def stream_ids(prefix: str) -> tuple[str, list[str]]:
    """The cluster's epoch and the ids of its stream's entries, oldest first."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
    async with client:
        epoch = await client.get(f"{prefix}:epoch")
        assert isinstance(epoch, bytes)
        entries = await client.xrange(f"{prefix}:stream", "-", "+")
    return epoch.decode(), [text_of(entry.identifier) for entry in entries]


#: Connection state recovery on (the offsets are checked).
RECOVERY = {"socketio": {"recovery_window": 30}}


async def two_nodes(prefix: str, gate: RedisGate, nursery: trio.Nursery
                    ) -> tuple[Harness, Harness]:
    """Node A on Redis through ``gate``, node B straight on Redis."""
    a = await Harness.start(cluster_config(prefix, url=gate.url, overrides=RECOVERY), nursery)
    b = await Harness.start(cluster_config(prefix, overrides=RECOVERY), nursery)
    return a, b


async def test_own_publication_reaches_local_members_while_the_reader_is_held(
        redis_prefix: str) -> None:
    """Nothing older pending: the publishing node's members get the event
    although its reader cannot read the stream, and the other node's members
    get it from the stream; once the reader reads on, no one gets it twice."""
    gate = RedisGate()
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        a, b = await two_nodes(redis_prefix, gate, nursery)
        on_a, on_b = await member(a, "ann"), await member(b, "bob")
        gate.hold("reader")
        await a.app.publish("t1", ROOM, "tick", 1)
        assert await on_a.expect("tick", timeout=TIMEOUT) == 1
        assert await on_b.expect("tick", timeout=TIMEOUT) == 1
        gate.release("reader")
        await no_tick_more_then_stop(b, [on_a, on_b], [a, b], nursery)


async def test_own_publications_wait_for_older_entries_the_reader_has_not_delivered(
        redis_prefix: str) -> None:
    """Node B publishes while node A's reader is held; A's own publications
    made after it (some concurrently, some one by one) must not overtake it:
    every member on both nodes gets them all once, in the stream's order, and
    the recovery offsets follow that order."""
    gate = RedisGate()
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        a, b = await two_nodes(redis_prefix, gate, nursery)
        clients = [await member(a, "ann"), await member(a, "amy"), await member(b, "bob")]
        _, before = await stream_ids(redis_prefix)  # (joins may publish too)
        gate.hold("reader")
        await b.app.publish("t1", ROOM, "tick", "b1")
        async with trio.open_nursery() as publishers:
            for n in range(1, 4):
                publishers.start_soon(a.app.publish, "t1", ROOM, "tick", f"a{n}")
        await b.app.publish("t1", ROOM, "tick", "b2")
        await a.app.publish("t1", ROOM, "tick", "a4")
        epoch, ids = await stream_ids(redis_prefix)
        ids = ids[len(before):]
        assert len(ids) == 6
        # A has handed none of them to its members: the oldest is B's, unread
        assert a.app.hub.broker.delivered_id < stream_id(ids[0])
        gate.release("reader")
        orders = [await values_of(client, "tick", 6) for client in clients]
        assert all(order == orders[0] for order in orders)
        assert orders[0][0] == "b1" and orders[0][4:] == ["b2", "a4"]
        assert sorted(orders[0][1:4]) == ["a1", "a2", "a3"]

        async def caught_up() -> bool:
            return bool(a.app.hub.broker.delivered_id == stream_id(ids[-1]))
        await eventually(caught_up)
        # a session that last saw b1 is replayed the five after it, in order
        recovery = a.app.hub.recovery
        missed = await recovery.missed(f"{epoch}:{ids[0]}", {ROOM}, "t1", "gone")
        assert [offset for offset, _ in missed] == [f"{epoch}:{i}" for i in ids[1:]]
        assert [p.data for _, p in missed] == orders[0][1:]
        await no_tick_more_then_stop(b, clients, [a, b], nursery)


async def test_the_reader_quicker_than_the_publish_answer_delivers_once(
        redis_prefix: str) -> None:
    """Redis' answer to the publish is held, so node A's reader reads the
    entry first and delivers it; when the answer comes it is not delivered
    again."""
    gate = RedisGate()
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        a, b = await two_nodes(redis_prefix, gate, nursery)
        on_a, on_b = await member(a, "ann"), await member(b, "bob")
        gate.hold("publisher")
        published = trio.Event()

        async def publish() -> None:
            await a.app.publish("t1", ROOM, "tick", 1)
            published.set()
        nursery.start_soon(publish)
        assert await on_a.expect("tick", timeout=TIMEOUT) == 1
        assert await on_b.expect("tick", timeout=TIMEOUT) == 1
        assert not published.is_set()
        gate.release("publisher")
        with trio.fail_after(TIMEOUT):
            await published.wait()
        await no_tick_more_then_stop(a, [on_a, on_b], [a, b], nursery)


async def test_a_recovery_while_own_publications_wait_replays_none_of_them(
        redis_prefix: str) -> None:
    """While node A's own publication waits for B's older one, a session
    recovering on A is replayed neither (A has handed neither to its hub):
    attached at once, it gets both live, in order, once."""
    gate = RedisGate()
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        a, b = await two_nodes(redis_prefix, gate, nursery)
        await a.app.publish("t1", ROOM, "tick", 0)
        epoch, ids = await stream_ids(redis_prefix)

        async def delivered() -> bool:
            return bool(a.app.hub.broker.delivered_id == stream_id(ids[-1]))
        await eventually(delivered)
        gate.hold("reader")
        await b.app.publish("t1", ROOM, "tick", 1)
        await a.app.publish("t1", ROOM, "tick", 2)
        missed = await a.app.hub.recovery.missed(f"{epoch}:{ids[-1]}", {ROOM}, "t1", "gone")
        assert missed == []
        late = await member(a, "ann")  # attached right after its (empty) replay
        gate.release("reader")
        assert await values_of(late, "tick", 2) == [1, 2]
        await no_tick_more_then_stop(b, [late], [a, b], nursery)


async def test_beyond_the_kept_limit_the_reader_delivers_in_order(
        redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only so many of a node's own publications wait for an older entry; the
    rest are left to the reader, which delivers them in the stream's order."""
    monkeypatch.setattr(redis_broker, "EARLY_LIMIT", 1)
    gate = RedisGate()
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        a, b = await two_nodes(redis_prefix, gate, nursery)
        on_a, on_b = await member(a, "ann"), await member(b, "bob")
        gate.hold("reader")
        await b.app.publish("t1", ROOM, "tick", "b1")
        for n in range(1, 4):
            await a.app.publish("t1", ROOM, "tick", f"a{n}")
        gate.release("reader")
        for client in (on_a, on_b):
            assert await values_of(client, "tick", 4) == ["b1", "a1", "a2", "a3"]
        await no_tick_more_then_stop(a, [on_a, on_b], [a, b], nursery)
