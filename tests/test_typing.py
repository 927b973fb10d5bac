"""The typing plugin as clients see it: room broadcasts except the sender, one
indicator per user, idle expiry, disconnects and coalesced flapping."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness, TestClient, make_config

ROOM = "lead:1"


@pytest.fixture
def switchboard_config(request: pytest.FixtureRequest) -> Config:
    """The default test config, or the one given by indirect parametrization."""
    return make_config(getattr(request, "param", None))


async def in_room(switchboard: Harness, user: str, room: str = ROOM,
                  tenant: str = "t1") -> TestClient:
    client = await switchboard.connect(user=user, tenant=tenant, role="agent")
    await client.request("room:join", {"room": room})
    return client


def updates(client: TestClient) -> list[Any]:
    return client.received("typing:update")


async def test_start_is_acked_and_broadcast_to_the_room(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    assert await alice.request("typing:start", {"room": ROOM}) == {"room": ROOM, "typing": True}
    assert await bob.expect("typing:update") == {"room": ROOM, "userId": "alice", "typing": True}


async def test_the_sending_connection_does_not_get_its_own_update(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    await bob.expect("typing:update")
    await alice.settle(1)
    assert updates(alice) == []


async def test_other_rooms_and_tenants_do_not_see_typing(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    elsewhere = await in_room(switchboard, "carol", room="lead:2")
    other_tenant = await in_room(switchboard, "dave", tenant="t2")
    await alice.request("typing:start", {"room": ROOM})
    await bob.expect("typing:update")
    await bob.settle(1)
    assert updates(elsewhere) == []
    assert updates(other_tenant) == []


async def test_typing_in_a_room_not_joined_is_forbidden(switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", role="agent")
    with pytest.raises(ErrorReply) as refused:
        await alice.request("typing:start", {"room": ROOM})
    assert refused.value.code == "forbidden"


async def test_stop_is_acked_and_broadcast(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    await bob.expect("typing:update")
    await trio.sleep(1)
    assert await alice.request("typing:stop", {"room": ROOM}) == {"room": ROOM, "typing": False}
    assert await bob.expect("typing:update") == {"room": ROOM, "userId": "alice",
                                                 "typing": False}


async def test_stop_without_start_broadcasts_nothing(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    assert await alice.request("typing:stop", {"room": ROOM}) == {"room": ROOM, "typing": False}
    await bob.settle(10)
    assert updates(bob) == []


async def test_typing_stops_after_five_seconds_of_silence_not_before(
        switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    started = trio.current_time()
    await bob.expect("typing:update")
    await trio.sleep_until(started + 4.9)
    assert updates(bob) == []
    assert (await bob.expect("typing:update"))["typing"] is False
    assert trio.current_time() - started == pytest.approx(5.0, abs=0.01)


async def test_repeated_start_keeps_typing_alive_without_rebroadcast(
        switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    await bob.expect("typing:update")
    for _ in range(3):
        await trio.sleep(4)
        await alice.request("typing:start", {"room": ROOM})
    last_refresh = trio.current_time()
    await trio.sleep(4.9)
    assert updates(bob) == []
    assert (await bob.expect("typing:update"))["typing"] is False
    assert trio.current_time() - last_refresh == pytest.approx(5.0, abs=0.01)


async def test_two_devices_of_one_user_count_once(switchboard: Harness) -> None:
    phone = await in_room(switchboard, "alice")
    laptop = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await phone.request("typing:start", {"room": ROOM})
    await laptop.request("typing:start", {"room": ROOM})
    await trio.sleep(1)
    await phone.request("typing:stop", {"room": ROOM})
    await trio.sleep(1)
    assert [u["typing"] for u in updates(bob)] == [True]
    await laptop.request("typing:stop", {"room": ROOM})
    await trio.sleep(1)
    assert [u["typing"] for u in updates(bob)] == [True, False]


async def test_one_device_timing_out_leaves_the_user_typing_on_the_other(
        switchboard: Harness) -> None:
    phone = await in_room(switchboard, "alice")
    laptop = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await phone.request("typing:start", {"room": ROOM})
    await trio.sleep(3)
    await laptop.request("typing:start", {"room": ROOM})
    await trio.sleep(3)  # the phone has been silent for 6 s, the laptop for 3 s
    assert [u["typing"] for u in updates(bob)] == [True]
    await trio.sleep(2.1)
    assert [u["typing"] for u in updates(bob)] == [True, False]


async def test_disconnect_stops_typing_at_once(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    await bob.expect("typing:update")
    await trio.sleep(1)
    await alice.close()
    closed = trio.current_time()
    assert (await bob.expect("typing:update"))["typing"] is False
    assert trio.current_time() - closed < 0.1


async def test_flapping_within_the_interval_collapses_to_the_latest_state(
        switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    started = trio.current_time()
    for _ in range(3):
        await alice.request("typing:start", {"room": ROOM})
        await alice.request("typing:stop", {"room": ROOM})
    assert trio.current_time() - started < 0.5
    await trio.sleep(2)
    assert [u["typing"] for u in updates(bob)] == [True, False]


async def test_a_brief_pause_within_the_interval_is_not_broadcast(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    await alice.request("typing:stop", {"room": ROOM})
    await alice.request("typing:start", {"room": ROOM})
    await trio.sleep(2)
    assert [u["typing"] for u in updates(bob)] == [True]


async def test_typing_that_was_throttled_is_sent_when_the_interval_ends(
        switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    started = trio.current_time()
    await bob.expect("typing:update")
    await alice.request("typing:stop", {"room": ROOM})
    assert (await bob.expect("typing:update"))["typing"] is False
    assert trio.current_time() - started == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("switchboard_config",
                         [{"plugins": {"typing": {"idle_timeout": 2.0,
                                                  "throttle_interval": 1.5}}}],
                         indirect=True)
async def test_idle_timeout_and_throttle_interval_are_settings(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    started = trio.current_time()
    await bob.expect("typing:update")
    assert (await bob.expect("typing:update"))["typing"] is False
    assert trio.current_time() - started == pytest.approx(2.0, abs=0.01)
    await trio.sleep(2)
    await alice.request("typing:start", {"room": ROOM})
    await alice.request("typing:stop", {"room": ROOM})
    restarted = trio.current_time()
    await bob.expect("typing:update")
    assert (await bob.expect("typing:update"))["typing"] is False
    assert trio.current_time() - restarted == pytest.approx(1.5, abs=0.01)


async def test_typing_events_are_rate_limited_per_connection(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    for _ in range(10):
        await alice.request("typing:start", {"room": ROOM})
    with pytest.raises(ErrorReply) as limited:
        await alice.request("typing:start", {"room": ROOM})
    assert limited.value.code == "rate_limited"


async def test_leaving_the_room_stops_typing_at_once(switchboard: Harness) -> None:
    alice = await in_room(switchboard, "alice")
    bob = await in_room(switchboard, "bob")
    await alice.request("typing:start", {"room": ROOM})
    assert (await bob.expect("typing:update"))["typing"] is True
    started = trio.current_time()
    await alice.request("room:leave", {"room": ROOM})
    assert (await bob.expect("typing:update"))["typing"] is False
    assert trio.current_time() - started < 1
