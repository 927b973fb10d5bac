"""With the service desk on, a new WhatsApp contact's first message opens a
ticket in the configured queue (and only the first); without a queue
configured, or with a queue that does not exist, the message is taken in
all the same. SQLite, then PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from databases import database_url
from switchboard.core.config import Config
from switchboard.testing import Harness, make_config
from switchboard.whatsapp_simulator import Simulator
from whatsapps import CUSTOMER, TENANT, create_session, in_process, post_cloud, text_message


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield make_config({"store": {"url": url}, "plugins": {
            "desk": {"unknown_tickets": "not_found"},
            "whatsapp": {"graph_url": "http://graph.simulator", "ticket_queue": "whatsapp",
                         "bridge_hosts": ["127.0.0.1"]}}})


@pytest.fixture
def sim(switchboard: Harness, nursery: trio.Nursery) -> Simulator:
    simulator = Simulator()
    simulator.config.statuses = False
    in_process(switchboard, simulator, nursery)
    return simulator


async def test_a_new_contacts_first_message_opens_a_ticket_in_the_queue(
        switchboard: Harness, sim: Simulator) -> None:
    response = await switchboard.http().post(
        "/api/v1/queues", headers=switchboard.api_headers(),
        json={"tenant": TENANT, "id": "whatsapp", "name": "WhatsApp",
              "members": [{"userId": "ann"}]})
    assert response.status_code == 201, await response.get_json()
    await create_session(switchboard, sim)
    agent = await switchboard.connect("ann", TENANT, role="agent")
    await post_cloud(switchboard, sim, text_message("I need help", "wamid.T1", name="Ana"))
    created = await agent.expect("ticket:created")
    ticket = created["ticket"]
    assert (ticket["queueId"], ticket["customerId"], ticket["channel"]) == (
        "whatsapp", f"wa:{CUSTOMER}", "whatsapp")
    assert ticket["subject"] == "WhatsApp: Ana"
    assert ticket["tags"] == [f"whatsapp:main:{CUSTOMER}"]  # where to answer
    await post_cloud(switchboard, sim, text_message("hello?", "wamid.T2", name="Ana"))
    await agent.expect("whatsapp:message")
    await agent.expect("whatsapp:message")
    await agent.settle(1)
    assert agent.received("ticket:created") == []  # one ticket per new contact
    tickets = await switchboard.app.service("tickets").list(TENANT)
    assert len(tickets.tickets) == 1


async def test_without_the_queue_the_message_is_taken_in_all_the_same(
        switchboard: Harness, sim: Simulator) -> None:
    await create_session(switchboard, sim)  # (no queue "whatsapp" in this tenant)
    agent = await switchboard.connect("ann", TENANT, role="agent")
    response = await post_cloud(switchboard, sim, text_message("hi", "wamid.T3"))
    assert response.status_code == 200
    assert (await agent.expect("whatsapp:message"))["message"]["content"] == {"text": "hi"}
    assert (await switchboard.app.service("tickets").list(TENANT)).tickets == []
