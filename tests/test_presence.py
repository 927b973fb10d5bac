"""The presence plugin as a client sees it: online/offline announcements with a
grace period, statuses, coalesced updates, the online list and last-seen."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
import trio
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness, TestClient, make_config

#: Raises the per-connection limit of presence:update (1/s, burst 5 by default)
#: so a burst of ten updates reaches the coalescer.
FAST_UPDATES = {"limits": {"events": {"presence:update": {"rate": 100.0, "burst": 100.0}}}}


@pytest.fixture
def switchboard_config(request: pytest.FixtureRequest) -> Config:
    """The default test config, or the one given by indirect parametrization."""
    return make_config(getattr(request, "param", None))


def offline_of(client: TestClient, user: str) -> list[Any]:
    return [d for d in client.received("user:offline") if d["userId"] == user]


def online_of(client: TestClient, user: str) -> list[Any]:
    return [d for d in client.received("user:online") if d["userId"] == user]


async def expect_online(client: TestClient, user: str) -> Any:
    """Wait for the ``user:online`` of ``user`` (the client also gets its own)."""
    while True:
        data = await client.expect("user:online")
        if data["userId"] == user:
            return data


async def close_and_note_time(client: TestClient) -> float:
    await client.close()
    return trio.current_time()


# -- online ------------------------------------------------------------------


async def test_first_device_announces_user_online_to_the_tenant(switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme", role="agent")
    await switchboard.connect(user="alice", tenant="acme", role="customer")
    assert await expect_online(observer, "alice") == {
        "userId": "alice", "role": "customer", "status": "online"}


async def test_second_device_of_the_same_user_is_not_announced(switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    await switchboard.connect(user="alice", tenant="acme")
    await switchboard.connect(user="alice", tenant="acme")
    await observer.settle(1)
    assert len(online_of(observer, "alice")) == 1


async def test_closing_one_of_two_devices_keeps_the_user_online(switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    phone = await switchboard.connect(user="alice", tenant="acme")
    await switchboard.connect(user="alice", tenant="acme")
    await phone.close()
    await observer.settle(60)
    assert offline_of(observer, "alice") == []
    listed = await observer.request("presence:list")
    assert {"userId": "alice", "devices": 1}.items() <= next(
        u for u in listed["users"] if u["userId"] == "alice").items()


# -- offline and the grace period --------------------------------------------


async def test_offline_is_announced_only_after_the_grace_period(switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    alice = await switchboard.connect(user="alice", tenant="acme")
    closed_at = await close_and_note_time(alice)
    await trio.sleep_until(closed_at + 9)
    assert offline_of(observer, "alice") == []
    await trio.sleep_until(closed_at + 10.5)
    [offline] = offline_of(observer, "alice")
    assert set(offline) == {"userId", "lastSeen"}
    assert isinstance(offline["lastSeen"], float)


async def test_reconnecting_within_the_grace_period_announces_nothing(
        switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    alice = await switchboard.connect(user="alice", tenant="acme")
    await expect_online(observer, "alice")
    closed_at = await close_and_note_time(alice)
    await trio.sleep_until(closed_at + 5)
    await switchboard.connect(user="alice", tenant="acme")
    await observer.settle(60)
    assert offline_of(observer, "alice") == []
    assert online_of(observer, "alice") == []


@pytest.mark.parametrize("switchboard_config", [{"plugins": {"presence": {"grace_period": 3}}}],
                         indirect=True, ids=["grace_period_3"])
async def test_grace_period_from_config_is_honoured(switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    alice = await switchboard.connect(user="alice", tenant="acme")
    closed_at = await close_and_note_time(alice)
    await trio.sleep_until(closed_at + 2.5)
    assert offline_of(observer, "alice") == []
    await trio.sleep_until(closed_at + 3.5)
    assert len(offline_of(observer, "alice")) == 1


async def test_heartbeat_timeout_goes_offline_after_the_grace_period(
        switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    silent = await switchboard.connect(user="alice", tenant="acme", answer_pings=False)
    code, _ = await silent.expect_closed()
    assert code == 4408
    dropped_at = trio.current_time()
    await trio.sleep_until(dropped_at + 9)
    assert offline_of(observer, "alice") == []
    await trio.sleep_until(dropped_at + 10.5)
    assert len(offline_of(observer, "alice")) == 1


async def test_last_seen_is_stored_after_the_grace_period(switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme")
    await alice.close()
    await trio.sleep(11)
    table = switchboard.server.store.metadata.tables["presence_last_seen"]
    rows = await switchboard.server.store.fetch_all(sa.select(table))
    assert [(r["tenant_id"], r["user_id"]) for r in rows] == [("acme", "alice")]
    response = await switchboard.http().get("/api/v1/presence/acme/alice",
                                            headers=switchboard.api_headers())
    assert response.status_code == 200
    body = await response.get_json()
    assert body["status"] == "offline"
    assert body["lastSeen"] == rows[0]["last_seen"]


# -- statuses -----------------------------------------------------------------


@pytest.mark.parametrize("status", ["online", "busy", "away", "offline"])
async def test_status_update_is_acked_and_broadcast(switchboard: Harness, status: str) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    alice = await switchboard.connect(user="alice", tenant="acme")
    assert await alice.request("presence:update", {"status": status}) == {"status": status}
    updated = await observer.expect("presence:user_updated")
    assert updated["userId"] == "alice"
    assert updated["status"] == status


async def test_unknown_status_is_refused_naming_the_field(switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme")
    with pytest.raises(ErrorReply) as refused:
        await alice.request("presence:update", {"status": "sleeping"})
    assert refused.value.code == "invalid_payload"
    assert refused.value.field == "status"


@pytest.mark.parametrize("switchboard_config", [FAST_UPDATES], indirect=True,
                         ids=["fast_updates"])
async def test_burst_of_updates_is_coalesced_into_first_and_last(switchboard: Harness) -> None:
    observer = await switchboard.connect(user="olga", tenant="acme")
    alice = await switchboard.connect(user="alice", tenant="acme")
    statuses = ["busy", "online", "away"] * 3 + ["away"]
    for status in statuses:
        assert await alice.request("presence:update", {"status": status}) == {"status": status}
        await trio.sleep(0.05)
    await observer.settle(5)
    updates = [d["status"] for d in observer.received("presence:user_updated")
               if d["userId"] == "alice"]
    assert updates == ["busy", "away"]  # the first at once, the last after the interval


# -- the online list ----------------------------------------------------------


async def test_presence_list_shows_only_online_users_of_the_tenant(switchboard: Harness) -> None:
    olga = await switchboard.connect(user="olga", tenant="acme")
    await switchboard.connect(user="alice", tenant="acme")
    gone = await switchboard.connect(user="gary", tenant="acme")
    await switchboard.connect(user="bruno", tenant="globex")
    await gone.close()
    await trio.sleep(11)
    listed = await olga.request("presence:list")
    assert sorted(u["userId"] for u in listed["users"]) == ["alice", "olga"]


async def test_presence_list_carries_each_users_status(switchboard: Harness) -> None:
    olga = await switchboard.connect(user="olga", tenant="acme")
    alice = await switchboard.connect(user="alice", tenant="acme")
    await alice.request("presence:update", {"status": "away"})
    listed = await olga.request("presence:list")
    statuses = {u["userId"]: u["status"] for u in listed["users"]}
    assert statuses == {"alice": "away", "olga": "online"}


# -- who hears of whom ---------------------------------------------------------


async def test_a_customers_presence_goes_to_the_agents_not_to_other_customers(
        switchboard: Harness) -> None:
    agent = await switchboard.connect(user="olga", tenant="acme", role="agent")
    other = await switchboard.connect(user="bob", tenant="acme", role="customer")
    carol = await switchboard.connect(user="carol", tenant="acme", role="customer")
    await expect_online(agent, "carol")
    await carol.request("presence:update", {"status": "away"})
    assert (await agent.expect("presence:user_updated"))["userId"] == "carol"
    await carol.close()
    await trio.sleep(11)
    assert len(offline_of(agent, "carol")) == 1
    for event in ("user:online", "user:offline", "presence:user_updated"):
        assert [d for d in other.received(event) if d["userId"] == "carol"] == []
    listed = await other.request("presence:list")
    assert sorted(u["userId"] for u in listed["users"]) == ["bob", "olga"]


async def test_a_customer_hears_of_its_own_presence_on_all_its_devices(
        switchboard: Harness) -> None:
    phone = await switchboard.connect(user="carol", tenant="acme", role="customer")
    assert await expect_online(phone, "carol") == {
        "userId": "carol", "role": "customer", "status": "online"}
    laptop = await switchboard.connect(user="carol", tenant="acme", role="customer")
    await phone.request("presence:update", {"status": "away"})
    for device in (phone, laptop):
        updated = await device.expect("presence:user_updated")
        assert (updated["userId"], updated["status"]) == ("carol", "away")


async def test_customers_see_the_agents_come_and_go(switchboard: Harness) -> None:
    customer = await switchboard.connect(user="carol", tenant="acme", role="customer")
    ann = await switchboard.connect(user="ann", tenant="acme", role="supervisor")
    assert await expect_online(customer, "ann") == {
        "userId": "ann", "role": "supervisor", "status": "online"}
    await ann.request("presence:update", {"status": "busy"})
    assert (await customer.expect("presence:user_updated"))["status"] == "busy"
    await ann.close()
    await trio.sleep(11)
    assert len(offline_of(customer, "ann")) == 1


async def test_a_customer_lists_the_agents_online_and_itself_an_agent_everyone(
        switchboard: Harness) -> None:
    olga = await switchboard.connect(user="olga", tenant="acme", role="agent")
    await switchboard.connect(user="ann", tenant="acme", role="admin")
    carol = await switchboard.connect(user="carol", tenant="acme", role="customer")
    await switchboard.connect(user="bob", tenant="acme", role="customer")
    await switchboard.connect(user="zed", tenant="globex", role="agent")
    listed = await carol.request("presence:list")
    assert sorted(u["userId"] for u in listed["users"]) == ["ann", "carol", "olga"]
    listed = await olga.request("presence:list")
    assert sorted(u["userId"] for u in listed["users"]) == ["ann", "bob", "carol", "olga"]


# -- tenants ------------------------------------------------------------------


async def test_presence_never_crosses_tenants(switchboard: Harness) -> None:
    other_tenant = await switchboard.connect(user="bruno", tenant="globex")
    same_tenant = await switchboard.connect(user="olga", tenant="acme")
    alice = await switchboard.connect(user="alice", tenant="acme")
    await alice.request("presence:update", {"status": "busy"})
    await alice.close()
    await trio.sleep(11)
    assert len(offline_of(same_tenant, "alice")) == 1  # the announcements did happen...
    for event in ("user:online", "user:offline", "presence:user_updated"):
        assert [d for d in other_tenant.received(event) if d["userId"] == "alice"] == []


async def test_same_user_id_in_two_tenants_is_two_users(switchboard: Harness) -> None:
    acme_observer = await switchboard.connect(user="olga", tenant="acme")
    await switchboard.connect(user="alice", tenant="acme")
    globex_alice = await switchboard.connect(user="alice", tenant="globex")
    await expect_online(acme_observer, "alice")
    await globex_alice.close()
    await trio.sleep(11)
    assert offline_of(acme_observer, "alice") == []
    listed = await acme_observer.request("presence:list")
    assert "alice" in [u["userId"] for u in listed["users"]]
