"""The pipeline plugin: leads on a live board, on SQLite and PostgreSQL.

Boards see each other's changes at once, stale changes are refused with the
current state, a stage keeps its order without renumbering, the lead's room
is for the tenant's agents and its own customer only, the lead's
conversation works both ways from its creation, and the HTTP API announces
its changes like the socket does. Nothing of one tenant is visible or
changeable from another."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from databases import database_url
from switchboard.core import ClientError, LeadChange, hookimpl
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, ErrorReply, Harness, TestClient, make_config


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield url


@pytest.fixture
def switchboard_config(request: pytest.FixtureRequest, database: str) -> Config:
    """SQLite and PostgreSQL; settings of the plugin by indirect parametrization
    (and under ``_config``, more of the server's config)."""
    settings = dict(getattr(request, "param", {}))
    more = settings.pop("_config", {})
    return make_config({"store": {"url": database}, "plugins": {"pipeline": settings},
                        **more})


async def consultant(switchboard: Harness, user: str, tenant: str = "t1") -> TestClient:
    client = await switchboard.connect(user=user, tenant=tenant, role="agent")
    board = await client.request("pipeline:join", {})
    assert board["id"] == "default"
    return client


async def create(client: TestClient, title: str, **fields: Any) -> dict[str, Any]:
    lead: dict[str, Any] = await client.request("lead:create", {"title": title, **fields})
    return lead


async def column(client: TestClient, stage: str) -> list[str]:
    page = await client.request("lead:list", {"stageId": stage, "limit": 1000})
    return [lead["title"] for lead in page["leads"]]


async def test_two_consultants_see_each_others_changes_at_once(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    lead = await create(ana, "ACME", value=1500, contact={"name": "Joana"}, tags=["hot"])
    assert lead["stageId"] == "novo" and lead["version"] == 1
    created = await bia.expect("lead:created")
    assert created["lead"]["title"] == "ACME" and created["by"] == "ana"

    moved = await ana.request("lead:move", {"leadId": lead["id"], "stageId": "proposta",
                                            "version": 1})
    event = await bia.expect("lead:moved")
    assert event == {"leadId": lead["id"], "pipelineId": "default", "version": 2, "by": "ana",
                     "stageId": "proposta", "fromStageId": "novo", "rank": moved["rank"]}

    await bia.request("lead:update", {"leadId": lead["id"], "version": 2,
                                      "changes": {"value": 2000, "title": "ACME"}})
    updated = await ana.expect("lead:updated")
    assert updated["changes"] == {"value": 2000.0}  # the changed fields only
    assert updated["version"] == 3 and updated["by"] == "bia"

    await ana.request("lead:assign", {"leadId": lead["id"], "ownerId": "bia", "version": 3})
    assigned = await bia.expect("lead:assigned")
    assert assigned["ownerId"] == "bia" and assigned["previousOwnerId"] is None

    await bia.request("lead:delete", {"leadId": lead["id"], "version": 4})
    assert (await ana.expect("lead:deleted"))["leadId"] == lead["id"]
    with pytest.raises(ErrorReply) as gone:
        await ana.request("lead:get", {"leadId": lead["id"]})
    assert gone.value.code == "not_found"


async def test_a_stale_change_is_a_conflict_with_the_current_lead(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    lead = await create(ana, "ACME")
    await ana.request("lead:move", {"leadId": lead["id"], "stageId": "proposta",
                                    "version": 1})
    for event, extra in [("lead:move", {"stageId": "ganho"}),
                         ("lead:update", {"changes": {"title": "Other"}}),
                         ("lead:assign", {"ownerId": "bia"}), ("lead:delete", {})]:
        with pytest.raises(ErrorReply) as stale:
            await bia.request(event, {"leadId": lead["id"], "version": 1, **extra})
        assert stale.value.code == "conflict"
        current = stale.value.data["lead"]
        assert current["stageId"] == "proposta" and current["version"] == 2
    assert (await ana.request("lead:get", {"leadId": lead["id"]}))["title"] == "ACME"


async def test_racing_moves_of_one_lead_one_wins_the_other_gets_conflict(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    lead = await create(ana, "ACME")
    results: dict[str, Any] = {}

    async def move(client: TestClient, name: str, stage: str) -> None:
        try:
            results[name] = await client.request(
                "lead:move", {"leadId": lead["id"], "stageId": stage, "version": 1})
        except ErrorReply as error:
            results[name] = error

    async with trio.open_nursery() as nursery:
        nursery.start_soon(move, ana, "ana", "proposta")
        nursery.start_soon(move, bia, "bia", "ganho")
    errors = [r for r in results.values() if isinstance(r, ErrorReply)]
    winners = [r for r in results.values() if not isinstance(r, ErrorReply)]
    assert len(errors) == 1 and len(winners) == 1
    assert errors[0].code == "conflict"
    assert errors[0].data["lead"]["stageId"] == winners[0]["stageId"]


async def test_cards_keep_the_order_they_were_dropped_in(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    leads = {t: await create(ana, t) for t in "ABCD"}
    assert await column(ana, "novo") == ["A", "B", "C", "D"]
    await ana.request("lead:move", {"leadId": leads["D"]["id"], "stageId": "novo",
                                    "afterId": leads["A"]["id"]})
    assert await column(ana, "novo") == ["A", "D", "B", "C"]
    await ana.request("lead:move", {"leadId": leads["A"]["id"], "stageId": "novo",
                                    "beforeId": leads["C"]["id"]})
    assert await column(ana, "novo") == ["D", "B", "A", "C"]
    first = await ana.request("lead:move", {"leadId": leads["C"]["id"], "stageId": "novo",
                                            "beforeId": leads["D"]["id"]})
    assert await column(ana, "novo") == ["C", "D", "B", "A"]
    # only the moved card was written: the others kept their version
    versions = [(await ana.request("lead:get", {"leadId": leads[t]["id"]}))["version"]
                for t in "ABD"]
    assert versions == [2, 1, 2] and first["version"] == 2


async def test_racing_moves_into_one_column_keep_a_total_order(
        switchboard: Harness) -> None:
    """Two consultants drop cards after the same card at once: both land,
    each after it, and every board agrees on the final order."""
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    anchor = await create(ana, "anchor", stageId="proposta")
    cards = [await create(ana, f"card{n}") for n in range(6)]

    async def drop(client: TestClient, card: dict[str, Any]) -> None:
        await client.request("lead:move", {"leadId": card["id"], "stageId": "proposta",
                                           "afterId": anchor["id"], "version": 1})

    async with trio.open_nursery() as nursery:
        for n, card in enumerate(cards):
            nursery.start_soon(drop, ana if n % 2 else bia, card)
    order = await column(bia, "proposta")
    assert order[0] == "anchor" and sorted(order[1:]) == [f"card{n}" for n in range(6)]
    # what every board saw agrees with the stored order
    seen: dict[str, str] = {}
    for _ in cards:
        event = await ana.expect("lead:moved")
        seen[event["leadId"]] = event["rank"]
    titles = {c["id"]: c["title"] for c in cards}
    assert [titles[i] for i in sorted(seen, key=lambda i: (seen[i], i))] == order[1:]


async def test_racing_moves_to_the_end_of_a_column_line_up_in_the_order_announced(
        switchboard: Harness) -> None:
    """Cards dropped at the end of one column at once (written together) each
    land after the one before, in the order the boards were told; a card
    dropped at the end of its own column stays last."""
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    await create(ana, "first", stageId="proposta")
    cards = [await create(ana, f"card{n}") for n in range(8)]

    async def drop(client: TestClient, card: dict[str, Any]) -> None:
        await client.request("lead:move", {"leadId": card["id"], "stageId": "proposta",
                                           "version": 1})

    async with trio.open_nursery() as nursery:
        for n, card in enumerate(cards):
            nursery.start_soon(drop, ana if n % 2 else bia, card)
    titles = {c["id"]: c["title"] for c in cards}
    announced = [await ana.expect("lead:moved") for _ in cards]
    order = await column(bia, "proposta")
    assert order == ["first", *(titles[e["leadId"]] for e in announced)]
    assert [e["rank"] for e in announced] == sorted({e["rank"] for e in announced})
    last = announced[-1]
    again = await bia.request("lead:move", {"leadId": last["leadId"], "stageId": "proposta"})
    assert again["rank"] > announced[-2]["rank"] and again["version"] == 3
    assert await column(ana, "proposta") == order


async def test_a_gap_worn_narrow_renumbers_the_stage_in_the_same_order(
        switchboard: Harness) -> None:
    """Dropping cards into the same place over and over narrows the gap by
    one rank digit per few drops; before keys grow long the stage is
    renumbered, the order kept, and the board told the new ranks."""
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    a, x, y, b = [await create(ana, t) for t in "AXYB"]
    for n in range(240):
        moving = y if n % 2 == 0 else x
        await ana.settle(0.1)  # (mock time) within the event's rate limit
        lead = await ana.request("lead:move", {"leadId": moving["id"], "stageId": "novo",
                                               "afterId": a["id"]})
        assert len(lead["rank"]) <= 41
    order = await column(ana, "novo")
    assert order == ["A", "X", "Y", "B"]
    reranked = bia.received("stage:reranked")
    assert reranked and reranked[0]["stageId"] == "novo"
    renumbered = set(reranked[0]["ranks"])  # every card but the one being moved
    assert len(renumbered) == 3 and {a["id"], b["id"]} <= renumbered
    page = await ana.request("lead:list", {"stageId": "novo"})
    assert all(len(lead["rank"]) <= 41 for lead in page["leads"])


async def test_a_stage_is_listed_page_by_page(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    for n in range(7):
        await create(ana, f"L{n}")
    titles, cursor = [], None
    while True:
        page = await ana.request("lead:list", {"stageId": "novo", "limit": 3,
                                               **({"cursor": cursor} if cursor else {})})
        titles += [lead["title"] for lead in page["leads"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert titles == [f"L{n}" for n in range(7)]
    with pytest.raises(ErrorReply) as bad:
        await ana.request("lead:list", {"stageId": "novo", "cursor": "nope!"})
    assert bad.value.field == "cursor"


async def test_the_lead_room_is_for_agents_and_its_own_customer(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    lead = await create(ana, "ACME", customerId="carla")
    carla = await switchboard.connect(user="carla", role="customer")
    dora = await switchboard.connect(user="dora", role="customer")
    assert await carla.request("room:join", {"room": f"lead:{lead['id']}"})
    with pytest.raises(ErrorReply) as refused:
        await dora.request("room:join", {"room": f"lead:{lead['id']}"})
    assert refused.value.code == "forbidden"
    with pytest.raises(ErrorReply) as hidden:
        await dora.request("lead:get", {"leadId": lead["id"]})
    assert hidden.value.code == "not_found"
    with pytest.raises(ErrorReply) as board:
        await carla.request("pipeline:join", {})
    assert board.value.code == "forbidden"
    with pytest.raises(ErrorReply) as change:
        await carla.request("lead:update", {"leadId": lead["id"], "changes": {"value": 1}})
    assert change.value.code == "forbidden"
    # the customer's detail view follows the lead
    await ana.request("lead:update", {"leadId": lead["id"], "changes": {"title": "ACME 2"}})
    assert (await carla.expect("lead:updated"))["changes"] == {"title": "ACME 2"}
    assert (await carla.request("lead:get", {"leadId": lead["id"]}))["title"] == "ACME 2"
    assert not dora.received("lead:updated")


async def test_a_consultant_with_board_and_detail_open_gets_each_event_once(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    lead = await create(ana, "ACME", customerId="carla")
    carla = await switchboard.connect(user="carla", role="customer")
    for client in (bia, carla):
        await client.request("room:join", {"room": f"lead:{lead['id']}"})
    await ana.request("lead:update", {"leadId": lead["id"], "changes": {"value": 1}})
    await ana.request("lead:update", {"leadId": lead["id"], "changes": {"value": 2}})
    for client in (bia, carla):
        assert (await client.expect("lead:updated"))["version"] == 2
        assert (await client.expect("lead:updated"))["version"] == 3
    await bia.settle(1)
    assert bia.received("lead:updated") == [] and carla.received("lead:updated") == []


async def test_the_lead_conversation_goes_both_ways_from_its_creation(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    lead = await create(ana, "ACME", customerId="carla", ownerId="ana")
    conversation = lead["conversationId"]
    carla = await switchboard.connect(user="carla", role="customer")
    await carla.request("conversation:join", {"conversationId": conversation})
    await ana.request("conversation:join", {"conversationId": conversation})
    await ana.request("message:send", {"conversationId": conversation,
                                       "content": {"text": "Olá Carla"}})
    assert (await carla.expect("message:new"))["content"] == {"text": "Olá Carla"}
    await carla.request("message:send", {"conversationId": conversation,
                                         "content": {"text": "Oi!"}})
    assert (await ana.expect("message:new"))["senderId"] == "carla"
    # a customer assigned later joins it too
    other = await create(ana, "Beta")
    await ana.request("lead:update", {"leadId": other["id"], "changes": {"customerId": "carla"}})
    await carla.request("conversation:join", {"conversationId": other["conversationId"]})


async def test_bad_input_is_refused_naming_the_field(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    lead = await create(ana, "ACME")
    cases = [
        ("lead:create", {"title": ""}, "title"),
        ("lead:create", {"title": "x", "value": "lots"}, "value"),
        ("lead:create", {"title": "x", "value": 1e300}, "value"),
        ("lead:create", {"title": "x", "stageId": "nope"}, "stageId"),
        ("lead:create", {"title": "x", "contact": {"fax": "1"}}, "contact.fax"),
        ("lead:create", {"title": "x", "tags": "hot"}, "tags"),
        ("lead:create", {"title": "x", "fields": {"a": {"b": 1}}}, "fields.a"),
        ("lead:create", {"title": "x", "id": "a b"}, "id"),
        ("lead:update", {"leadId": lead["id"], "changes": {"stageId": "x"}}, "changes.stageId"),
        ("lead:update", {"leadId": lead["id"], "changes": {}}, "changes"),
        ("lead:move", {"leadId": lead["id"], "stageId": "nope"}, "stageId"),
        ("lead:move", {"leadId": lead["id"], "stageId": "novo", "afterId": lead["id"]},
         "afterId"),
        ("lead:move", {"leadId": lead["id"], "stageId": "novo", "version": 0}, "version"),
        ("lead:move", {"leadId": lead["id"], "stageId": "novo", "afterId": "ghost"},
         "afterId"),
    ]
    for event, data, field in cases:
        with pytest.raises(ErrorReply) as error:
            await ana.request(event, data)
        assert (error.value.code, error.value.field) in {("invalid_payload", field),
                                                        ("conflict", field)}, (event, data)
    with pytest.raises(ErrorReply) as missing:
        await ana.request("lead:move", {"leadId": "ghost", "stageId": "novo"})
    assert missing.value.code == "not_found"


async def test_tenants_never_see_or_change_each_others_leads(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana", tenant="t1")
    otto = await consultant(switchboard, "otto", tenant="t2")
    lead = await create(ana, "Secret", customerId="carla")
    for event, data in [("lead:get", {}), ("lead:update", {"changes": {"title": "x"}}),
                        ("lead:move", {"stageId": "ganho"}), ("lead:delete", {}),
                        ("lead:assign", {"ownerId": "otto"}), ("lead:activity", {})]:
        with pytest.raises(ErrorReply) as error:
            await otto.request(event, {"leadId": lead["id"], **data})
        assert error.value.code == "not_found", event
    # the same room name in t2 is another room: nothing of t1's lead reaches it
    await otto.request("room:join", {"room": f"lead:{lead['id']}"})
    await ana.request("lead:update", {"leadId": lead["id"], "changes": {"title": "x"}})
    assert (await ana.expect("lead:updated"))["changes"] == {"title": "x"}
    assert await column(otto, "novo") == []
    assert not otto.received("lead:created")
    response = await switchboard.http().get(
        f"/api/v1/leads/{lead['id']}?tenant=t2", headers=switchboard.api_headers())
    assert response.status_code == 404
    assert (await ana.request("lead:get", {"leadId": lead["id"]}))["version"] == 2
    assert not otto.received("lead:updated")


async def test_the_activity_log_says_who_changed_what_and_when(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    lead = await create(ana, "ACME")
    await bia.request("lead:move", {"leadId": lead["id"], "stageId": "proposta"})
    await ana.request("lead:update", {"leadId": lead["id"], "changes": {"value": 10}})
    log = await ana.request("lead:activity", {"leadId": lead["id"]})
    assert [(e["action"], e["by"], e["version"]) for e in log["entries"]] == [
        ("updated", "ana", 3), ("moved", "bia", 2), ("created", "ana", 1)]
    assert log["entries"][1]["changes"]["stageId"] == "proposta"
    assert all(isinstance(e["at"], float) for e in log["entries"])


async def test_http_changes_are_announced_like_socket_ones(switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    http, headers = switchboard.http(), switchboard.api_headers()
    response = await http.post("/api/v1/leads", headers=headers, json={
        "tenant": "t1", "id": "L-1", "title": "From the backend", "customerId": "carla"})
    assert response.status_code == 201
    assert (await ana.expect("lead:created"))["lead"]["id"] == "L-1"
    response = await http.post("/api/v1/leads/L-1/move", headers=headers,
                               json={"tenant": "t1", "stageId": "ganho", "version": 1})
    assert response.status_code == 200
    moved = await ana.expect("lead:moved")
    assert moved["stageId"] == "ganho" and moved["by"] == "api:tests"
    response = await http.patch("/api/v1/leads/L-1", headers=headers,
                                json={"tenant": "t1", "version": 1,
                                      "changes": {"title": "x"}})
    assert response.status_code == 409
    body = await response.get_json()
    assert body["code"] == "conflict" and body["lead"]["version"] == 2
    response = await http.post("/api/v1/leads/L-1/assign", headers=headers,
                               json={"tenant": "t1", "ownerId": "ana"})
    assert (await ana.expect("lead:assigned"))["ownerId"] == "ana"
    response = await http.get("/api/v1/pipelines/default/stages/ganho/leads?tenant=t1",
                              headers=headers)
    assert [lead["id"] for lead in (await response.get_json())["leads"]] == ["L-1"]
    response = await http.get("/api/v1/leads/L-1/activity?tenant=t1", headers=headers)
    assert len((await response.get_json())["entries"]) == 3
    response = await http.post("/api/v1/leads", headers=headers,
                               json={"tenant": "t1", "id": "L-1", "title": "again"})
    assert response.status_code == 409
    response = await http.post("/api/v1/leads", headers=headers, json={"tenant": "t1"})
    assert response.status_code == 400 and (await response.get_json())["field"] == "title"
    response = await http.delete("/api/v1/leads/L-1?tenant=t1&version=x", headers=headers)
    assert response.status_code == 400
    response = await http.delete("/api/v1/leads/L-1?tenant=t1&actor=" + "x" * 300,
                                 headers=headers)
    assert response.status_code == 400 and (await response.get_json())["field"] == "actor"
    response = await http.delete("/api/v1/leads/L-1?tenant=t1", headers=headers)
    assert response.status_code == 204
    assert (await ana.expect("lead:deleted"))["leadId"] == "L-1"
    response = await http.get("/api/v1/leads/L-1?tenant=t1", headers=headers)
    assert response.status_code == 404
    response = await http.post("/api/v1/leads", json={"tenant": "t1", "title": "x"})
    assert response.status_code == 401


async def test_pipelines_created_over_http_have_their_own_boards(
        switchboard: Harness) -> None:
    http, headers = switchboard.http(), switchboard.api_headers()
    response = await http.post("/api/v1/pipelines", headers=headers, json={
        "tenant": "t1", "id": "b2b", "name": "B2B",
        "stages": [{"id": "lead", "name": "Lead"}, {"id": "deal", "name": "Deal"}]})
    assert response.status_code == 201
    again = await http.post("/api/v1/pipelines", headers=headers, json={
        "tenant": "t1", "id": "b2b", "name": "B2B", "stages": [{"id": "x", "name": "X"}]})
    assert again.status_code == 409
    empty = await http.post("/api/v1/pipelines", headers=headers, json={
        "tenant": "t1", "id": "b3", "name": "B3", "stages": []})
    assert empty.status_code == 400
    ana = await switchboard.connect(user="ana", role="agent")
    board = await ana.request("pipeline:join", {"pipelineId": "b2b"})
    assert [s["id"] for s in board["stages"]] == ["lead", "deal"]
    lead = await create(ana, "Big deal", pipelineId="b2b")
    assert lead["stageId"] == "lead"
    otto = await switchboard.connect(user="otto", tenant="t2", role="agent")
    with pytest.raises(ErrorReply) as foreign:
        await otto.request("pipeline:join", {"pipelineId": "b2b"})
    assert foreign.value.code == "not_found"


class Recorder:
    def __init__(self) -> None:
        self.changes: list[LeadChange] = []

    @hookimpl
    def switchboard_pipeline_lead_changed(self, change: LeadChange) -> None:
        self.changes.append(change)


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"recorder": Recorder()}


async def test_plugins_create_leads_in_process_and_hear_of_every_change(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    service = switchboard.app.service("pipeline")
    lead = await service.create_lead("t1", title="From WhatsApp", customer_id="+5511",
                                     actor="whatsapp")
    assert (await ana.expect("lead:created"))["by"] == "whatsapp"
    moved = await service.move_lead("t1", lead.id, "qualificacao", version=lead.version)
    assert moved.version == 2 and (await ana.expect("lead:moved"))["version"] == 2
    with pytest.raises(ClientError) as stale:
        await service.update_lead("t1", lead.id, {"title": "x"}, version=1)
    assert stale.value.code == "conflict" and stale.value.extra["lead"]["version"] == 2
    await ana.request("lead:assign", {"leadId": lead.id, "ownerId": "ana"})
    await switchboard.app.notifications_done()
    recorder: Recorder = switchboard.server.plugins.pm.get_plugin("recorder")
    assert [(c.action, c.actor, c.lead.version) for c in recorder.changes] == [
        ("created", "whatsapp", 1), ("moved", "system", 2), ("assigned", "ana", 3)]
    assert recorder.changes[1].changes["stageId"] == "qualificacao"
    chat = switchboard.app.service("chat")
    conversation = await chat.get_conversation("t1", lead.conversation_id)
    assert conversation is not None and conversation.participant("+5511") is not None
    assert conversation.participant("ana") is not None  # the owner joined it


@pytest.mark.parametrize("switchboard_config", [{"unknown_leads": "not_found"}],
                         indirect=True)
async def test_with_unknown_leads_not_found_an_unknown_lead_room_is_refused(
        switchboard: Harness) -> None:
    ana = await switchboard.connect(user="ana", role="agent")
    for room in ("lead:ghost", "pipeline:ghost"):
        with pytest.raises(ErrorReply) as refused:
            await ana.request("room:join", {"room": room})
        assert refused.value.code == "not_found"


async def test_by_default_an_unknown_lead_room_is_the_other_policies_call(
        switchboard: Harness) -> None:
    ana = await switchboard.connect(user="ana", role="agent")
    carla = await switchboard.connect(user="carla", role="customer")
    assert (await ana.request("room:join", {"room": "lead:ghost"}))["room"] == "lead:ghost"
    with pytest.raises(ErrorReply) as refused:
        await carla.request("room:join", {"room": "lead:ghost"})
    assert refused.value.code == "forbidden"


async def refuse_title(switchboard: Harness, title: str, column: str = "title") -> None:
    store = switchboard.server.store
    if store.dialect == "sqlite":
        await store.execute(sa.text(
            "CREATE TRIGGER refuse BEFORE UPDATE ON pipeline_leads "
            f"WHEN NEW.{column} = '{title}' BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    else:
        await store.execute(sa.text(
            f"ALTER TABLE pipeline_leads ADD CONSTRAINT refuse CHECK ({column} <> '{title}')"))


async def test_a_change_the_database_refuses_fails_alone_and_leaves_no_trace(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    first, second = await create(ana, "A"), await create(ana, "B")
    await refuse_title(switchboard, "boom")
    with pytest.raises(ErrorReply) as refused:
        await ana.request("lead:update", {"leadId": first["id"], "changes": {"title": "boom"}})
    assert refused.value.code == "internal_error"
    await ana.request("lead:update", {"leadId": second["id"], "changes": {"title": "ok"}})
    assert (await bia.expect("lead:updated"))["leadId"] == second["id"]  # only this one
    assert (await ana.request("lead:get", {"leadId": first["id"]}))["version"] == 1
    for lead, actions in ((first, ["created"]), (second, ["updated", "created"])):
        log = await ana.request("lead:activity", {"leadId": lead["id"]})
        assert [e["action"] for e in log["entries"]] == actions


async def test_a_move_the_database_refuses_fails_alone_and_the_next_ones_go_through(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    bia = await consultant(switchboard, "bia")
    first, second = await create(ana, "A"), await create(ana, "B")
    await refuse_title(switchboard, "perdido", column="stage_id")
    with pytest.raises(ErrorReply) as refused:
        await ana.request("lead:move", {"leadId": first["id"], "stageId": "perdido"})
    assert refused.value.code == "internal_error"
    moved = await ana.request("lead:move", {"leadId": second["id"], "stageId": "ganho"})
    assert moved["version"] == 2 and moved["stageId"] == "ganho"
    assert (await bia.expect("lead:moved"))["leadId"] == second["id"]  # only this one
    assert await column(ana, "novo") == ["A"] and await column(ana, "ganho") == ["B"]


T1_KEY = "key-of-tenant-t1"


@pytest.mark.parametrize("switchboard_config", [{"_config": {"api_keys": [
    {"key": TEST_API_KEY, "tenant": "*", "name": "tests"},
    {"key": T1_KEY, "tenant": "t1", "name": "crm-t1"}]}}], indirect=True)
async def test_a_tenants_api_key_reaches_only_its_tenants_leads(
        switchboard: Harness) -> None:
    http, everyone = switchboard.http(), switchboard.api_headers()
    t1 = switchboard.api_headers(T1_KEY)
    response = await http.post("/api/v1/leads", headers=everyone,
                               json={"tenant": "t2", "id": "L-2", "title": "t2's"})
    assert response.status_code == 201
    response = await http.post("/api/v1/leads", headers=t1, json={"title": "mine"})
    assert response.status_code == 201  # the key's tenant, implied
    assert (await response.get_json())["id"]
    for method, path, body in [
            ("post", "/api/v1/leads", {"tenant": "t2", "title": "x"}),
            ("get", "/api/v1/leads/L-2?tenant=t2", None),
            ("patch", "/api/v1/leads/L-2", {"tenant": "t2", "changes": {"title": "x"}}),
            ("post", "/api/v1/leads/L-2/move", {"tenant": "t2", "stageId": "ganho"}),
            ("delete", "/api/v1/leads/L-2?tenant=t2", None),
            ("get", "/api/v1/pipelines?tenant=t2", None)]:
        call = getattr(http, method)
        response = await (call(path, headers=t1, json=body) if body is not None
                          else call(path, headers=t1))
        assert response.status_code == 403, (method, path)
    # and without naming a tenant, t1's key does not see t2's lead
    response = await http.get("/api/v1/leads/L-2", headers=t1)
    assert response.status_code == 404
    response = await http.get("/api/v1/leads/L-2?tenant=t2", headers=everyone)
    assert (await response.get_json())["version"] == 1


@pytest.mark.parametrize("switchboard_config", [
    {"_config": {"rooms": {"public_patterns": ["lead:*"]}}}], indirect=True)
async def test_the_old_public_lead_rooms_workaround_no_longer_opens_a_lead_to_everyone(
        switchboard: Harness) -> None:
    ana = await consultant(switchboard, "ana")
    lead = await create(ana, "ACME", customerId="carla")
    carla = await switchboard.connect(user="carla", role="customer")
    dora = await switchboard.connect(user="dora", role="customer")
    assert await carla.request("room:join", {"room": f"lead:{lead['id']}"})
    with pytest.raises(ErrorReply) as refused:
        await dora.request("room:join", {"room": f"lead:{lead['id']}"})
    assert refused.value.code == "forbidden"
