"""The whatsapp plugin on the mock clock: webhooks delivered twice, QR codes
that expire, session commands and their errors, tenant isolation, bad input,
an outbox that outlives a restart and a provider outage. The plugin reaches
the provider simulator's app in-process. SQLite, then PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio
from databases import database_url
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, ErrorReply, Harness, make_config
from switchboard.whatsapp_simulator import Simulator
from switchboard.whatsapp_simulator.server import sign
from whatsapps import (
    CUSTOMER,
    TENANT,
    create_session,
    in_process,
    post_bridge,
    post_cloud,
    text_message,
)

CONVERSATION = f"whatsapp:main:{CUSTOMER}"


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield make_config({
            "store": {"url": url},
            "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"},
                         {"key": "globex-only-key-0123", "tenant": "globex"}],
            "plugins": {"whatsapp": {"graph_url": "http://graph.simulator", "qr_lifetime": 40.0,
                                     "bridge_hosts": ["127.0.0.1"],
                                     "retry_first": 2.0, "retry_longest": 60.0,
                                     "max_attempts": 20, "rate_per_number": 2.0,
                                     "max_media_bytes": 1000}}})


@pytest.fixture
def sim(switchboard: Harness, nursery: trio.Nursery) -> Simulator:
    simulator = Simulator()
    in_process(switchboard, simulator, nursery)
    simulator.config.statuses = False
    return simulator


def headers(key: str = TEST_API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_webhook_delivered_twice_stores_one_message(switchboard: Harness,
                                                           sim: Simulator) -> None:
    await create_session(switchboard, sim)
    agent = await switchboard.connect("ann", TENANT, role="agent")
    for _ in range(2):
        response = await post_cloud(switchboard, sim, text_message("once", "wamid.A1"))
        assert response.status_code == 200
    await agent.expect("whatsapp:message")
    history = await switchboard.app.service("chat").history(TENANT, CONVERSATION)
    assert [m.content for m in history.messages] == [{"text": "once"}]
    await agent.settle(1)
    assert agent.received("whatsapp:message") == []  # not a second time


async def test_every_common_message_type_is_stored(switchboard: Harness,
                                                   sim: Simulator) -> None:
    await create_session(switchboard, sim)
    kinds = [
        {"type": "image", "image": {"id": "991", "mime_type": "image/jpeg", "caption": "look"}},
        {"type": "document", "document": {"id": "992", "mime_type": "application/pdf",
                                          "filename": "bill.pdf"}},
        {"type": "audio", "audio": {"id": "993", "mime_type": "audio/ogg; codecs=opus"}},
        {"type": "video", "video": {"id": "994", "mime_type": "video/mp4"}},
        {"type": "location", "location": {"latitude": -23.5, "longitude": -46.6,
                                          "name": "Shop"}},
        {"type": "contacts", "contacts": [{"name": {"formatted_name": "Bob"},
                                           "phones": [{"phone": "+1 555"}]}]},
        {"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {
            "id": "yes", "title": "Yes please"}}},
    ]
    messages = [{"from": CUSTOMER, "id": f"wamid.K{n}", "timestamp": "1", **kind}
                for n, kind in enumerate(kinds)]
    response = await post_cloud(switchboard, sim, {
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": CUSTOMER}], "messages": messages})
    assert (await response.get_json()) == {"received": 7}
    history = await switchboard.app.service("chat").history(TENANT, CONVERSATION)
    stored = [(m.type, m.content) for m in history.messages]
    assert stored[0] == ("image", {"url": "http://graph.simulator/v21.0/991",
                                   "mimeType": "image/jpeg", "caption": "look"})
    assert stored[1] == ("document", {"url": "http://graph.simulator/v21.0/992",
                                      "mimeType": "application/pdf", "fileName": "bill.pdf"})
    assert [t for t, _ in stored[2:4]] == ["audio", "video"]
    assert stored[4][1]["text"].startswith("Location: Shop")
    assert stored[5][1] == {"text": "Contact: Bob +1 555"}
    assert stored[6][1] == {"text": "Yes please"}


async def test_contact_name_and_picture_changes_are_announced(switchboard: Harness,
                                                              sim: Simulator) -> None:
    await create_session(switchboard, sim, "phone", "bridge")
    agent = await switchboard.connect("ann", TENANT, role="agent")
    jid = f"{CUSTOMER}@s.whatsapp.net"
    message = {"key": {"remoteJid": jid, "fromMe": False, "id": "3EB0A"}, "pushName": "Ana",
               "message": {"conversation": "oi"}, "messageType": "conversation"}
    assert (await post_bridge(switchboard, sim, "messages.upsert", message)).status_code == 200
    created = await agent.expect("whatsapp:contact")
    assert (created["created"], created["name"]) == (True, "Ana")
    await post_bridge(switchboard, sim, "contacts.update", [{
        "remoteJid": jid, "pushName": "Ana Maria", "profilePicUrl": "https://pps.example/a.jpg"}])
    changed = await agent.expect("whatsapp:contact")
    assert (changed["created"], changed["name"], changed["picture"]) == (
        False, "Ana Maria", "https://pps.example/a.jpg")
    await post_bridge(switchboard, sim, "contacts.update", [{"remoteJid": jid,
                                                             "pushName": "Ana Maria"}])
    await agent.settle(1)
    assert agent.received("whatsapp:contact") == []  # nothing changed the third time


async def test_a_bridge_webhook_without_the_key_is_refused(switchboard: Harness,
                                                           sim: Simulator) -> None:
    await create_session(switchboard, sim, "phone", "bridge")
    response = await post_bridge(switchboard, sim, "qrcode.updated",
                                 {"qrcode": {"code": "2@x"}}, key="wrong")
    assert response.status_code == 401
    response = await switchboard.http().get(f"/api/v1/whatsapp/sessions/phone?tenant={TENANT}",
                                            headers=headers())
    assert (await response.get_json())["status"] == "disconnected"


async def test_the_qr_code_expires_after_its_lifetime_unless_rotated(
        switchboard: Harness, sim: Simulator) -> None:
    await create_session(switchboard, sim, "phone", "bridge")
    agent = await switchboard.connect("ann", TENANT, role="agent")
    await post_bridge(switchboard, sim, "qrcode.updated", {"qrcode": {"code": "2@first"}})
    first = await agent.expect("whatsapp:qr")
    assert first["qr"] == "2@first"
    assert first["svg"].startswith("data:image/svg+xml")
    assert first["png"].startswith("data:image/png;base64,")
    await trio.sleep(30)
    await post_bridge(switchboard, sim, "QRCODE_UPDATED", {"qrcode": {"code": "2@second"}})
    assert (await agent.expect("whatsapp:qr"))["qr"] == "2@second"
    await trio.sleep(30)  # the first one's lifetime is over, the second's is not
    assert agent.received("whatsapp:qr_expired") == []
    expired = await agent.expect("whatsapp:qr_expired", timeout=20)
    assert expired["sessionId"] == "phone"
    response = await switchboard.http().get(f"/api/v1/whatsapp/sessions/phone?tenant={TENANT}",
                                            headers=headers())
    assert (await response.get_json())["qr"] is None


async def test_session_commands_over_sockets_are_for_admin_roles(switchboard: Harness,
                                                                 sim: Simulator) -> None:
    agent = await switchboard.connect("ann", TENANT, role="agent")
    await create_session(switchboard, sim, "phone", "bridge")
    created = await agent.expect("whatsapp:session")
    assert (created["sessionId"], created["status"]) == ("phone", "disconnected")
    with pytest.raises(ErrorReply) as refused:
        await agent.request("whatsapp:session:start", {"sessionId": "phone"})
    assert refused.value.data["code"] == "forbidden"
    admin = await switchboard.connect("boss", TENANT, role="admin")
    started = await admin.request("whatsapp:session:start", {"sessionId": "phone"})
    assert started["status"] == "qr" and started["qr"]["qr"] == sim.qr_codes[0]
    with pytest.raises(ErrorReply) as again:
        await admin.request("whatsapp:session:start", {"sessionId": "phone"})
    assert (again.value.data["code"], again.value.data["state"]) == ("conflict", "qr")
    with pytest.raises(ErrorReply) as unknown:
        await admin.request("whatsapp:session:logout", {"sessionId": "nope"})
    assert unknown.value.data["code"] == "not_found"
    with pytest.raises(ErrorReply) as bad:
        await admin.request("whatsapp:session:start", {"sessionId": "no spaces"})
    assert (bad.value.data["code"], bad.value.data["field"]) == ("invalid_payload", "sessionId")
    logged_out = await admin.request("whatsapp:session:logout", {"sessionId": "phone"})
    assert logged_out["status"] == "logged_out"
    await admin.request("whatsapp:session:delete", {"sessionId": "phone"})
    assert (await agent.request("whatsapp:sessions"))["sessions"] == []


async def test_another_tenant_sees_and_changes_nothing(switchboard: Harness,
                                                       sim: Simulator) -> None:
    await _conversation_with_customer(switchboard, sim)
    http = switchboard.http()
    globex = headers("globex-only-key-0123")
    listed = await http.get("/api/v1/whatsapp/sessions", headers=globex)
    assert (await listed.get_json()) == {"sessions": []}
    for method, path in (("get", "/api/v1/whatsapp/sessions/main"),
                         ("post", "/api/v1/whatsapp/sessions/main/start"),
                         ("delete", "/api/v1/whatsapp/sessions/main")):
        response = await getattr(http, method)(path, headers=globex)
        assert response.status_code == 404, path
        response = await getattr(http, method)(f"{path}?tenant={TENANT}", headers=globex)
        assert response.status_code == 403, path
    # acme's webhook, posted to globex's path, finds no session there
    response = await post_cloud(switchboard, sim, text_message("hi", "wamid.X"),
                                tenant="globex")
    assert response.status_code == 404
    message = await switchboard.app.service("chat").post_message(
        TENANT, CONVERSATION, sender_id="ann", sender_role="agent", content={"text": "x"})
    with trio.fail_after(60):
        await sim.wait_requests(1)
    mine = await http.get(f"/api/v1/whatsapp/messages/{message.id}?tenant={TENANT}",
                          headers=headers())
    assert mine.status_code == 200
    theirs = await http.get(f"/api/v1/whatsapp/messages/{message.id}", headers=globex)
    assert theirs.status_code == 404
    spy = await switchboard.connect("eve", "globex", role="admin")
    with pytest.raises(ErrorReply) as refused:
        await spy.request("whatsapp:session:logout", {"sessionId": "main"})
    assert refused.value.data["code"] == "not_found"
    assert (await spy.request("whatsapp:sessions"))["sessions"] == []


async def test_bad_session_bodies_name_the_field(switchboard: Harness, sim: Simulator) -> None:
    http = switchboard.http()
    for body, field in (
        ({"tenant": TENANT, "id": "a b", "provider": "cloud"}, "id"),
        ({"tenant": TENANT, "id": "x", "provider": "telegram"}, "provider"),
        ({"tenant": TENANT, "id": "x", "provider": "cloud"}, "cloud"),
        ({"tenant": TENANT, "id": "x", "provider": "cloud", "cloud": {
            "phoneNumberId": "12a", "accessToken": "t", "appSecret": "s",
            "verifyToken": "v"}}, "cloud.phoneNumberId"),
        ({"tenant": TENANT, "id": "x", "provider": "bridge", "bridge": {
            "url": "ftp://bridge", "apiKey": "k", "instance": "i"}}, "bridge.url"),
    ):
        response = await http.post("/api/v1/whatsapp/sessions", headers=headers(), json=body)
        answer = await response.get_json()
        assert (response.status_code, answer["code"], answer["field"]) == (
            400, "invalid_payload", field), body
    await create_session(switchboard, sim)
    again = await http.post("/api/v1/whatsapp/sessions", headers=headers(), json={
        "tenant": TENANT, "id": "main", "provider": "bridge", "bridge": {
            "url": "http://b", "apiKey": "k", "instance": "i"}})
    assert again.status_code == 409
    assert (await again.get_json())["state"] == "disconnected"
    for junk in (b"not json", b"[1, 2]", b'{"entry": [{"changes": "x"}]}'):
        response = await http.post(f"/api/v1/whatsapp/webhooks/{TENANT}/main", data=junk,
                                   headers={"X-Hub-Signature-256": "sha256=00"})
        assert response.status_code == 401


async def test_the_cloud_verification_handshake(switchboard: Harness, sim: Simulator) -> None:
    await create_session(switchboard, sim)
    http = switchboard.http()
    path = f"/api/v1/whatsapp/webhooks/{TENANT}/main"
    ok = await http.get(f"{path}?hub.mode=subscribe&hub.verify_token=verify-me"
                        "&hub.challenge=1158201444")
    assert (ok.status_code, await ok.get_data(as_text=True)) == (200, "1158201444")
    wrong = await http.get(f"{path}?hub.mode=subscribe&hub.verify_token=guess"
                           "&hub.challenge=1158201444")
    assert wrong.status_code == 403


async def test_signed_junk_is_taken_without_harm(switchboard: Harness, sim: Simulator) -> None:
    await create_session(switchboard, sim)
    for value in (
        {"messages": "not a list", "statuses": [None, 1, {"id": 5, "status": "read"}]},
        {"messages": [{"from": "not digits", "id": "wamid.1", "type": "text"},
                      {"from": CUSTOMER, "id": None, "type": "text"},
                      {"from": CUSTOMER, "id": "wamid.2", "type": "image",
                       "image": {"id": "../../etc"}},
                      {"from": CUSTOMER, "id": "wamid.3", "type": "text",
                       "text": {"body": "\x00" * 10 + "x" * 10_000}},
                      {"from": CUSTOMER, "id": "wamid.4", "type": ["weird"]}]},
        {"contacts": [{"wa_id": {"x": 1}}], "statuses": [{"id": "wamid.unknown",
                                                          "status": "failed"}]},
    ):
        response = await post_cloud(switchboard, sim, value)
        assert response.status_code == 200, await response.get_data()
    history = await switchboard.app.service("chat").history(TENANT, CONVERSATION)
    contents = [m.content for m in history.messages]
    assert contents[0] == {"text": "(image)"}  # a media id that is no id
    assert len(contents[1]["text"]) == 4096 and "\x00" not in contents[1]["text"]
    assert len(contents) == 2


async def _conversation_with_customer(switchboard: Harness, sim: Simulator) -> None:
    await create_session(switchboard, sim)
    response = await post_cloud(switchboard, sim, text_message("hi", "wamid.first"))
    assert response.status_code == 200


async def _reply(switchboard: Harness, text: str) -> int:
    message = await switchboard.app.service("chat").post_message(
        TENANT, CONVERSATION, sender_id="ann", sender_role="agent", content={"text": text})
    return message.id


async def test_failed_sends_back_off_doubling_on_the_server_clock(switchboard: Harness,
                                                                  sim: Simulator) -> None:
    await _conversation_with_customer(switchboard, sim)
    sim.fail_next(500, 3)
    await _reply(switchboard, "patience")
    with trio.fail_after(60):
        requests = await sim.wait_requests(4)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    assert [r.status for r in requests] == [500, 500, 500, 200]
    assert gaps == pytest.approx([2.0, 4.0, 8.0], abs=0.01)  # retry_first 2 s, doubling


async def test_a_retry_after_is_honoured(switchboard: Harness, sim: Simulator) -> None:
    await _conversation_with_customer(switchboard, sim)
    sim.fail_next(429)
    sim.retry_after = 30
    await _reply(switchboard, "later")
    with trio.fail_after(60):
        first, second = await sim.wait_requests(2)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at == pytest.approx(30.0, abs=0.01)


async def test_a_send_that_keeps_failing_is_failed_with_the_reason(switchboard: Harness,
                                                                   sim: Simulator) -> None:
    await _conversation_with_customer(switchboard, sim)
    agent = await switchboard.connect("ann", TENANT, role="agent")
    await agent.request("conversation:join", {"conversationId": CONVERSATION})
    sim.fail_next(503, 100)
    message_id = await _reply(switchboard, "never")
    status = await agent.expect("message:status", timeout=3600)
    assert (status["status"], status["messageId"]) == ("failed", message_id)
    assert "(131000) Something went wrong (HTTP 503)" in status["error"]
    assert len(sim.requests) == 20  # max_attempts
    delivery = await switchboard.http().get(
        f"/api/v1/whatsapp/messages/{message_id}?tenant={TENANT}", headers=headers())
    assert (await delivery.get_json())["attempts"] == 20


async def test_sends_of_one_number_keep_their_order_and_rate(switchboard: Harness,
                                                             sim: Simulator) -> None:
    await _conversation_with_customer(switchboard, sim)
    sim.fail_next(500)
    for n in range(4):
        await _reply(switchboard, f"m{n}")
    with trio.fail_after(60):
        accepted = await sim.wait_requests(4, accepted=True)
    assert [r.json["text"]["body"] for r in accepted] == ["m0", "m1", "m2", "m3"]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(accepted)]
    assert min(gaps) >= 0.5 - 0.001  # rate_per_number = 2


async def test_http_commands_restart_and_an_unreachable_bridge(switchboard: Harness,
                                                               sim: Simulator) -> None:
    await create_session(switchboard, sim, "phone", "bridge")
    http = switchboard.http()
    path = "/api/v1/whatsapp/sessions/phone"
    started = await http.post(f"{path}/start", headers=headers(), json={"tenant": TENANT})
    assert (await started.get_json())["status"] == "qr"
    restarted = await http.post(f"{path}/restart?tenant={TENANT}", headers=headers())
    assert (await restarted.get_json())["status"] == "connecting"
    unknown = await http.post(f"{path}/explode?tenant={TENANT}", headers=headers())
    assert unknown.status_code == 404
    sim.config.bridge_api_key = "rotated"  # the bridge refuses us now
    refused = await http.post(f"{path}/logout?tenant={TENANT}", headers=headers())
    body = await refused.get_json()
    assert (refused.status_code, body["code"]) == (502, "provider_unavailable")
    shown = await http.get(f"{path}?tenant={TENANT}", headers=headers())
    assert (await shown.get_json())["status"] == "disconnected"
    deleted = await http.delete(f"{path}?tenant={TENANT}", headers=headers())
    assert deleted.status_code == 204  # deleting does not wait for the bridge
    gone = await http.get(f"{path}?tenant={TENANT}", headers=headers())
    assert gone.status_code == 404


async def test_hostile_paths_and_ids_are_refused_cleanly(switchboard: Harness,
                                                         sim: Simulator) -> None:
    await create_session(switchboard, sim)
    http = switchboard.http()
    for path in ("/api/v1/whatsapp/webhooks/ac%00me/main", "/api/v1/whatsapp/webhooks/acme/ma%0Ain",
                 f"/api/v1/whatsapp/webhooks/{'x' * 300}/main"):
        assert (await http.post(path, data=b"{}")).status_code == 404, path
        assert (await http.get(path)).status_code == 404, path
    huge = await http.get(f"/api/v1/whatsapp/messages/{2**70}?tenant={TENANT}",
                          headers=headers())
    assert huge.status_code == 404
    response = await post_cloud(switchboard, sim, text_message("sneaky", "wamid.\nline"))
    assert (await response.get_json()) == {"received": 0}
    deep = b"[" * 100_000 + b"]" * 100_000
    response = await http.post(f"/api/v1/whatsapp/webhooks/{TENANT}/main", data=deep,
                               headers={"X-Hub-Signature-256": sign(sim.config.app_secret,
                                                                    deep)})
    assert (response.status_code, (await response.get_json())["code"]) == (400, "invalid_json")
    huge = b'{"entry": [], "n": 1' + b"0" * 5000 + b"}"
    response = await http.post(f"/api/v1/whatsapp/webhooks/{TENANT}/main", data=huge,
                               headers={"X-Hub-Signature-256": sign(sim.config.app_secret,
                                                                    huge)})
    assert response.status_code in (200, 400)


async def test_a_send_a_stopped_node_left_half_done_is_sent_after_a_restart(
        switchboard: Harness, sim: Simulator, nursery: trio.Nursery) -> None:
    await _conversation_with_customer(switchboard, sim)
    sim.fail_next(503, 1000)
    message_id = await _reply(switchboard, "stuck")
    with trio.fail_after(60):
        await sim.wait_requests(1)
    plugin = switchboard.server.plugins.pm.get_plugin("whatsapp")
    outbox = plugin.engine.storage.outbox
    # as if this node had taken it and stopped before it knew how the send went
    await switchboard.app.store.execute(outbox.update().where(
        outbox.c.message_id == message_id).values(status="sending", claimed_at=0.0))
    await switchboard.restart()
    sim.requests.clear()
    sim._failures.clear()
    in_process(switchboard, sim, nursery)
    with trio.fail_after(600):
        [request] = await sim.wait_requests(1, accepted=True)
    assert request.json["text"]["body"] == "stuck"
    await trio.sleep(120)
    assert len(sim.requests) == 1


async def test_a_cloud_number_starts_only_with_a_token_the_graph_api_knows(
        switchboard: Harness, sim: Simulator) -> None:
    await create_session(switchboard, sim)
    http = switchboard.http()
    path = f"/api/v1/whatsapp/sessions/main/start?tenant={TENANT}"
    sim.config.access_token = "revoked"
    refused = await http.post(path, headers=headers())
    body = await refused.get_json()
    assert (refused.status_code, body["code"]) == (502, "provider_unavailable")
    assert "(190)" in body["message"]
    sim.config.access_token = "sim-access-token"
    started = await http.post(path, headers=headers())
    assert (await started.get_json())["status"] == "connected"


async def test_a_failed_status_from_the_provider_fails_the_message_with_its_error(
        switchboard: Harness, sim: Simulator) -> None:
    await _conversation_with_customer(switchboard, sim)
    agent = await switchboard.connect("ann", TENANT, role="agent")
    await agent.request("conversation:join", {"conversationId": CONVERSATION})
    message_id = await _reply(switchboard, "are you there?")
    assert (await agent.expect("message:status"))["status"] == "sent"
    plugin = switchboard.server.plugins.pm.get_plugin("whatsapp")
    wamid = (await plugin.engine.delivery(TENANT, message_id))["providerMessageId"]
    await post_cloud(switchboard, sim, {"statuses": [{
        "id": wamid, "status": "failed", "timestamp": "1700000100", "recipient_id": CUSTOMER,
        "errors": [{"code": 131026, "title": "Message undeliverable",
                    "error_data": {"details": "the number is not on WhatsApp"}}]}]})
    failed = await agent.expect("message:status")
    assert (failed["status"], failed["messageId"]) == ("failed", message_id)
    assert failed["error"] == "(131026) Message undeliverable - the number is not on WhatsApp"
    # a late "delivered" for a failed message changes nothing
    await post_cloud(switchboard, sim, {"statuses": [{"id": wamid, "status": "delivered"}]})
    await agent.settle(1)
    assert agent.received("message:status") == []
    assert (await plugin.engine.delivery(TENANT, message_id))["status"] == "failed"


async def test_a_customers_media_is_fetched_through_the_session(switchboard: Harness,
                                                                sim: Simulator) -> None:
    await create_session(switchboard, sim)
    sim.media["991"] = ("image/jpeg", b"\xff\xd8\xff" + b"j" * 500)
    sim.media["992"] = ("video/mp4", b"v" * 5000)
    http = switchboard.http()
    path = f"/api/v1/whatsapp/sessions/main/media/991?tenant={TENANT}"
    response = await http.get(path, headers=headers())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert await response.get_data(as_text=False) == b"\xff\xd8\xff" + b"j" * 500
    too_large = await http.get(path.replace("991", "992"), headers=headers())
    assert (too_large.status_code, (await too_large.get_json())["code"]) == (
        413, "payload_too_large")
    unknown = await http.get(path.replace("991", "993"), headers=headers())
    assert unknown.status_code == 404
    hostile = await http.get(path.replace("991", "..%2F..%2Fme"), headers=headers())
    assert hostile.status_code == 404
    theirs = await http.get("/api/v1/whatsapp/sessions/main/media/991",
                            headers=headers("globex-only-key-0123"))
    assert theirs.status_code == 404


async def test_a_message_new_published_by_a_backend_sends_nothing(switchboard: Harness,
                                                                  sim: Simulator) -> None:
    await _conversation_with_customer(switchboard, sim)
    response = await switchboard.http().post("/api/v1/emit", headers=headers(), json={
        "event": "message:new", "tenant": TENANT, "room": f"conversation:{CONVERSATION}",
        "data": {"id": 999, "conversationId": CONVERSATION, "senderId": "ann",
                 "type": "text", "content": {"text": "forged"}}})
    assert response.status_code == 202
    real = await _reply(switchboard, "real")
    with trio.fail_after(60):
        [request] = await sim.wait_requests(1)
    await trio.sleep(30)
    assert request.json["text"]["body"] == "real" and len(sim.requests) == 1
    assert real != 999


# -- a bridge URL cannot point the server into its own network -------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.2:8080", "http://0.0.0.0:8080", "http://10.1.2.3/", "http://[::1]:80",
    "http://169.254.169.254/latest/meta-data", "http://192.168.0.10:8080"])
async def test_a_bridge_on_an_inner_address_is_refused(switchboard: Harness, url: str) -> None:
    """An API key holder names the bridge's URL: one on loopback, a private
    network or the cloud metadata address would make the server call into its
    own network, so it is refused unless ``bridge_hosts`` lists it."""
    response = await switchboard.http().post(
        "/api/v1/whatsapp/sessions", headers=headers(),
        json={"tenant": TENANT, "id": "inner", "provider": "bridge",
              "bridge": {"url": url, "apiKey": "k" * 20, "instance": "inst"}})
    assert response.status_code == 400
    body = await response.get_json()
    assert body["code"] == "invalid_payload" and body["field"] == "bridge.url"
    assert "bridge_hosts" in body["message"]
    listed = await switchboard.http().get(f"/api/v1/whatsapp/sessions?tenant={TENANT}",
                                          headers=headers())
    assert (await listed.get_json())["sessions"] == []


async def test_a_listed_bridge_network_is_allowed_and_checked_again_on_each_call(
        switchboard: Harness, sim: Simulator) -> None:
    """``bridge_hosts`` lets a deployment reach its own bridge (127.0.0.1 in
    these tests); a session stored while it was listed is refused at its next
    call once it is not, and a send through it fails for good, not in a loop."""
    await create_session(switchboard, sim, provider="bridge")
    engine = switchboard.server.plugins.pm.get_plugin("whatsapp").engine
    engine.settings = attrs.evolve(engine.settings, bridge_hosts=[])
    switchboard.server.plugins.pm.get_plugin("whatsapp").engine.sessions._providers.clear()
    response = await switchboard.http().post(
        f"/api/v1/whatsapp/sessions/main/start?tenant={TENANT}", headers=headers())
    body = await response.get_json()
    assert response.status_code == 502, body
    assert "bridge_hosts" in body["message"]
    assert not [r for r in sim.requests if "/instance/" in r.path]


async def test_a_host_name_is_judged_by_the_addresses_it_resolves_to() -> None:
    from switchboard.plugins.whatsapp.providers import bridge_url_problem
    from switchboard.plugins.whatsapp.settings import WhatsAppSettings

    closed = WhatsAppSettings()
    assert "127.0.0.1" in (await bridge_url_problem("http://localhost:8080", closed) or "")
    by_name = WhatsAppSettings(bridge_hosts=["LocalHost"])
    assert await bridge_url_problem("http://localhost:8080", by_name) is None
    by_network = WhatsAppSettings(bridge_hosts=["127.0.0.0/8", "::1"])
    assert await bridge_url_problem("http://localhost:8080", by_network) is None
    assert await bridge_url_problem("http://93.184.215.14/", closed) is None
    with pytest.raises(ValueError, match="bridge_hosts"):
        WhatsAppSettings(bridge_hosts=["10.0.0.0/33"])
