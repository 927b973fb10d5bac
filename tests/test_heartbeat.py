"""Heartbeats: the server pings every ``interval`` and drops a client that stays
silent for ``timeout`` after a ping (close code 4408)."""

from __future__ import annotations

import pytest
import trio
from switchboard.core.config import Config
from switchboard.testing import Harness, TestClient, make_config

INTERVAL = 10.0
TIMEOUT = 5.0


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"heartbeat": {"interval": INTERVAL, "timeout": TIMEOUT}})


async def assert_answers_ping(client: TestClient) -> None:
    await client.emit("ping")
    await client.expect("pong", timeout=1)
    assert client.close_code is None


async def test_session_frame_announces_the_configured_heartbeat(switchboard: Harness) -> None:
    client = await switchboard.connect()
    assert client.session["heartbeat_interval"] == INTERVAL
    assert client.session["heartbeat_timeout"] == TIMEOUT


async def test_client_that_never_answers_pings_is_closed_with_4408(switchboard: Harness) -> None:
    client = await switchboard.connect(answer_pings=False)
    connected = trio.current_time()
    code, _ = await client.expect_closed(timeout=60)
    assert code == 4408
    assert trio.current_time() - connected == pytest.approx(INTERVAL + TIMEOUT, abs=0.1)


async def test_silent_client_is_removed_from_the_server(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ghost", answer_pings=False)
    await client.expect_closed(timeout=60)
    await client.settle(1)
    assert all(s.user_id != "ghost" for s in switchboard.server.hub.sessions.values())
    metrics = (await (await switchboard.http().get("/metrics")).get_data()).decode()
    assert 'switchboard_disconnects_total{reason="heartbeat_timeout"} 1.0' in metrics


async def test_client_that_answers_pings_stays_connected_over_many_intervals(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    await trio.sleep(20 * INTERVAL)
    await assert_answers_ping(client)


async def test_silent_client_does_not_affect_an_answering_one(switchboard: Harness) -> None:
    silent = await switchboard.connect(user="silent", answer_pings=False)
    lively = await switchboard.connect(user="lively")
    assert (await silent.expect_closed(timeout=60))[0] == 4408
    await trio.sleep(5 * INTERVAL)
    await assert_answers_ping(lively)


async def test_any_client_traffic_counts_as_alive(switchboard: Harness) -> None:
    client = await switchboard.connect(answer_pings=False)
    step = TIMEOUT - 1
    for _ in range(int(10 * INTERVAL / step)):
        await client.emit("room:join", {"room": "lead:1"})  # no id: no answer expected
        await trio.sleep(step)
    assert client.close_code is None
    await assert_answers_ping(client)
    # Once it falls silent it is dropped within one interval plus the timeout.
    silent_since = trio.current_time()
    code, _ = await client.expect_closed(timeout=60)
    assert code == 4408
    assert trio.current_time() - silent_since <= INTERVAL + TIMEOUT + 0.1


async def test_client_that_neither_reads_nor_answers_is_removed_from_the_server(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="stuck", lockstep=True)
    client.pause_reading()  # soon the server's pings and its close frame cannot be written
    await trio.sleep(3 * (INTERVAL + TIMEOUT))
    assert all(s.user_id != "stuck" for s in switchboard.server.hub.sessions.values())
