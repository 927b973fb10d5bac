"""Slow consumers: a client that stops reading is cut once its outgoing queue
passes ``server.outbox_max_bytes``; memory stays bounded and others keep up."""

from __future__ import annotations

import re

import pytest
import trio
from switchboard.core.config import Config
from switchboard.testing import Harness, TestClient, make_config

OUTBOX_MAX = 16 * 1024
PAYLOAD = "x" * 1000
PUBLICATIONS = 200  # about 12 times the outbox


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"server": {"outbox_max_bytes": OUTBOX_MAX}})


async def metric(switchboard: Harness, name: str) -> float:
    text = (await (await switchboard.http().get("/metrics")).get_data()).decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def stalled_client(switchboard: Harness, user: str = "slow") -> TestClient:
    """A client on a lockstep stream that stops reading: the server's writes block."""
    client = await switchboard.connect(user=user, role="agent", lockstep=True)
    await client.request("room:join", {"room": "lead:1"})
    client.pause_reading()
    return client


async def flood(switchboard: Harness, sid: str | None = None) -> int:
    """Publish to ``lead:1``; return the most bytes queued for ``sid`` meanwhile."""
    hub = switchboard.server.hub
    session = hub.sessions.get(sid) if sid else None
    channel = getattr(session.transport, "channel", None) if session else None
    outbox = channel.outbox if channel is not None else None
    most = 0
    for n in range(PUBLICATIONS):
        await switchboard.app.publish("t1", "lead:1", "bulk", {"n": n, "pad": PAYLOAD})
        if outbox is not None:
            most = max(most, outbox.size)
        await trio.lowlevel.checkpoint()
    return most


async def test_client_that_stops_reading_is_disconnected(switchboard: Harness) -> None:
    slow = await stalled_client(switchboard)
    sid = slow.session["sid"]
    await flood(switchboard)
    await trio.sleep(10)
    assert sid not in switchboard.server.hub.sessions
    assert await metric(switchboard, "switchboard_slow_consumer_disconnects_total") >= 1


async def test_slow_consumer_is_told_why_when_it_reads_again(switchboard: Harness) -> None:
    slow = await stalled_client(switchboard)
    await flood(switchboard)
    slow.resume_reading()
    code, _ = await slow.expect_closed(timeout=30)
    assert code == 4503
    assert len(slow.received("bulk")) < PUBLICATIONS


async def test_outgoing_queue_never_passes_its_bound(switchboard: Harness) -> None:
    slow = await stalled_client(switchboard)
    most = await flood(switchboard, slow.session["sid"])
    assert 0 < most <= OUTBOX_MAX


async def test_other_clients_keep_receiving_while_one_is_slow(switchboard: Harness) -> None:
    await stalled_client(switchboard)
    fast = await switchboard.connect(user="fast", role="agent")
    await fast.request("room:join", {"room": "lead:1"})
    await flood(switchboard)
    for n in range(PUBLICATIONS):
        assert (await fast.expect("bulk", timeout=5))["n"] == n
    assert fast.close_code is None
    await fast.request("room:leave", {"room": "lead:1"})


async def test_reading_client_is_not_a_slow_consumer(switchboard: Harness) -> None:
    client = await switchboard.connect(user="steady", role="agent", lockstep=True)
    await client.request("room:join", {"room": "lead:1"})
    await flood(switchboard)
    for n in range(PUBLICATIONS):
        assert (await client.expect("bulk", timeout=5))["n"] == n
    assert await metric(switchboard, "switchboard_slow_consumer_disconnects_total") == 0
