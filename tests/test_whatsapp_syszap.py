"""Seed 003 unchanged: the sysZap frontend on the plain WebSocket with the
``syszap`` profile gets new_client, new_message (with Chat and Client),
client_update and session_status as its Fastify server sent them, emitted by
the whatsapp plugin itself; another company hears none of it."""

from __future__ import annotations

import pytest
import trio
from switchboard.core.config import Config
from switchboard.testing import Harness, make_config
from switchboard.whatsapp_simulator import Simulator
from whatsapps import CUSTOMER, TENANT, create_session, in_process, post_bridge, post_cloud


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"server": {"ws_profile": "syszap"},
                        "plugins": {"whatsapp": {"graph_url": "http://graph.simulator",
                                                 "bridge_hosts": ["127.0.0.1"]}}})


@pytest.fixture
def sim(switchboard: Harness, nursery: trio.Nursery) -> Simulator:
    simulator = Simulator()
    simulator.config.statuses = False
    in_process(switchboard, simulator, nursery)
    return simulator


async def test_a_new_customer_and_their_messages_in_syszap_shapes(switchboard: Harness,
                                                                  sim: Simulator) -> None:
    await create_session(switchboard, sim)
    frontend = await switchboard.connect("u1", TENANT, role="agent")
    other_company = await switchboard.connect("u9", "globex", role="agent")
    await post_cloud(switchboard, sim, {
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": CUSTOMER}],
        "messages": [{"from": CUSTOMER, "id": "wamid.S1", "timestamp": "1700000000",
                      "type": "text", "text": {"body": "Olá!"}}]})
    client = await frontend.expect("new_client")
    assert client["Name"] == "Ana" and client["WhatsApp_Number"] == CUSTOMER
    assert client["Company_Id"] == TENANT and client["Profile_Pic_URL"] is None
    message = await frontend.expect("new_message")
    assert message["Body"] == "Olá!" and message["Direction"] == 0 and message["Type"] == 0
    assert message["Chat"] == {"WA_Chat_Id": f"{CUSTOMER}@c.us"}
    assert message["Client"] == {"Name": "Ana", "WhatsApp_Number": CUSTOMER}
    assert message["Chat_Id"] == f"whatsapp:main:{CUSTOMER}"
    await switchboard.app.service("chat").post_message(
        TENANT, f"whatsapp:main:{CUSTOMER}", sender_id="u1", sender_role="agent",
        content={"text": "Bom dia!"})
    reply = await frontend.expect("new_message")
    assert (reply["Direction"], reply["Body"]) == (1, "Bom dia!")
    await post_cloud(switchboard, sim, {
        "contacts": [{"profile": {"name": "Ana Paula"}, "wa_id": CUSTOMER}],
        "messages": [{"from": CUSTOMER, "id": "wamid.S2", "timestamp": "1700000001",
                      "type": "text", "text": {"body": "Mudei meu nome"}}]})
    update = await frontend.expect("client_update")
    assert update["Name"] == "Ana Paula" and "Last_Contact_At" in update
    await other_company.settle(1)
    assert not [f for f in other_company.frames
                if f.get("type") in ("new_client", "new_message", "client_update")]


async def test_session_status_in_syszap_states(switchboard: Harness, sim: Simulator) -> None:
    await create_session(switchboard, sim, "phone", "bridge")
    frontend = await switchboard.connect("u1", TENANT, role="agent")
    await post_bridge(switchboard, sim, "connection.update",
                      {"state": "open", "statusReason": 200})
    status = await frontend.expect("session_status")
    assert (status["sessionId"], status["status"]) == ("phone", "connected")
    assert status["timestamp"].startswith("20")
    await post_bridge(switchboard, sim, "connection.update",
                      {"state": "close", "statusReason": 401})
    status = await frontend.expect("session_status")
    assert status["status"] == "disconnected"  # logged out, in sysZap's four states
