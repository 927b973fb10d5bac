"""Escalation of unanswered handover requests, on Trio's MockClock (no sleeps
of real time), and its due times across a restart of the server on the same
database (SQLite file, then PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing
from handovers import (  # noqa: F401  (fixtures are found by name)
    agent,
    conversation,
    customer,
    database,
    history_texts,
    switchboard_config,
)
from switchboard.core.config import Config
from switchboard.plugins.handover import HandoverPlugin
from switchboard.testing import Harness


def clock() -> float:
    """One UNIX-time clock for both servers of a restart, moving with the MockClock."""
    return 1_800_000_000.0 + trio.current_time()


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"handover": HandoverPlugin(clock=clock)}


@pytest.fixture
def handover_settings() -> Mapping[str, Any]:
    return {"escalate_after": 60.0, "max_escalations": 2, "widen_at": 2,
            "expire_after": 300.0}


async def test_an_unanswered_request_escalates_widens_and_expires(
        switchboard: Harness) -> None:
    bill = await agent(switchboard, "bill", queue="billing")
    ana = await agent(switchboard, "ana")
    await conversation(switchboard)
    carl = await customer(switchboard)
    ack = await carl.request("handover:request", {"leadId": "c1", "queue": "billing"})
    assert ack["dueAt"] == ack["createdAt"] + 60
    assert (await bill.expect("handover:new_request"))["escalationLevel"] == 0

    await trio.sleep(59)
    assert bill.received("handover:escalated") == []
    await trio.sleep(2)
    first = await bill.expect("handover:escalated")
    assert first["escalationLevel"] == 1 and first["priority"] == "high"
    assert first["widened"] is False and first["version"] == 2
    assert (await bill.expect("handover:new_request"))["escalationLevel"] == 1
    assert (await carl.expect("handover:escalated"))["escalationLevel"] == 1
    assert ana.received("handover:escalated") == []  # still the queue's

    await trio.sleep(60)
    second = await ana.expect("handover:escalated")
    assert second["escalationLevel"] == 2 and second["priority"] == "urgent"
    assert second["widened"] is True
    assert (await ana.expect("handover:new_request"))["widened"] is True
    assert second["dueAt"] == second["createdAt"] + 300  # only its expiry is left

    await trio.sleep(120)  # no third escalation (max_escalations = 2)
    assert ana.received("handover:escalated") == []
    await trio.sleep(60)
    expired = await ana.expect("handover:expired")
    assert expired["status"] == "expired" and expired["dueAt"] is None
    assert (await carl.expect("handover:expired"))["id"] == ack["id"]
    assert (await history_texts(switchboard))[-1] == (
        "system", "No agent is available right now; we will get back to you.")
    stored = await switchboard.app.service("handover").get("t1", ack["id"])
    assert (stored.status, stored.escalation_level) == ("expired", 2)


async def test_an_accepted_or_cancelled_request_no_longer_escalates(
        switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    await conversation(switchboard)
    await conversation(switchboard, "c2")
    carl = await customer(switchboard)
    first = await carl.request("handover:request", {"leadId": "c1"})
    second = await carl.request("handover:request", {"leadId": "c2"})
    await trio.sleep(30)
    accepted = await ana.request("handover:accept", {"requestId": first["id"]})
    assert accepted["dueAt"] is None
    await carl.request("handover:cancel", {"requestId": second["id"]})
    await trio.sleep(600)
    assert ana.received("handover:escalated") == []
    assert ana.received("handover:expired") == []
    assert (await switchboard.app.service("handover").get("t1", first["id"])).status == \
        "accepted"


@pytest.mark.parametrize("handover_settings", [{"escalate_after": 60.0, "widen_at": 0,
                                                "raise_priority": False}])
async def test_a_transfer_back_to_a_queue_escalates_from_zero_again(
        switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    await conversation(switchboard)
    carl = await customer(switchboard)
    ack = await carl.request("handover:request", {"leadId": "c1", "priority": "low"})
    await trio.sleep(61)
    assert (await ana.expect("handover:escalated"))["escalationLevel"] == 1
    await ana.request("handover:accept", {"requestId": ack["id"]})
    await trio.sleep(500)
    moved = await ana.request("handover:transfer", {"requestId": ack["id"],
                                                    "toQueue": "sales"})
    assert moved["escalationLevel"] == 0 and moved["dueAt"] == moved["updatedAt"] + 60
    bob = await agent(switchboard, "bob", queue="sales")
    await trio.sleep(61)
    again = await bob.expect("handover:escalated")
    assert again["escalationLevel"] == 1 and again["priority"] == "low"


@pytest.mark.parametrize("handover_settings", [{"escalate_after": 60.0, "widen_at": 0}])
async def test_an_escalation_is_not_repeated_after_a_restart(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    await conversation(switchboard)
    carl = await customer(switchboard)
    ack = await carl.request("handover:request", {"leadId": "c1"})
    await trio.sleep(61)
    assert (await ana.expect("handover:escalated"))["escalationLevel"] == 1
    await trio.sleep(30)

    await switchboard.restart()  # the same database, a new server
    ana = await agent(switchboard, "ana")
    await trio.sleep(25)  # the new server runs; level 2 is due 60 s after level 1
    assert ana.received("handover:escalated") == []
    stored = await switchboard.app.service("handover").get("t1", ack["id"])
    assert (stored.escalation_level, stored.version) == (1, 2)
    await trio.sleep(10)
    assert (await ana.expect("handover:escalated"))["escalationLevel"] == 2
    await trio.sleep(1)
    assert ana.received("handover:escalated") == []


@pytest.mark.parametrize("handover_settings", [{"escalate_after": 60.0, "widen_at": 0}])
async def test_an_escalation_due_while_the_server_was_down_happens_once_at_start(
        switchboard: Harness, switchboard_config: Config,  # noqa: F811
        nursery: trio.Nursery,
        autojump_clock: trio.testing.MockClock) -> None:
    await conversation(switchboard)
    carl = await customer(switchboard)
    ack = await carl.request("handover:request", {"leadId": "c1"})
    await trio.sleep(50)

    await switchboard.stop()
    await trio.sleep(200)  # down: level 1 comes due, then level 2 would
    second = await Harness.start(switchboard_config, nursery, clock=autojump_clock,
                                 plugins={"handover": HandoverPlugin(clock=clock)})
    try:
        await trio.sleep(1)
        stored = await second.app.service("handover").get("t1", ack["id"])
        assert stored.escalation_level == 1  # not lost, and not three at once
        assert stored.due_at == pytest.approx(stored.updated_at + 60)
        ana = await agent(second, "ana")
        await trio.sleep(58)
        assert ana.received("handover:escalated") == []
        await trio.sleep(2)
        assert (await ana.expect("handover:escalated"))["escalationLevel"] == 2
    finally:
        await second.stop()
