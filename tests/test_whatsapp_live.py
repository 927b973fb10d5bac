"""The whatsapp plugin end to end over real HTTP, against the provider
simulator on 127.0.0.1: webhooks to the agents' sockets, replies to the
simulated Graph API, a provider that fails or goes down, the QR flow seen by
a sysZap frontend. SQLite, then PostgreSQL."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from databases import database_down, database_url
from switchboard.core import ChatParticipant
from switchboard.core.config import Config
from switchboard.testing import Harness, make_config
from switchboard.whatsapp_simulator import Simulator
from trio_websocket import open_websocket_url
from whatsapps import (  # noqa: F401  (the simulator fixture)
    CUSTOMER,
    TENANT,
    create_session,
    simulator,
    webhook_url,
)

CONVERSATION = f"whatsapp:main:{CUSTOMER}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path,
                             simulator: Simulator) -> AsyncIterator[Config]:  # noqa: F811
    with database_url(request.param, tmp_path, tables=True) as url:
        yield make_config({
            "store": {"url": url, "busy_timeout": 0.5},
            "server": {"ws_profile": "syszap"} if "syszap" in request.node.name else {},
            "plugins": {"whatsapp": {"graph_url": simulator.base_url, "retry_first": 0.05,
                                     "bridge_hosts": ["127.0.0.1"],
                                     "retry_longest": 0.2, "max_attempts": 20,
                                     "qr_lifetime": 30.0, "rate_per_number": 20.0}}})


@pytest.fixture
async def cloud(switchboard_live: Harness, simulator: Simulator) -> Harness:  # noqa: F811
    """A Cloud API session ``main`` of tenant acme, started, wired to the simulator."""
    await create_session(switchboard_live, simulator)
    response = await switchboard_live.http().post(
        "/api/v1/whatsapp/sessions/main/start", headers=switchboard_live.api_headers(),
        json={"tenant": TENANT})
    assert (await response.get_json())["status"] == "connected"
    simulator.config.cloud_webhook = webhook_url(switchboard_live)
    return switchboard_live


async def test_a_customer_message_reaches_the_agents_socket(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    agent = await cloud.connect("ann", TENANT, role="agent")
    answer = await simulator.customer_writes(CUSTOMER, "Hello, is my order shipped?")
    assert answer.status_code == 200
    announced = await agent.expect("whatsapp:message")
    assert announced["direction"] == "in"
    assert announced["message"]["content"] == {"text": "Hello, is my order shipped?"}
    assert announced["message"]["conversationId"] == CONVERSATION
    assert announced["contact"]["name"] == "Ana"
    await agent.request("conversation:join", {"conversationId": CONVERSATION})
    await simulator.customer_writes(CUSTOMER, "Still there?")
    new = await agent.expect("message:new")
    assert (new["senderId"], new["senderRole"], new["content"]) == (
        f"wa:{CUSTOMER}", "customer", {"text": "Still there?"})


async def test_an_agent_reply_is_the_exact_graph_api_request_and_its_statuses_follow(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    agent = await cloud.connect("ann", TENANT, role="agent")
    await simulator.customer_writes(CUSTOMER, "Hi")
    await agent.expect("whatsapp:message")
    await agent.request("conversation:join", {"conversationId": CONVERSATION})
    sent = await agent.request("message:send", {"conversationId": CONVERSATION,
                                                "content": {"text": "Yes, it left today."}})
    accepted = await agent.expect("message:status")
    delivered = await agent.expect("message:status")  # (the provider's "sent" moved nothing)
    assert [accepted["status"], delivered["status"]] == ["sent", "delivered"]
    assert accepted["messageId"] == delivered["messageId"] == sent["id"]
    assert delivered["userId"] == f"wa:{CUSTOMER}"
    history = await agent.request("message:history", {"conversationId": CONVERSATION})
    assert history["messages"][-1]["status"] == "delivered"  # the contact's watermark
    [request] = simulator.accepted
    assert request.path == f"/v21.0/{simulator.config.phone_number_id}/messages"
    assert request.headers["Authorization"] == f"Bearer {simulator.config.access_token}"
    assert request.json == {"messaging_product": "whatsapp", "recipient_type": "individual",
                            "to": CUSTOMER, "type": "text",
                            "text": {"preview_url": False, "body": "Yes, it left today."}}


async def test_a_forged_signature_is_refused_and_nothing_is_stored(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    answer = await simulator.cloud_webhook(
        {"contacts": [{"profile": {"name": "Eve"}, "wa_id": CUSTOMER}],
         "messages": [{"from": CUSTOMER, "id": "wamid.forged", "timestamp": "1",
                       "type": "text", "text": {"body": "forged"}}]}, secret="not-the-secret")
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    chat = cloud.app.service("chat")
    assert await chat.get_conversation(TENANT, CONVERSATION) is None


async def test_a_provider_that_fails_then_goes_down_gets_the_message_once(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    agent = await cloud.connect("ann", TENANT, role="agent")
    await simulator.customer_writes(CUSTOMER, "Hi")
    await agent.expect("whatsapp:message")
    await agent.request("conversation:join", {"conversationId": CONVERSATION})
    simulator.fail_next(500)
    simulator.fail_next(429)
    await simulator.down()
    await agent.request("message:send", {"conversationId": CONVERSATION,
                                         "content": {"text": "Sorry for the wait"}})
    await trio.sleep(0.5)  # (real time: the sender meets a closed port meanwhile)
    assert simulator.requests == []
    await simulator.up()
    status = await agent.expect("message:status", timeout=20)
    assert status["status"] == "sent"
    assert [r.status for r in simulator.requests] == [500, 429, 200]
    await trio.sleep(0.5)
    assert len(simulator.accepted) == 1


async def test_a_permanent_refusal_marks_the_message_failed_with_the_reason(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    agent = await cloud.connect("ann", TENANT, role="agent")
    await simulator.customer_writes(CUSTOMER, "Hi")
    await agent.expect("whatsapp:message")
    await agent.request("conversation:join", {"conversationId": CONVERSATION})
    simulator.config.access_token = "rotated-elsewhere"  # ours is no longer valid
    sent = await agent.request("message:send", {"conversationId": CONVERSATION,
                                                "content": {"text": "hello?"}})
    status = await agent.expect("message:status")
    assert status["status"] == "failed" and "(190)" in status["error"]
    response = await cloud.http().get(f"/api/v1/whatsapp/messages/{sent['id']}?tenant={TENANT}",
                                      headers=cloud.api_headers())
    delivery = await response.get_json()
    assert (delivery["status"], delivery["attempts"]) == ("failed", 1)


async def test_syszap_frontend_sees_the_qr_flow_from_qr_to_connected(
        switchboard_live: Harness, simulator: Simulator) -> None:  # noqa: F811
    await create_session(switchboard_live, simulator, "phone", "bridge")
    simulator.config.bridge_webhook = webhook_url(switchboard_live, "phone")
    token = switchboard_live.token("admin1", TENANT, role="admin")
    async with open_websocket_url(switchboard_live.ws_url(token)) as ws:
        assert json.loads(await ws.get_message())["type"] == "session"
        await ws.send_message(json.dumps({"type": "whatsapp:session:start",
                                          "data": {"sessionId": "phone"}, "id": 1}))
        seen: list[dict[str, object]] = []
        with trio.fail_after(10):
            while len([f for f in seen if f["type"] == "qr_code"]) < 2:
                seen.append(json.loads(await ws.get_message()))
            await simulator.scan()
            while not any(f["type"] == "session_status" and f["data"]["status"] == "connected"
                          for f in seen if isinstance(f["data"], dict)):
                seen.append(json.loads(await ws.get_message()))
    kinds = [(f["type"], f["data"].get("status") if isinstance(f["data"], dict) else None)
             for f in seen if f["type"] in ("qr_code", "session_status")]
    assert kinds[0] == ("session_status", "connecting")
    assert ("session_status", "qr") in kinds
    assert kinds[-1] == ("session_status", "connected")
    codes = [f["data"] for f in seen if f["type"] == "qr_code"]
    assert all(c["sessionId"] == "phone" and c["qrCode"].startswith("data:image/png;base64,")
               for c in codes)
    assert codes[0]["qrCode"] != codes[1]["qrCode"]  # the bridge rotated it


async def test_pending_sends_survive_a_restart_and_an_outage_and_go_once_in_order(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    simulator.config.statuses = False
    chat = cloud.app.service("chat")
    await chat.get_or_create_conversation(TENANT, CONVERSATION, participants=[
        ChatParticipant(f"wa:{CUSTOMER}", "customer")])
    simulator.fail_next(503, 10_000)  # the provider is down for now
    for n in range(3):
        await chat.post_message(TENANT, CONVERSATION, sender_id="ann", sender_role="agent",
                                content={"text": f"reply {n}"})
    with trio.fail_after(10):
        await simulator.wait_requests(3)
    assert {r.json["text"]["body"] for r in simulator.requests} == {"reply 0"}  # in order
    await cloud.restart()
    simulator.requests.clear()
    simulator._failures.clear()  # the provider is back
    with trio.fail_after(10):
        await simulator.wait_requests(3, accepted=True)
    await trio.sleep(0.5)
    assert [r.json["text"]["body"] for r in simulator.requests] == [
        "reply 0", "reply 1", "reply 2"]  # each once


async def test_sends_are_spaced_by_the_rate_per_number(cloud: Harness,
                                                       simulator: Simulator) -> None:  # noqa: F811
    simulator.config.statuses = False
    chat = cloud.app.service("chat")
    await chat.get_or_create_conversation(TENANT, CONVERSATION, participants=[
        ChatParticipant(f"wa:{CUSTOMER}", "customer")])
    for n in range(4):
        await chat.post_message(TENANT, CONVERSATION, sender_id="ann", sender_role="agent",
                                content={"text": f"m{n}"})
    with trio.fail_after(10):
        await simulator.wait_requests(4, accepted=True)
    times = [r.at for r in simulator.accepted]
    assert all(later - earlier >= 0.045 for earlier, later in itertools.pairwise(times))


async def test_a_reply_stored_just_before_a_stop_is_sent_after_the_restart(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    simulator.config.statuses = False
    await simulator.customer_writes(CUSTOMER, "Hi")
    plugin = cloud.server.plugins.pm.get_plugin("whatsapp")

    async def stopped_before_queueing(message: object, *, wake: bool = True) -> None:
        return None

    plugin.engine.message_stored = stopped_before_queueing
    chat = cloud.app.service("chat")
    await chat.post_message(TENANT, CONVERSATION, sender_id="ann", sender_role="agent",
                            content={"text": "cut off by the deploy"})
    await cloud.restart()
    with trio.fail_after(10):
        [request] = await simulator.wait_requests(1, accepted=True)
    assert request.json["text"]["body"] == "cut off by the deploy"
    await cloud.restart()  # nothing is sent twice
    await trio.sleep(0.5)
    assert len(simulator.requests) == 1


async def test_a_bridge_session_carries_messages_both_ways(
        switchboard_live: Harness, simulator: Simulator) -> None:  # noqa: F811
    await create_session(switchboard_live, simulator, "phone", "bridge")
    simulator.config.bridge_webhook = webhook_url(switchboard_live, "phone")
    agent = await switchboard_live.connect("ann", TENANT, role="agent")
    jid = f"{CUSTOMER}@s.whatsapp.net"
    answer = await simulator.bridge_event("messages.upsert", {
        "key": {"remoteJid": jid, "fromMe": False, "id": "3EB0C0FFEE"}, "pushName": "Ana",
        "message": {"imageMessage": {"url": "https://mmg.example/a.jpg",
                                     "mimetype": "image/jpeg", "caption": "my receipt"}},
        "messageType": "imageMessage", "messageTimestamp": 1700000000})
    assert answer.status_code == 200
    announced = await agent.expect("whatsapp:message")
    conversation = f"whatsapp:phone:{CUSTOMER}"
    assert announced["message"]["type"] == "image"
    assert announced["message"]["content"] == {"url": "https://mmg.example/a.jpg",
                                               "mimeType": "image/jpeg",
                                               "caption": "my receipt"}
    await agent.request("conversation:join", {"conversationId": conversation})
    sent = await agent.request("message:send", {
        "conversationId": conversation, "type": "document",
        "content": {"url": "https://files.example/invoice.pdf", "fileName": "invoice.pdf",
                    "mimeType": "application/pdf"}})
    status = await agent.expect("message:status")
    assert (status["status"], status["messageId"]) == ("sent", sent["id"])
    [request] = simulator.accepted
    assert request.path == f"/message/sendMedia/{simulator.config.instance}"
    assert request.headers["Apikey"] == simulator.config.bridge_api_key
    assert request.json == {"number": CUSTOMER, "mediatype": "document",
                            "media": "https://files.example/invoice.pdf",
                            "fileName": "invoice.pdf", "mimetype": "application/pdf"}
    plugin = switchboard_live.server.plugins.pm.get_plugin("whatsapp")
    delivery = await plugin.engine.delivery(TENANT, sent["id"])
    await simulator.bridge_event("messages.update", {
        "keyId": delivery["providerMessageId"], "remoteJid": jid, "fromMe": True,
        "status": "READ"})
    read = await agent.expect("message:status")
    assert (read["status"], read["messageId"]) == ("read", sent["id"])


async def test_a_store_outage_while_sending_loses_and_repeats_nothing(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    simulator.config.statuses = False
    await simulator.customer_writes(CUSTOMER, "Hi")
    simulator.fail_next(503, 10_000)
    message = await cloud.app.service("chat").post_message(
        TENANT, CONVERSATION, sender_id="ann", sender_role="agent",
        content={"text": "through it all"})
    with trio.fail_after(10):
        await simulator.wait_requests(1)
    with database_down(cloud.config.store.url):
        simulator._failures.clear()  # the provider is back, the store is not
        await trio.sleep(1.5)
        assert simulator.accepted == []  # nothing is sent that cannot be recorded
    with trio.fail_after(20):
        await simulator.wait_requests(1, accepted=True)
    await trio.sleep(1)
    assert len(simulator.accepted) == 1
    plugin = cloud.server.plugins.pm.get_plugin("whatsapp")
    assert (await plugin.engine.delivery(TENANT, message.id))["status"] == "sent"


async def test_a_status_that_beats_the_send_answer_is_not_lost(
        cloud: Harness, simulator: Simulator) -> None:  # noqa: F811
    simulator.config.statuses_first = True  # delivered arrives before the send's answer
    agent = await cloud.connect("ann", TENANT, role="agent")
    await simulator.customer_writes(CUSTOMER, "Hi")
    await agent.expect("whatsapp:message")
    await agent.request("conversation:join", {"conversationId": CONVERSATION})
    sent = await agent.request("message:send", {"conversationId": CONVERSATION,
                                                "content": {"text": "quick!"}})
    accepted = await agent.expect("message:status")
    delivered = await agent.expect("message:status")
    assert [accepted["status"], delivered["status"]] == ["sent", "delivered"]
    assert delivered["messageId"] == sent["id"]
