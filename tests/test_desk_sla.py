"""SLA timers of the desk: warnings and breaches on the mock clock, met
targets, pauses while pending, and due times that survive a restart without
being sent twice. On a SQLite file and on a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from databases import database_url
from desk import call, desk_config, new_ticket, put_queue
from switchboard.core.config import Config
from switchboard.testing import Harness, TestClient

#: urgent: first reply within 10 minutes, resolution within an hour;
#: warnings 2 minutes before.
SLA = {"sla": {"urgent": {"first_response": 600.0, "resolution": 3600.0},
               "normal": {"resolution": 7200.0}},
       "sla_warning": 120.0}


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield desk_config(url, SLA)


async def lead(switchboard: Harness) -> TestClient:
    """A supervisor watching the support queue."""
    client = await switchboard.connect("lead", "acme", "supervisor")
    await client.request("room:join", {"room": "queue:support"})
    return client


async def test_due_times_follow_the_priority(switchboard: Harness) -> None:
    urgent = await new_ticket(switchboard, priority="urgent")
    assert urgent["firstResponseDue"] == pytest.approx(urgent["createdAt"] + 600)
    assert urgent["resolutionDue"] == pytest.approx(urgent["createdAt"] + 3600)
    normal = await new_ticket(switchboard)
    assert normal["firstResponseDue"] is None
    assert normal["resolutionDue"] == pytest.approx(normal["createdAt"] + 7200)
    low = await new_ticket(switchboard, priority="low")
    assert low["firstResponseDue"] is None and low["resolutionDue"] is None


async def test_a_warning_before_and_a_breach_at_the_target(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [])
    watcher = await lead(switchboard)
    start = trio.current_time()
    ticket = await new_ticket(switchboard, priority="urgent", queueId="support")
    warning = await watcher.expect("sla:warning", timeout=1000)
    assert warning["target"] == "first_response" and warning["ticket"]["id"] == ticket["id"]
    assert trio.current_time() - start == pytest.approx(480, abs=1)
    breach = await watcher.expect("sla:breached", timeout=1000)
    assert breach["target"] == "first_response"
    assert breach["dueAt"] == pytest.approx(ticket["firstResponseDue"])
    assert trio.current_time() - start == pytest.approx(600, abs=1)


async def test_the_assignee_is_warned_too(switchboard: Harness) -> None:
    ana = await switchboard.connect("ana", "acme", "agent")
    await new_ticket(switchboard, priority="urgent", assigneeId="ana")
    assert (await ana.expect("sla:warning", timeout=1000))["target"] == "first_response"


async def test_the_first_agent_reply_meets_the_first_response_target(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [])
    watcher = await lead(switchboard)
    ticket = await new_ticket(switchboard, priority="urgent", queueId="support")
    await trio.sleep(100)
    await call(switchboard, "POST", f"/api/v1/conversations/{ticket['conversationId']}/messages",
               {"tenant": "acme", "senderId": "cust-1", "senderRole": "customer",
                "content": {"text": "still there?"}}, status=201)
    await trio.sleep(100)
    agent = await switchboard.connect("ana", "acme", "agent")
    await agent.request("ticket:join", {"ticketId": ticket["id"]})
    await agent.request("message:send", {"conversationId": ticket["conversationId"],
                                         "type": "text", "content": {"text": "Hi!"}})
    await trio.sleep(1)
    stored = await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
    assert stored["firstResponseAt"] is not None and stored["firstResponseDue"] is None
    # the resolution target still runs: its warning comes at 3480 s
    warning = await watcher.expect("sla:warning", timeout=4000)
    assert warning["target"] == "resolution"
    assert watcher.received("sla:breached") == []


async def test_the_clock_stops_while_pending(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [])
    watcher = await lead(switchboard)
    start = trio.current_time()
    ticket = await new_ticket(switchboard, priority="urgent", queueId="support")
    agent = await switchboard.connect("ana", "acme", "agent")
    await trio.sleep(100)
    pending = await agent.request("ticket:set_status", {"ticketId": ticket["id"],
                                                        "status": "pending"})
    assert pending["ticket"]["firstResponseDue"] is None
    await trio.sleep(1000)  # waiting for the customer: no warning
    assert watcher.received("sla:warning") == []
    back = await agent.request("ticket:set_status", {"ticketId": ticket["id"],
                                                     "status": "open"})
    assert back["ticket"]["firstResponseDue"] == pytest.approx(
        ticket["firstResponseDue"] + 1000, abs=1)
    await watcher.expect("sla:warning", timeout=1000)
    assert trio.current_time() - start == pytest.approx(1480, abs=2)


async def test_a_resolved_ticket_breaches_nothing(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [])
    watcher = await lead(switchboard)
    ticket = await new_ticket(switchboard, priority="urgent", queueId="support")
    await call(switchboard, "PATCH", f"/api/v1/tickets/{ticket['id']}",
               {"tenant": "acme", "status": "resolved"}, status=200)
    await trio.sleep(4000)
    assert watcher.received("sla:warning") == [] and watcher.received("sla:breached") == []


async def test_a_restart_neither_loses_nor_repeats_a_timer(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [])
    watcher = await lead(switchboard)
    ticket = await new_ticket(switchboard, priority="urgent", queueId="support")
    await watcher.expect("sla:warning", timeout=1000)
    await switchboard.restart()
    watcher = await lead(switchboard)
    breach = await watcher.expect("sla:breached", timeout=1000)
    assert breach["ticket"]["id"] == ticket["id"] and breach["target"] == "first_response"
    assert watcher.received("sla:warning") == []
    await switchboard.restart()
    watcher = await lead(switchboard)
    await trio.sleep(2920)  # to 3520 s: the resolution warning (at 3480 s), no repeat
    assert [w["target"] for w in watcher.received("sla:warning")] == ["resolution"]
    assert watcher.received("sla:breached") == []


async def test_a_ticket_reopened_into_pending_starts_paused(switchboard: Harness) -> None:
    ticket = await new_ticket(switchboard, priority="urgent")
    agent = await switchboard.connect("ana", "acme", "agent")
    await agent.request("ticket:set_status", {"ticketId": ticket["id"], "status": "resolved"})
    paused = await agent.request("ticket:set_status", {"ticketId": ticket["id"],
                                                       "status": "pending"})
    assert paused["ticket"]["resolvedAt"] is None
    assert paused["ticket"]["resolutionDue"] is None
    assert paused["ticket"]["firstResponseDue"] is None
    await trio.sleep(500)
    resumed = await agent.request("ticket:set_status", {"ticketId": ticket["id"],
                                                        "status": "in_progress"})
    # the full targets, from the moment it left pending
    assert resumed["ticket"]["resolutionDue"] - resumed["ticket"]["updatedAt"] == \
        pytest.approx(3600, abs=1)
    assert resumed["ticket"]["firstResponseDue"] - resumed["ticket"]["updatedAt"] == \
        pytest.approx(600, abs=1)
