"""The chat plugin: conversations, durable messages, receipts, history."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from chats import (
    create_conversation,
    joined,
    switchboard_config,  # noqa: F401  (the fixture: SQLite, then PostgreSQL)
    text,
)
from switchboard.testing import ErrorReply, Harness, TestClient


async def test_participant_and_agent_join_but_outsider_is_refused(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    await joined(switchboard, "carl")
    await joined(switchboard, "zoe", role="agent")
    outsider = await switchboard.connect(user="mallory", role="customer")
    ack = await outsider.request("conversation:join", {"conversationId": "c1"})
    assert ack["success"] is False and ack["error"]["code"] == "forbidden"


async def test_unknown_or_foreign_conversation_is_not_found(switchboard: Harness) -> None:
    await create_conversation(switchboard, tenant="other", participants=("carl",))
    client = await switchboard.connect(user="carl", role="agent", tenant="t1")
    ack = await client.request("conversation:join", {"conversationId": "c1"})
    assert ack["success"] is False and ack["error"]["code"] == "not_found"
    with pytest.raises(ErrorReply) as refused:
        await client.request("room:join", {"room": "conversation:c1"})
    assert refused.value.code == "not_found"


async def test_message_is_stored_acked_and_broadcast_to_the_others(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    stored = await carl.request("message:send", {"conversationId": "c1", **text("hi")})
    assert stored["id"] > 0 and stored["status"] == "sent"
    assert stored["content"] == {"text": "hi"} and stored["senderId"] == "carl"
    assert await ann.expect("message:new") == stored
    await carl.settle()
    assert carl.received("message:new") == []
    page = await ann.request("message:history", {"conversationId": "c1"})
    assert [m["id"] for m in page["messages"]] == [stored["id"]]


async def test_resend_with_the_same_client_id_is_not_duplicated(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    body = {"conversationId": "c1", "clientId": "m-1", **text("once")}
    first = await carl.request("message:send", body)
    again = await carl.request("message:send", body)
    assert again["id"] == first["id"]
    await ann.expect("message:new")
    await ann.settle(1)
    assert ann.received("message:new") == []
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert len(page["messages"]) == 1


async def test_concurrent_resends_in_one_batch_store_one_message(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    for _ in range(5):
        await carl.emit("message:send", {"conversationId": "c1", "clientId": "dup", **text("x")},
                        id=None)
    await carl.settle(1)
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert len(page["messages"]) == 1


async def test_message_posted_over_http_reaches_the_room(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    ann = await joined(switchboard, "ann")
    response = await switchboard.http().post(
        "/api/v1/conversations/c1/messages", headers=switchboard.api_headers(),
        json={"tenant": "t1", "senderId": "whatsapp-bot", "clientId": "wamid.1",
              "type": "image", "content": {"url": "https://cdn.example/p.jpg",
                                           "mimeType": "image/jpeg"}})
    assert response.status_code == 201
    message = await ann.expect("message:new")
    assert message["type"] == "image" and message["senderId"] == "whatsapp-bot"
    again = await switchboard.http().post(
        "/api/v1/conversations/c1/messages", headers=switchboard.api_headers(),
        json={"tenant": "t1", "senderId": "whatsapp-bot", "clientId": "wamid.1",
              "type": "image", "content": {"url": "https://cdn.example/p.jpg"}})
    assert again.status_code == 200
    assert (await again.get_json())["id"] == message["id"]


@pytest.mark.parametrize(("kind", "content", "field"), [
    ("text", {"text": ""}, "content.text"),
    ("text", {"text": 5}, "content.text"),
    ("text", {}, "content.text"),
    ("image", {"url": "ftp://x/y.png"}, "content.url"),
    ("image", {"url": "https://x/y.pdf", "mimeType": "application/pdf"}, "content.mimeType"),
    ("document", {"url": "https://x/y.pdf"}, "content.fileName"),
    ("audio", {"url": "https://x/a.ogg", "bogus": 1}, "content.bogus"),
    ("image", {"url": "https://x/y.png", "caption": "c" * 4097}, "content.caption"),
    ("video", {"url": "https://x/v.mp4", "size": -1}, "content.size"),
    ("document", {"url": "https://x/y.pdf", "fileName": ""}, "content.fileName"),
    ("document", {"url": "https://x/" + "y" * 2048, "fileName": "y"}, "content.url"),
])
async def test_content_is_validated_per_type(switchboard: Harness, kind: str,
                                             content: dict[str, Any], field: str) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    with pytest.raises(ErrorReply) as refused:
        await carl.request("message:send",
                           {"conversationId": "c1", "type": kind, "content": content})
    assert refused.value.code == "invalid_payload"
    assert refused.value.field == field


async def test_unknown_message_type_is_refused(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    with pytest.raises(ErrorReply) as refused:
        await carl.request("message:send", {"conversationId": "c1", "type": "sticker",
                                            "content": {}})
    assert refused.value.field == "type"


async def test_history_pages_backward_and_catches_up_forward(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ids = [(await carl.request("message:send", {"conversationId": "c1", **text(f"m{i}")}))["id"]
           for i in range(7)]
    newest = await carl.request("message:history", {"conversationId": "c1", "limit": 3})
    assert [m["id"] for m in newest["messages"]] == ids[4:]
    assert newest["hasMore"] is True
    older = await carl.request("message:history", {"conversationId": "c1", "limit": 3,
                                                   "before": newest["nextBefore"]})
    assert [m["id"] for m in older["messages"]] == ids[1:4]
    missed = await carl.request("message:history", {"conversationId": "c1",
                                                    "after": ids[2], "limit": 100})
    assert [m["id"] for m in missed["messages"]] == ids[3:]
    assert missed["hasMore"] is False


async def test_nothing_is_lost_across_a_reconnect(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    ann = await joined(switchboard, "ann")
    carl = await joined(switchboard, "carl")
    seen = (await carl.request("message:send", {"conversationId": "c1", **text("1")}))["id"]
    await ann.expect("message:new")
    await ann.close()
    sent = [(await carl.request("message:send", {"conversationId": "c1", **text(t)}))["id"]
            for t in ("2", "3")]
    ann = await joined(switchboard, "ann")
    page = await ann.request("message:history", {"conversationId": "c1", "after": seen})
    assert [m["id"] for m in page["messages"]] == sent


async def test_receipts_move_the_status_to_delivered_then_read(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    message = await carl.request("message:send", {"conversationId": "c1", **text("hello")})
    await ann.expect("message:new")
    await ann.request("message:delivered", {"conversationId": "c1", "messageId": message["id"]})
    status = await carl.expect("message:status")
    assert status == {"conversationId": "c1", "messageId": message["id"], "userId": "ann",
                      "status": "delivered"}
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert page["messages"][0]["status"] == "delivered"
    await ann.request("message:read", {"conversationId": "c1", "messageId": message["id"]})
    assert (await carl.expect("message:status"))["status"] == "read"
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert page["messages"][0]["status"] == "read"


async def test_receipt_for_a_message_of_another_conversation_is_not_found(
        switchboard: Harness) -> None:
    await create_conversation(switchboard)
    await create_conversation(switchboard, "c2")
    carl = await joined(switchboard, "carl")
    other = await carl.request("message:send", {"conversationId": "c1", **text("x")})
    with pytest.raises(ErrorReply) as refused:
        await carl.request("message:read", {"conversationId": "c2", "messageId": other["id"]})
    assert refused.value.code == "not_found"


async def test_messages_never_reach_another_tenant(switchboard: Harness) -> None:
    await create_conversation(switchboard, tenant="t1")
    await create_conversation(switchboard, tenant="t2")
    t1 = await joined(switchboard, "carl", tenant="t1")
    t2 = await joined(switchboard, "carl", tenant="t2")
    await t1.request("message:send", {"conversationId": "c1", **text("secret")})
    await t2.settle(1)
    assert t2.received("message:new") == []
    page = await t2.request("message:history", {"conversationId": "c1"})
    assert page["messages"] == []


async def test_http_history_and_api_key_scope(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    await carl.request("message:send", {"conversationId": "c1", **text("a")})
    http = switchboard.http()
    ok = await http.get("/api/v1/conversations/c1/messages?tenant=t1",
                        headers=switchboard.api_headers())
    assert [m["content"]["text"] for m in (await ok.get_json())["messages"]] == ["a"]
    missing = await http.get("/api/v1/conversations/nope/messages?tenant=t1",
                             headers=switchboard.api_headers())
    assert missing.status_code == 404
    bad = await http.get("/api/v1/conversations/c1/messages?tenant=t1&limit=x",
                         headers=switchboard.api_headers())
    assert bad.status_code == 400
    anonymous = await http.get("/api/v1/conversations/c1/messages?tenant=t1")
    assert anonymous.status_code == 401


async def test_many_concurrent_senders_all_land_in_order_of_ids(switchboard: Harness) -> None:
    await create_conversation(switchboard, participants=tuple(f"u{i}" for i in range(10)))
    clients = [await joined(switchboard, f"u{i}") for i in range(10)]

    async def send(client: TestClient, n: int) -> None:
        for k in range(n):
            await client.request("message:send", {"conversationId": "c1", **text(f"{k}")})

    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(send, client, 10)
    page = await clients[0].request("message:history", {"conversationId": "c1", "limit": 200})
    ids = [m["id"] for m in page["messages"]]
    assert len(ids) == 100 and ids == sorted(set(ids))


async def test_acks_come_in_order_while_messages_share_a_batch(switchboard: Harness) -> None:
    """A client's messages are stored in the order sent, acked in that order,
    and broadcast in the order of their ids."""
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    for n in range(20):
        await carl.emit("message:send", {"conversationId": "c1", **text(f"{n}")}, id=n)
    acks = [(await carl._wait(lambda f, n=n: f.get("id") == n, 10))["data"] for n in range(20)]
    assert [a["content"]["text"] for a in acks] == [f"{n}" for n in range(20)]
    ids = [a["id"] for a in acks]
    assert ids == sorted(ids)
    received = [(await ann.expect("message:new"))["id"] for _ in range(20)]
    assert received == ids


async def test_a_batch_mixing_new_messages_resends_and_messages_without_client_id(
        switchboard: Harness) -> None:
    """Messages with and without a clientId, and resends of one stored earlier,
    share batches: each new message is stored once, in the order sent, a resend
    gets the stored message back, and the others see each new message once, in
    the order of the ids."""
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    earlier = await carl.request("message:send",
                                 {"conversationId": "c1", "clientId": "old", **text("old")})
    await ann.expect("message:new")
    bodies: list[dict[str, Any]] = []
    for n in range(12):
        kind = n % 3
        if kind == 0:
            bodies.append({"conversationId": "c1", **text(f"plain {n}")})
        elif kind == 1:
            bodies.append({"conversationId": "c1", "clientId": f"k{n}", **text(f"keyed {n}")})
        else:
            bodies.append({"conversationId": "c1", "clientId": "old", **text("old")})
    for n, body in enumerate(bodies):
        await carl.emit("message:send", body, id=n)
    acks = [(await carl._wait(lambda f, n=n: f.get("id") == n, 10))["data"]
            for n in range(len(bodies))]
    for n, ack in enumerate(acks):
        if n % 3 == 2:
            assert ack["id"] == earlier["id"] and ack["content"] == {"text": "old"}
        else:
            assert ack["content"]["text"] == bodies[n]["content"]["text"]
    new_ids = [ack["id"] for n, ack in enumerate(acks) if n % 3 != 2]
    assert new_ids == sorted(set(new_ids)) and len(new_ids) == 8
    received = [(await ann.expect("message:new"))["id"] for _ in range(8)]
    assert received == new_ids
    await ann.settle(1)
    assert ann.received("message:new") == []
    page = await carl.request("message:history", {"conversationId": "c1", "limit": 50})
    assert [m["id"] for m in page["messages"]] == [earlier["id"], *new_ids]


@pytest.mark.parametrize(("event", "body", "field"), [
    ("message:send", {"conversationId": "c1", "clientId": "k" * 201, **text("x")}, "clientId"),
    ("message:send", {"conversationId": "c1", "clientId": "k\x00", **text("x")}, "clientId"),
    ("message:send", {"conversationId": "c" * 201, **text("x")}, "conversationId"),
    ("conversation:join", {"conversationId": "c1\x00"}, "conversationId"),
    ("message:history", {"conversationId": "c1", "before": 2**63}, "before"),
    ("message:history", {"conversationId": "c1", "after": -1}, "after"),
    ("message:read", {"conversationId": "c1", "messageId": 2**64}, "messageId"),
])
async def test_values_the_store_cannot_keep_are_invalid_payload_naming_the_field(
        switchboard: Harness, event: str, body: dict[str, Any], field: str) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    with pytest.raises(ErrorReply) as info:
        await carl.request(event, body)
    assert (info.value.code, info.value.field) == ("invalid_payload", field)
    await carl.request("message:send", {"conversationId": "c1", **text("still fine")})


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/conversations", {"tenant": "t1", "id": "c" * 201}, "id"),
    ("/api/v1/conversations", {"tenant": "t\x00", "id": "c9"}, "tenant"),
    ("/api/v1/conversations", {"tenant": "t1", "title": "t" * 501}, "title"),
    ("/api/v1/conversations", {"tenant": "t1", "participants": [{"userId": "u\x01"}]},
     "participants.0.userId"),
    ("/api/v1/conversations/c1/participants", {"tenant": "t1", "userId": "u" * 201}, "userId"),
    ("/api/v1/conversations/c1/messages",
     {"tenant": "t1", "senderId": "s" * 201, **text("x")}, "senderId"),
    ("/api/v1/conversations/c1/messages",
     {"tenant": "t1", "senderId": "bot", "clientId": "w\x00", **text("x")}, "clientId"),
])
async def test_http_values_the_store_cannot_keep_are_400_naming_the_field(
        switchboard: Harness, path: str, body: dict[str, Any], field: str) -> None:
    await create_conversation(switchboard)
    response = await switchboard.http().post(path, headers=switchboard.api_headers(), json=body)
    answer = await response.get_json()
    assert (response.status_code, answer["code"], answer.get("field")) == (
        400, "invalid_payload", field)


@pytest.mark.parametrize("conv_id", ["c%00", "c" * 300])
async def test_http_conversation_ids_that_cannot_exist_are_not_found(
        switchboard: Harness, conv_id: str) -> None:
    http, headers = switchboard.http(), switchboard.api_headers()
    for response in [
            await http.get(f"/api/v1/conversations/{conv_id}?tenant=t1", headers=headers),
            await http.get(f"/api/v1/conversations/{conv_id}/messages?tenant=t1",
                           headers=headers),
            await http.post(f"/api/v1/conversations/{conv_id}/messages", headers=headers,
                            json={"tenant": "t1", "senderId": "bot", **text("x")})]:
        assert response.status_code == 404
        assert (await response.get_json())["code"] == "not_found"


@pytest.mark.parametrize("query", ["before=9223372036854775808", "after=-1", "limit=1e3",
                                   "after=%D9%A3"])
async def test_http_history_cursors_out_of_range_are_400(switchboard: Harness,
                                                         query: str) -> None:
    await create_conversation(switchboard)
    response = await switchboard.http().get(f"/api/v1/conversations/c1/messages?tenant=t1&"
                                            f"{query}", headers=switchboard.api_headers())
    assert response.status_code == 400
    assert (await response.get_json())["field"] == query.split("=")[0]



async def test_history_with_both_before_and_after_is_refused(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    with pytest.raises(ErrorReply) as info:
        await carl.request("message:history", {"conversationId": "c1", "before": 5, "after": 1})
    assert (info.value.code, info.value.field) == ("invalid_payload", "after")
