"""The desk's agents and queues: statuses derived from connections and set by
agents, queue rooms, auto-assignment within capacity, tickets given back when
their assignee stays offline. On SQLite and on a real PostgreSQL database,
with time on the mock clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from databases import database_url
from desk import call, desk_config, new_ticket, put_queue
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness, TestClient


@pytest.fixture
def desk_settings() -> dict[str, Any]:
    return {"offline_grace": 10.0, "reassign_after": 60.0}


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path,
                       desk_settings: dict[str, Any]) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield desk_config(url, desk_settings)


async def agent(switchboard: Harness, user: str, tenant: str = "acme",
                role: str = "agent") -> TestClient:
    """An agent connected, who has heard their own agent:online and agent:status."""
    client = await switchboard.connect(user, tenant, role)
    assert (await client.expect("agent:online"))["userId"] == user
    assert (await client.expect("agent:status"))["userId"] == user
    return client


async def status_of(client: TestClient, user: str) -> str:
    """The next status announced of ``user`` (the others' are skipped)."""
    while True:
        event = await client.expect("agent:status")
        if event["userId"] == user:
            return str(event["status"])


async def assigned_to(client: TestClient) -> str:
    return str((await client.expect("ticket:assigned"))["ticket"]["assigneeId"])


# -- agent status ----------------------------------------------------------------


async def test_agents_are_announced_online_and_offline_after_the_grace(
        switchboard: Harness) -> None:
    watcher = await agent(switchboard, "lead", role="supervisor")
    ana = await agent(switchboard, "ana")
    online = await watcher.expect("agent:online")
    assert online["userId"] == "ana" and online["status"] == "online"
    assert (await watcher.expect("agent:status"))["userId"] == "ana"
    start = trio.current_time()
    await ana.close()
    offline = await watcher.expect("agent:offline")
    assert offline["userId"] == "ana" and offline["status"] == "offline"
    assert trio.current_time() - start == pytest.approx(10.0, abs=0.5)
    listed = await watcher.request("agent:list")
    assert {"userId": "ana", "status": "offline"} not in listed["agents"]
    assert "ana" not in {a["userId"] for a in listed["agents"]}


async def test_a_reconnection_within_the_grace_announces_nothing(switchboard: Harness) -> None:
    watcher = await agent(switchboard, "lead", role="supervisor")
    ana = await agent(switchboard, "ana")
    await watcher.expect("agent:online")
    await ana.close()
    await trio.sleep(5)
    await switchboard.connect("ana", "acme", "agent")
    await trio.sleep(30)
    assert watcher.received("agent:offline") == []
    assert watcher.received("agent:online") == []


async def test_agents_set_their_status_for_the_others_to_see(switchboard: Harness) -> None:
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    assert await ana.request("agent:status", {"status": "busy"}) == {"userId": "ana",
                                                                     "status": "busy"}
    assert await status_of(bob, "ana") == "busy"
    agents = await call(switchboard, "GET", "/api/v1/agents?tenant=acme", status=200)
    assert {"userId": "ana", "status": "busy"} in agents["agents"]
    foreign = await call(switchboard, "GET", "/api/v1/agents?tenant=globex")
    assert foreign["agents"] == []
    customer = await switchboard.connect("cust-1", "acme", "customer")
    with pytest.raises(ErrorReply) as refused:
        await customer.request("agent:status", {"status": "online"})
    assert refused.value.code == "forbidden"
    with pytest.raises(ErrorReply) as bad:
        await ana.request("agent:status", {"status": "sleepy"})
    assert bad.value.code == "invalid_payload" and bad.value.field == "status"


# -- queue rooms ------------------------------------------------------------------


async def test_queue_rooms_hold_members_and_admit_supervisors_only(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana"])
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    lead = await agent(switchboard, "lead", role="supervisor")
    foreign = await agent(switchboard, "ana", tenant="globex", role="admin")
    with pytest.raises(ErrorReply) as refused:
        await bob.request("room:join", {"room": "queue:support"})
    assert refused.value.code == "forbidden"
    assert await lead.request("room:join", {"room": "queue:support"}) == {
        "room": "queue:support"}
    await foreign.request("room:join", {"room": "queue:support"})  # globex's own room
    await call(switchboard, "POST", "/api/v1/tickets",
               {"tenant": "acme", "subject": "x", "customerId": "c1", "queueId": "support"},
               status=201)
    assert await assigned_to(ana) == "ana"
    await trio.sleep(1)
    assert foreign.received("ticket:assigned") == []
    assert foreign.received("ticket:created") == []


async def test_a_member_added_or_removed_joins_or_leaves_the_room(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [])
    bob = await agent(switchboard, "bob")
    await call(switchboard, "PUT", "/api/v1/queues/support/members/bob",
               {"tenant": "acme", "capacity": 2}, status=200)
    queues = await bob.request("queue:list")
    assert queues["queues"][0]["members"] == [{"userId": "bob", "capacity": 2,
                                               "status": "online"}]
    await bob.request("agent:status", {"status": "away"})
    await new_ticket(switchboard, queueId="support")
    assert (await bob.expect("ticket:queued"))["ticket"]["queueId"] == "support"
    await call(switchboard, "DELETE", "/api/v1/queues/support/members/bob?tenant=acme",
               status=204)
    await call(switchboard, "DELETE", "/api/v1/queues/support/members/bob?tenant=acme",
               status=404)
    await new_ticket(switchboard, queueId="support")
    await trio.sleep(1)
    assert bob.received("ticket:queued") == []


# -- auto-assignment -----------------------------------------------------------------


async def test_round_robin_takes_online_members_in_turn(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana", "bob"])
    ana = await agent(switchboard, "ana")
    await agent(switchboard, "bob")
    owners = []
    for _ in range(4):
        await new_ticket(switchboard, queueId="support")
        owners.append(await assigned_to(ana))
    assert sorted(owners) == ["ana", "ana", "bob", "bob"]
    assert owners[0] != owners[1] and owners[1] != owners[2]


async def test_least_busy_gives_the_agent_with_fewest_tickets(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana", "bob"], strategy="least_busy")
    await new_ticket(switchboard, assigneeId="ana")
    await new_ticket(switchboard, assigneeId="ana")
    ana = await agent(switchboard, "ana")
    await agent(switchboard, "bob")
    await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "bob"


async def test_least_busy_counts_the_tickets_of_agents_whose_ids_need_quoting(
        switchboard: Harness) -> None:
    # (the candidates' ids go to the database as one JSON array)
    busy, other = 'ana "a" \\ o\'neil \U0001f98a', "bob ß 名"
    await put_queue(switchboard, "support", [busy, other], strategy="least_busy")
    await new_ticket(switchboard, assigneeId=busy)
    await new_ticket(switchboard, assigneeId=busy)
    await new_ticket(switchboard, assigneeId=other)
    watcher = await agent(switchboard, busy)
    await agent(switchboard, other)
    await new_ticket(switchboard, queueId="support")
    assert await assigned_to(watcher) == other


async def test_a_capacity_past_what_the_database_holds_is_refused_naming_the_field(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [{"userId": "bob", "capacity": 2}])
    # (PostgreSQL's integer column holds up to 2**31-1: a 500 there, before)
    for method, path, body, field in (
            ("POST", "/api/v1/queues", {"tenant": "acme", "id": "support", "members": [
                {"userId": "ana", "capacity": 2**39}]}, "members.0.capacity"),
            ("PUT", "/api/v1/queues/support/members/bob",
             {"tenant": "acme", "capacity": 100_001}, "capacity"),
            ("PUT", "/api/v1/queues/support/members/bob",
             {"tenant": "acme", "capacity": -1}, "capacity")):
        answer = await call(switchboard, method, path, body, status=400)
        assert (answer["code"], answer["field"]) == ("invalid_payload", field)
    listed = await call(switchboard, "GET", "/api/v1/queues?tenant=acme", status=200)
    assert listed["queues"][0]["members"][0] | {"status": None} == {
        "userId": "bob", "capacity": 2, "status": None}
    await call(switchboard, "PUT", "/api/v1/queues/support/members/bob",
               {"tenant": "acme", "capacity": 100_000}, status=200)


async def test_only_online_agents_below_capacity_get_tickets(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [{"userId": "ana", "capacity": 1}, "bob"])
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    await bob.request("agent:status", {"status": "busy"})
    first = await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "ana"
    second = await new_ticket(switchboard, queueId="support")
    queued = await ana.expect("ticket:queued")
    assert queued["ticket"]["id"] == second["id"]
    # ana frees her capacity: the waiting ticket is hers
    await ana.request("ticket:close", {"ticketId": first["id"]})
    event = await ana.expect("ticket:assigned")
    assert event["ticket"]["id"] == second["id"] and event["ticket"]["assigneeId"] == "ana"
    assert event["reason"] == "auto_assign"


async def test_capacity_holds_through_every_kind_of_change_and_the_loads_match_the_tickets(
        switchboard: Harness) -> None:
    # (the agents' loads are kept with each change, not counted: after
    # assignments, a transfer, closes, a reopen and a status change they are
    # still what the tickets say)
    await put_queue(switchboard, "support", [{"userId": "ana", "capacity": 2},
                                             {"userId": "bob", "capacity": 2}])
    ana = await agent(switchboard, "ana")
    await agent(switchboard, "bob")
    tickets = [await new_ticket(switchboard, queueId="support") for _ in range(4)]
    owners = [await assigned_to(ana) for _ in tickets]
    assert sorted(owners) == ["ana", "ana", "bob", "bob"]
    held = {owner: [t["id"] for t, o in zip(tickets, owners, strict=True) if o == owner]
            for owner in ("ana", "bob")}
    waiting = await new_ticket(switchboard, queueId="support")  # both full
    assert (await ana.expect("ticket:queued"))["ticket"]["id"] == waiting["id"]
    # bob gives one of his to ana (a transfer may go past her capacity): his
    # freed slot takes the waiting ticket
    await call(switchboard, "POST", f"/api/v1/tickets/{held['bob'][0]}/transfer",
               {"tenant": "acme", "assigneeId": "ana"}, status=200)
    event = await ana.expect("ticket:assigned")
    assert (event["ticket"]["id"], event["ticket"]["assigneeId"]) == (waiting["id"], "bob")
    # ana closes her two first ones and reopens one
    for ticket_id in held["ana"]:
        await call(switchboard, "POST", f"/api/v1/tickets/{ticket_id}/close",
                   {"tenant": "acme"}, status=200)
    await call(switchboard, "POST", f"/api/v1/tickets/{held['ana'][0]}/reopen",
               {"tenant": "acme"}, status=200)
    await call(switchboard, "PATCH", f"/api/v1/tickets/{held['bob'][1]}",
               {"tenant": "acme", "status": "resolved"}, status=200)
    store = switchboard.app.store
    desk = store.metadata.tables["desk_tickets"]
    counted = {row["assignee_id"]: row["n"] for row in await store.fetch_all(
        sa.select(desk.c.assignee_id, sa.func.count().label("n"))
        .where(desk.c.assignee_id.is_not(None),
               desk.c.status.in_(["open", "pending", "in_progress"]))
        .group_by(desk.c.assignee_id))}
    load = store.metadata.tables["desk_agent_load"]
    kept = {row["user_id"]: row["active"] for row in await store.fetch_all(
        sa.select(load).where(load.c.active != 0))}
    assert kept == counted
    assert counted == {"ana": 2, "bob": 1}


async def test_a_waiting_ticket_goes_to_the_next_member_who_comes_online(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana"])
    watcher = await agent(switchboard, "lead", role="supervisor")
    ticket = await new_ticket(switchboard, queueId="support")
    await trio.sleep(1)
    stored = await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
    assert stored["assigneeId"] is None
    await agent(switchboard, "ana")
    event = await watcher.expect("ticket:assigned")
    assert event["ticket"]["id"] == ticket["id"] and event["ticket"]["assigneeId"] == "ana"


async def test_concurrent_tickets_never_push_an_agent_past_capacity(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", [{"userId": "ana", "capacity": 3}])
    await agent(switchboard, "ana")
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(new_ticket, switchboard, "acme")
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(lambda: new_ticket(switchboard, queueId="support"))
    await trio.sleep(5)
    held = await call(switchboard, "GET", "/api/v1/tickets?tenant=acme&assigneeId=ana")
    assert len(held["items"]) == 3


async def test_tickets_of_an_assignee_offline_too_long_go_back_to_the_queue(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana", "bob"])
    ana = await agent(switchboard, "ana")
    ticket = await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "ana"
    bob = await agent(switchboard, "bob")
    await ana.close()
    start = trio.current_time()
    back = await bob.expect("ticket:assigned", timeout=120)
    assert back["ticket"]["assigneeId"] is None and back["reason"] == "assignee_offline"
    assert trio.current_time() - start == pytest.approx(70.0, abs=1)
    again = await bob.expect("ticket:assigned")
    assert again["ticket"]["id"] == ticket["id"] and again["ticket"]["assigneeId"] == "bob"


async def test_an_assignee_back_before_the_deadline_keeps_the_tickets(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana"])
    ana = await agent(switchboard, "ana")
    ticket = await new_ticket(switchboard, queueId="support")
    await assigned_to(ana)
    await ana.close()
    await trio.sleep(30)  # offline (after 10 s), not yet given back
    await agent(switchboard, "ana")
    await trio.sleep(120)
    stored = await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
    assert stored["assigneeId"] == "ana"


# -- queues over HTTP and config --------------------------------------------------------


async def test_queue_api_checks_its_input(switchboard: Harness) -> None:
    bad = await call(switchboard, "POST", "/api/v1/queues",
                     {"tenant": "acme", "id": "has space", "members": []}, status=400)
    assert bad["field"] == "id"
    bad = await call(switchboard, "POST", "/api/v1/queues",
                     {"tenant": "acme", "id": "q", "strategy": "random"}, status=400)
    assert bad["field"] == "strategy"
    await call(switchboard, "PUT", "/api/v1/queues/nope/members/ana", {"tenant": "acme"},
               status=404)
    await put_queue(switchboard, "q", ["ana"])
    assert (await call(switchboard, "GET", "/api/v1/queues?tenant=globex"))["queues"] == []


class TestConfiguredQueues:
    @pytest.fixture
    def desk_settings(self) -> dict[str, Any]:
        return {"queues": [{"tenant": "acme", "id": "vendas", "name": "Vendas",
                            "strategy": "least_busy", "members": ["ana"]}]}

    async def test_queues_of_the_config_exist_at_start_up(self, switchboard: Harness) -> None:
        queues = await call(switchboard, "GET", "/api/v1/queues?tenant=acme", status=200)
        assert queues["queues"] == [{"id": "vendas", "name": "Vendas",
                                     "strategy": "least_busy",
                                     "members": [{"userId": "ana", "capacity": None,
                                                  "status": "offline"}]}]


async def test_a_status_set_through_presence_is_the_agent_status(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana"])
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    await ana.request("presence:update", {"status": "away"})
    assert await status_of(bob, "ana") == "away"
    await new_ticket(switchboard, queueId="support")
    assert (await ana.expect("ticket:queued"))["ticket"]["assigneeId"] is None
    await trio.sleep(2)  # past presence's coalescing window
    await ana.request("presence:update", {"status": "online"})
    assert await status_of(bob, "ana") == "online"
    assert await assigned_to(ana) == "ana"


async def test_the_deadline_counts_from_the_last_time_an_assignee_went(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana"])
    ana = await agent(switchboard, "ana")
    ticket = await new_ticket(switchboard, queueId="support")
    await assigned_to(ana)
    await ana.close()
    await trio.sleep(30)  # offline since 10 s
    ana = await agent(switchboard, "ana")
    await ana.close()  # offline again at 40 s: the first deadline (70 s) does not count
    await trio.sleep(50)
    stored = await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
    assert stored["assigneeId"] == "ana"
    await trio.sleep(60)  # past 10 + 60 s after the second time
    stored = await call(switchboard, "GET", f"/api/v1/tickets/{ticket['id']}?tenant=acme")
    assert stored["assigneeId"] is None


async def test_rooms_of_queues_the_desk_does_not_have_follow_the_other_policies(
        switchboard: Harness) -> None:
    bob = await agent(switchboard, "bob")
    assert await bob.request("room:join", {"room": "queue:elsewhere"}) == {
        "room": "queue:elsewhere"}


async def test_handover_requests_to_a_queue_reach_its_members_only(
        switchboard: Harness) -> None:
    """The handover plugin announces to ``queue:{id}``: the desk's queue rooms."""
    await put_queue(switchboard, "vendas", ["ana"])
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    lead = await switchboard.connect("lead", "acme", "supervisor")
    await lead.request("room:join", {"room": "queue:vendas"})
    chat = switchboard.app.service("chat")
    await chat.create_conversation("acme", "wa-1")
    await switchboard.app.service("handover").request(
        "acme", "wa-1", requested_by="bot", queue="vendas", reason="quer comprar")
    for client in (ana, lead):
        assert (await client.expect("handover:new_request"))["conversationId"] == "wa-1"
    await trio.sleep(1)
    assert bob.received("handover:new_request") == []


async def test_a_deleted_queue_empties_its_room_and_is_gone(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana"])
    ana = await agent(switchboard, "ana")
    await call(switchboard, "DELETE", "/api/v1/queues/support?tenant=globex", status=404)
    await call(switchboard, "DELETE", "/api/v1/queues/support?tenant=acme", status=204)
    await call(switchboard, "DELETE", "/api/v1/queues/support?tenant=acme", status=404)
    assert (await call(switchboard, "GET", "/api/v1/queues?tenant=acme"))["queues"] == []
    bad = await call(switchboard, "POST", "/api/v1/tickets",
                     {"tenant": "acme", "subject": "x", "customerId": "c", "queueId": "support"},
                     status=404)
    assert bad["code"] == "not_found" and bad["field"] == "queueId"
    await switchboard.app.publish("acme", "queue:support", "probe", {})
    await trio.sleep(1)
    assert ana.received("probe") == []


async def test_transfers_and_unassigning_go_through_the_queue(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana"])
    await put_queue(switchboard, "billing", ["bob"])
    ana = await agent(switchboard, "ana")
    bob = await agent(switchboard, "bob")
    ticket = await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "ana"
    # to the billing queue: bob, its free member, gets it
    moved = await ana.request("ticket:transfer", {"ticketId": ticket["id"],
                                                  "queueId": "billing", "note": "invoice"})
    assert moved["ticket"]["assigneeId"] is None and moved["ticket"]["status"] == "open"
    event = await bob.expect("ticket:assigned")
    while event["ticket"]["assigneeId"] != "bob":
        event = await bob.expect("ticket:assigned")
    assert event["reason"] == "auto_assign" and event["ticket"]["queueId"] == "billing"
    # to a named agent, keeping the queue
    direct = await bob.request("ticket:transfer", {"ticketId": ticket["id"], "userId": "carol",
                                                   "version": event["ticket"]["version"]})
    assert direct["ticket"]["assigneeId"] == "carol"
    assert direct["ticket"]["status"] == "in_progress"
    # given back: the queue assigns it again
    back = await bob.request("ticket:assign", {"ticketId": ticket["id"], "unassign": True})
    assert back["ticket"]["assigneeId"] is None
    again = await bob.expect("ticket:assigned")
    while again["ticket"]["assigneeId"] != "bob":
        again = await bob.expect("ticket:assigned")
    assert again["ticket"]["id"] == ticket["id"]


async def test_a_burst_of_tickets_is_shared_in_turn(switchboard: Harness) -> None:
    await put_queue(switchboard, "support", ["ana", "bob", "cid"])
    watcher = await agent(switchboard, "ana")
    await agent(switchboard, "bob")
    await agent(switchboard, "cid")
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(lambda: new_ticket(switchboard, queueId="support"))
    owners = sorted([await assigned_to(watcher) for _ in range(6)])
    assert owners == ["ana", "ana", "bob", "bob", "cid", "cid"], owners
    numbers = await call(switchboard, "GET", "/api/v1/tickets?tenant=acme")
    assert sorted(t["number"] for t in numbers["items"]) == [1, 2, 3, 4, 5, 6]


# -- the queues' cache -----------------------------------------------------------


def members_table_rows(switchboard: Harness, rows: list[tuple[str, int | None]]) -> None:
    """Members written straight into the database, as another node would."""
    engine = sa.create_engine(switchboard.config.store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM desk_queue_members WHERE tenant_id = 'acme'"
                                 " AND queue_id = 'support'"))
            for user, capacity in rows:
                conn.execute(sa.text(
                    "INSERT INTO desk_queue_members (tenant_id, queue_id, user_id, capacity)"
                    " VALUES ('acme', 'support', :user, :capacity)"),
                    {"user": user, "capacity": capacity})
    finally:
        engine.dispose()


async def ana_queue_then_bob_elsewhere(switchboard: Harness) -> TestClient:
    """Queue ``support`` of ana, read by this node for a ticket of hers (ana's
    client returned, bob online); then another node makes bob its only member."""
    await put_queue(switchboard, "support", ["ana"])
    ana = await agent(switchboard, "ana")
    await agent(switchboard, "bob")
    await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "ana"
    members_table_rows(switchboard, [("bob", 10)])
    return ana


async def test_a_change_of_members_made_elsewhere_counts_within_five_seconds(
        switchboard: Harness) -> None:
    ana = await ana_queue_then_bob_elsewhere(switchboard)
    await trio.sleep(5)
    await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "bob"


@pytest.fixture
def queue_reads() -> Iterator[list[str]]:
    """The statements that read the desk's queues, from every engine of the process."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM desk_queues" in statement or "FROM desk_queue_members" in statement:
            seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", note)


async def test_a_burst_of_tickets_after_the_copy_expired_reads_the_queue_once(
        switchboard: Harness, queue_reads: list[str]) -> None:
    await put_queue(switchboard, "support", ["ana", "bob"])
    ana = await agent(switchboard, "ana")
    await agent(switchboard, "bob")
    await new_ticket(switchboard, queueId="support")
    await assigned_to(ana)
    await trio.sleep(6)  # the copy is due
    queue_reads.clear()
    async with trio.open_nursery() as nursery:
        for _ in range(8):  # (within the two agents' capacity of 5 each)
            nursery.start_soon(lambda: new_ticket(switchboard, queueId="support"))
    owners = [await assigned_to(ana) for _ in range(8)]
    assert sorted(set(owners)) == ["ana", "bob"]
    assert len(queue_reads) == 1, queue_reads


async def test_a_queue_in_use_is_read_again_before_its_copy_is_due(
        switchboard: Harness, queue_reads: list[str]) -> None:
    ana = await ana_queue_then_bob_elsewhere(switchboard)
    await trio.sleep(4.5)
    queue_reads.clear()
    await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "ana"  # the copy, not due, answers at once
    await trio.sleep(0.1)
    assert len(queue_reads) == 1  # and was read again meanwhile
    await new_ticket(switchboard, queueId="support")
    assert await assigned_to(ana) == "bob"
    assert len(queue_reads) == 1
