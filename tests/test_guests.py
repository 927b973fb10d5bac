"""Website guests: a widget key exchanged for a resumable guest token, or
used to connect at once; guests confined to their own room, limited per IP."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from socketio_fixtures import MemoryWebSocket
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, HandshakeRejected, Harness, make_config

WIDGET = "pk_acme_site_1"


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"plugins": {"guests": {
        "widgets": [{"key": WIDGET, "tenant": "acme",
                     "origins": ["https://acme.example", "https://*.acme.example"]}],
        "per_ip": {"rate": 0.1, "burst": 3}}}})


async def issue(switchboard: Harness, body: dict[str, Any], *,
                origin: str = "https://acme.example") -> tuple[int, Any]:
    response = await switchboard.http().post("/api/v1/guests", json=body,
                                             headers={"Origin": origin})
    return response.status_code, await response.get_json()


async def test_a_widget_key_gets_a_guest_token_that_connects_as_a_confined_customer(
        switchboard: Harness) -> None:
    status, guest = await issue(switchboard, {"widget": WIDGET})
    assert status == 201
    assert guest["userId"].startswith("guest-") and guest["tenant"] == "acme"
    agent = await switchboard.connect("ann", "acme", role="agent")
    client = await switchboard.connect(token="", path=f"/ws?guest={guest['token']}")
    assert (client.session["user_id"], client.session["tenant_id"],
            client.session["role"]) == (guest["userId"], "acme", "customer")
    # confined: not in the tenant's room, may not join it, gets its own user room
    await switchboard.app.publish("acme", "tenant:acme", "for:tenant", {})
    await switchboard.app.publish("acme", f"user:{guest['userId']}", "for:guest", {"n": 1})
    assert await client.expect("for:guest") == {"n": 1}
    assert client.received("for:tenant") == []
    assert await agent.expect("for:tenant") == {}
    for room in ("tenant:acme", "tenant:acme:agents", "lead:1", "user:ann"):
        with pytest.raises(ErrorReply) as info:
            await client.request("room:join", {"room": room})
        assert info.value.code == "forbidden"


async def test_a_guest_token_presented_again_keeps_the_visitors_id(
        switchboard: Harness) -> None:
    _, first = await issue(switchboard, {"widget": WIDGET})
    await trio.sleep(10)
    _, again = await issue(switchboard, {"widget": WIDGET, "guest": first["token"]})
    assert again["userId"] == first["userId"]
    assert again["expiresAt"] >= first["expiresAt"]
    _, other = await issue(switchboard, {"widget": WIDGET, "guest": "forged.token.value"})
    assert other["userId"] != first["userId"]


async def test_connecting_with_the_widget_key_gives_the_guest_its_token(
        switchboard: Harness) -> None:
    ws = await MemoryWebSocket.connect(switchboard, "/socket.io/?EIO=4&transport=websocket",
                                       headers={"Origin": "https://shop.acme.example"})
    assert str(await ws.receive()).startswith("0{")
    await ws.send(f'40{{"widget":"{WIDGET}"}}')
    assert str(await ws.receive()).startswith("40{")
    token_event = next(m for m in await ws.receive_until_prefix('42["guest:token"')
                       if str(m).startswith('42["guest:token"'))
    assert '"userId":"guest-' in str(token_event)


@pytest.mark.parametrize("body, origin, status, code", [
    ({"widget": "pk_nobody_000"}, "https://acme.example", 404, "unknown_widget"),
    ({"widget": WIDGET}, "https://evil.example", 403, "forbidden_origin"),
    ({"nope": 1}, "https://acme.example", 400, "invalid_payload"),
])
async def test_a_bad_widget_request_is_refused_with_a_code(
        switchboard: Harness, body: dict[str, Any], origin: str, status: int,
        code: str) -> None:
    answer = await issue(switchboard, body, origin=origin)
    assert (answer[0], answer[1]["code"]) == (status, code)


async def test_new_guests_are_limited_per_ip_and_resumed_ones_are_not(
        switchboard: Harness) -> None:
    tokens = [(await issue(switchboard, {"widget": WIDGET}))[1] for _ in range(3)]
    status, refused = await issue(switchboard, {"widget": WIDGET})
    assert (status, refused["code"]) == (429, "rate_limited")
    assert refused["retry_after"] > 0
    status, _ = await issue(switchboard, {"widget": WIDGET, "guest": tokens[0]["token"]})
    assert status == 201
    await trio.sleep(10)  # the bucket refills (0.1 a second)
    assert (await issue(switchboard, {"widget": WIDGET}))[0] == 201


async def test_connects_with_a_widget_key_are_limited_per_ip(switchboard: Harness) -> None:
    for _ in range(3):
        await switchboard.connect(token="", path=f"/ws?widget={WIDGET}")
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect(token="", path=f"/ws?widget={WIDGET}")
    assert (info.value.status, info.value.body["code"]) == (429, "rate_limited")


async def test_a_tampered_guest_token_is_refused(switchboard: Harness) -> None:
    _, guest = await issue(switchboard, {"widget": WIDGET})
    head, payload, sig = guest["token"].split(".")
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect(token="", path=f"/ws?guest={head}.{payload}.{sig[::-1]}")
    assert info.value.status == 401


async def test_a_guest_starts_its_conversation_and_is_confined_to_it(
        switchboard: Harness) -> None:
    _, guest = await issue(switchboard, {"widget": WIDGET})
    _, other = await issue(switchboard, {"widget": WIDGET})
    agent = await switchboard.connect("ann", "acme", role="agent")
    client = await switchboard.connect(token="", path=f"/ws?guest={guest['token']}")
    started = await client.request("guest:start", {"title": "Question about my order"})
    assert started == {"conversationId": f"guest:{guest['userId']}",
                       "room": f"conversation:guest:{guest['userId']}", "created": True}
    told = await agent.expect("guest:started")
    assert told["userId"] == guest["userId"] and told["widget"] == WIDGET
    # the agent answers in the guest's conversation; the guest gets it
    await agent.request("conversation:join", {"conversationId": started["conversationId"]})
    await agent.request("message:send", {"conversationId": started["conversationId"],
                                         "type": "text", "content": {"text": "Hello!"}})
    assert (await client.expect("message:new"))["content"] == {"text": "Hello!"}
    # started again: the same conversation, nobody told twice
    again = await client.request("guest:start", {})
    assert again["conversationId"] == started["conversationId"] and not again["created"]
    # another guest cannot reach into it
    intruder = await switchboard.connect(token="", path=f"/ws?guest={other['token']}")
    answer = await intruder.request("conversation:join",
                                    {"conversationId": started["conversationId"]})
    assert answer["success"] is False and answer["error"]["code"] == "forbidden"
    with pytest.raises(ErrorReply) as info:
        await intruder.request("message:history",
                               {"conversationId": started["conversationId"]})
    assert info.value.code == "forbidden"


async def test_only_a_guest_starts_a_guest_conversation(switchboard: Harness) -> None:
    customer = await switchboard.connect("carl", "acme", role="customer")
    with pytest.raises(ErrorReply) as info:
        await customer.request("guest:start", {})
    assert info.value.code == "forbidden"
