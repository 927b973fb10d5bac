"""The plain-WebSocket protocol as a client sees it: envelopes, errors, acks, tokens."""

from __future__ import annotations

import time
from typing import Any

import attrs
import jwt
import pytest
import trio
from switchboard.core.config import Config
from switchboard.core.handshake import Handshake
from switchboard.testing import (
    TEST_SECRET,
    ErrorReply,
    HandshakeRejected,
    Harness,
    TestClient,
    make_config,
)

MAX_PAYLOAD = 4096


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"server": {"max_payload": MAX_PAYLOAD}})


async def assert_answers_ping(client: TestClient) -> None:
    """The connection is open and served: an envelope ping gets its pong."""
    await client.emit("ping", {"probe": 1})
    assert await client.expect("pong", timeout=5) == {"probe": 1}


async def frame_with_id(client: TestClient, ident: int | str) -> dict[str, Any]:
    """The next frame answering the request ``ident`` (ack or error), whole."""
    return await client._wait(lambda f: f.get("id") == ident, 5)


# -- malformed frames ---------------------------------------------------------


async def test_text_that_is_not_json_is_answered_invalid_json(switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.send_text("{this is not json")
    error = await client.expect_error("invalid_json")
    assert error["message"]
    await assert_answers_ping(client)


async def test_json_nested_too_deep_is_answered_invalid_json(switchboard: Harness) -> None:
    """JSON nested deeper than the parser's recursion limit (a few thousand
    brackets, well under any payload limit) is an error frame, not a crashed
    connection."""
    client = await switchboard.connect()
    other = await switchboard.connect(user="u2")
    await client.send_text("[" * 4_000)
    await client.expect_error("invalid_json")
    await client.send_text('{"type":"ping","data":' + "[" * 200 + "]" * 200 + "}")
    await client.expect_error("invalid_json")
    await assert_answers_ping(client)
    await assert_answers_ping(other)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_answered_invalid_json_and_never_echoed(
        switchboard: Harness, constant: str) -> None:
    client = await switchboard.connect()
    await client.send_text('{"type":"ping","data":[' + constant + "]}")
    await client.expect_error("invalid_json")
    assert client.received("pong") == []
    await assert_answers_ping(client)


async def test_a_lone_surrogate_is_answered_invalid_json_not_a_closed_connection(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.send_text('{"type":"ping","data":"\\ud800"}')
    await client.expect_error("invalid_json")
    await assert_answers_ping(client)


@pytest.mark.parametrize("text", ["[1, 2, 3]", "42", '"room:join"', "null"])
async def test_json_that_is_not_an_object_is_answered_invalid_frame(
        switchboard: Harness, text: str) -> None:
    client = await switchboard.connect()
    await client.send_text(text)
    await client.expect_error("invalid_frame")
    await assert_answers_ping(client)


@pytest.mark.parametrize("frame", ['{"data": {}}', '{"type": ""}', '{"type": 7}',
                                   '{"type": null, "id": 1}'])
async def test_frame_without_a_string_type_is_answered_invalid_frame_naming_type(
        switchboard: Harness, frame: str) -> None:
    client = await switchboard.connect()
    await client.send_text(frame)
    error = await client.expect_error("invalid_frame")
    assert error["field"] == "type"
    await assert_answers_ping(client)


@pytest.mark.parametrize("ident", ["[1]", "{}", "true", "1.5"])
async def test_id_of_a_wrong_type_is_answered_invalid_frame_naming_id(
        switchboard: Harness, ident: str) -> None:
    client = await switchboard.connect()
    await client.send_text(f'{{"type": "room:join", "data": {{"room": "lead:1"}}, "id": {ident}}}')
    error = await client.expect_error("invalid_frame")
    assert error["field"] == "id"
    await assert_answers_ping(client)


async def test_frame_with_an_extra_key_is_answered_invalid_frame_naming_it(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.send_text('{"type": "room:join", "data": {"room": "lead:1"}, "event": "x"}')
    error = await client.expect_error("invalid_frame")
    assert error["field"] == "event"
    assert client.received("ack") == []
    await assert_answers_ping(client)


async def test_unknown_event_is_answered_unknown_event_with_the_id_echoed(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.emit("no:such:event", {"x": 1}, id=41)
    frame = await frame_with_id(client, 41)
    assert frame["type"] == "error"
    assert frame["data"]["code"] == "unknown_event"
    await assert_answers_ping(client)


@pytest.mark.parametrize("payload", [{"status": 5}, {"status": "bogus"}, {"status": None},
                                     {}, {"status": "busy", "mood": "happy"}])
async def test_presence_update_with_a_bad_field_is_answered_invalid_payload_naming_it(
        switchboard: Harness, payload: dict[str, Any]) -> None:
    client = await switchboard.connect()
    with pytest.raises(ErrorReply) as refused:
        await client.request("presence:update", payload)
    assert refused.value.code == "invalid_payload"
    assert refused.value.field == ("mood" if "mood" in payload else "status")
    await assert_answers_ping(client)


async def test_payload_that_is_not_an_object_is_answered_invalid_payload(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    with pytest.raises(ErrorReply) as refused:
        await client.request("room:join", ["lead:1"])
    assert refused.value.code == "invalid_payload"
    await assert_answers_ping(client)


async def test_message_over_max_payload_is_answered_then_closed_with_1009(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.emit("room:join", {"room": "lead:1", "pad": "x" * MAX_PAYLOAD}, id=1)
    error = await client.expect_error("payload_too_large")
    assert str(MAX_PAYLOAD) in error["message"]
    code, _ = await client.expect_closed()
    assert code == 1009


async def test_message_just_under_max_payload_is_accepted(switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.send_text('{"type": "ping", "data": "' + "x" * (MAX_PAYLOAD - 100) + '"}')
    assert len(await client.expect("pong")) == MAX_PAYLOAD - 100


async def test_binary_frame_closes_the_connection_with_1003(switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.send_bytes(b'{"type": "ping"}')
    code, _ = await client.expect_closed()
    assert code == 1003


async def test_a_client_closed_for_bad_input_leaves_other_clients_untouched(
        switchboard: Harness) -> None:
    other = await switchboard.connect(user="bystander")
    await other.request("room:join", {"room": "lead:1"})
    offender = await switchboard.connect(user="offender")
    await offender.send_text("not json")
    await offender.send_text("[]")
    await offender.send_bytes(b"\x00\x01")
    assert (await offender.expect_closed())[0] == 1003
    await assert_answers_ping(other)
    assert other.received("error") == []
    assert await other.request("room:leave", {"room": "lead:1"}) == {"room": "lead:1"}


# -- acks ----------------------------------------------------------------------


@pytest.mark.parametrize("ident", [7, 0, -3, 2**40, "req-7", ""])
async def test_request_is_acked_with_its_own_id(switchboard: Harness, ident: int | str) -> None:
    client = await switchboard.connect()
    await client.emit("room:join", {"room": "lead:5"}, id=ident)
    frame = await frame_with_id(client, ident)
    assert frame == {"type": "ack", "id": ident, "data": {"room": "lead:5"}}


async def test_acks_of_pipelined_requests_come_back_in_order(switchboard: Harness) -> None:
    client = await switchboard.connect()
    for n in range(5):
        await client.emit("room:join", {"room": f"lead:{n}"}, id=f"j{n}")
    for n in range(5):
        frame = await client.expect("ack")
        assert frame == {"room": f"lead:{n}"}


async def test_frame_without_id_gets_no_ack(switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client.emit("room:join", {"room": "lead:5"})
    await assert_answers_ping(client)
    assert client.received("ack") == []
    assert client.received("error") == []


# -- tokens --------------------------------------------------------------------


def _token(claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def _rejection(switchboard: Harness, token: str) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as rejected:
        await switchboard.connect(token=token)
    return rejected.value


async def test_session_frame_tells_the_identity_and_heartbeat(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", tenant="acme", role="supervisor")
    session = client.session
    assert (session["user_id"], session["tenant_id"], session["role"]) == (
        "ann", "acme", "supervisor")
    assert session["heartbeat_interval"] == switchboard.config.heartbeat.interval
    assert session["heartbeat_timeout"] == switchboard.config.heartbeat.timeout
    assert session["sid"]
    assert session["expires_at"] > time.time()


async def test_expired_token_is_rejected_with_401(switchboard: Harness) -> None:
    rejected = await _rejection(switchboard, switchboard.token(ttl=-10))
    assert rejected.status == 401
    assert rejected.body["code"] == "unauthorized"
    assert "expired" in rejected.body["message"]


async def test_token_signed_with_another_secret_is_rejected_with_401(
        switchboard: Harness) -> None:
    forged = switchboard.token(secret="another-secret-of-32-bytes-or-more-0123")
    rejected = await _rejection(switchboard, forged)
    assert rejected.status == 401
    assert rejected.body["code"] == "unauthorized"


async def test_garbage_token_is_rejected_with_401(switchboard: Harness) -> None:
    rejected = await _rejection(switchboard, "not.a.jwt")
    assert (rejected.status, rejected.body["code"]) == (401, "unauthorized")


async def test_missing_token_is_rejected_with_401(switchboard: Harness) -> None:
    rejected = await _rejection(switchboard, "")
    assert rejected.status == 401
    assert rejected.body["code"] == "unauthorized"
    assert "missing" in rejected.body["message"]


async def test_token_without_tenant_claim_is_rejected_with_401(switchboard: Harness) -> None:
    token = _token({"sub": "u1", "role": "agent", "exp": int(time.time()) + 600})
    rejected = await _rejection(switchboard, token)
    assert rejected.status == 401
    assert rejected.body["code"] == "unauthorized"
    assert "tenant_id" in rejected.body["message"]


async def test_token_without_user_claim_is_rejected_with_401(switchboard: Harness) -> None:
    token = _token({"tenant_id": "t1", "exp": int(time.time()) + 600})
    rejected = await _rejection(switchboard, token)
    assert (rejected.status, rejected.body["code"]) == (401, "unauthorized")


async def test_token_in_the_query_string_is_accepted(switchboard: Harness) -> None:
    client = await switchboard.connect(user="q", tenant="acme", query_token=True)
    assert (client.session["user_id"], client.session["tenant_id"]) == ("q", "acme")
    await assert_answers_ping(client)


async def test_a_session_keeps_no_token_and_a_reauthentication_needs_a_new_one(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="q", tenant="acme", query_token=True)
    [session] = switchboard.app.user_sessions("acme", "q")
    assert session.handshake is not None and "token" not in session.handshake.query
    # (the URL's token is not taken again for a re-authentication that has none)
    with pytest.raises(ErrorReply) as refused:
        await client.request("auth", {})
    assert refused.value.code == "unauthorized"


async def test_bad_token_in_the_query_string_is_rejected_with_401(switchboard: Harness) -> None:
    with pytest.raises(HandshakeRejected) as rejected:
        await switchboard.connect(token=switchboard.token(ttl=-5), query_token=True)
    assert rejected.value.status == 401


async def test_connection_is_closed_with_4401_when_its_token_expires(
        switchboard: Harness) -> None:
    client = await switchboard.connect(token=switchboard.token(ttl=60))
    connected = trio.current_time()
    await trio.sleep(55)
    await assert_answers_ping(client)
    code, _ = await client.expect_closed(timeout=10)
    assert code == 4401
    assert 58 <= trio.current_time() - connected <= 61


async def test_reauthentication_with_a_fresh_token_keeps_the_connection_open(
        switchboard: Harness) -> None:
    client = await switchboard.connect(token=switchboard.token(ttl=60))
    await trio.sleep(30)
    fresh = switchboard.token(ttl=3600)
    ack = await client.request("auth", {"token": fresh})
    assert ack["expires_at"] > time.time() + 3000
    await trio.sleep(120)
    await assert_answers_ping(client)
    assert client.close_code is None


async def test_reauthentication_with_another_users_token_is_refused(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="u1", token=switchboard.token(user="u1", ttl=60))
    with pytest.raises(ErrorReply) as refused:
        await client.request("auth", {"token": switchboard.token(user="u2", ttl=3600)})
    assert refused.value.code == "unauthorized"
    # The refused token does not extend the session: it still ends at the old exp.
    code, _ = await client.expect_closed(timeout=70)
    assert code == 4401


async def test_reauthentication_with_another_tenants_token_is_refused(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="u1", tenant="t1")
    with pytest.raises(ErrorReply) as refused:
        await client.request("auth", {"token": switchboard.token(user="u1", tenant="t2")})
    assert refused.value.code == "unauthorized"
    await assert_answers_ping(client)


async def test_reauthentication_as_a_customer_leaves_the_rooms_of_an_agent(
        switchboard: Harness) -> None:
    agent = await switchboard.connect(user="u1", tenant="t1", role="agent")
    await agent.request("room:join", {"room": "lead:7"})
    await agent.request("room:join", {"room": "user:u1"})
    ack = await agent.request("auth", {"token": switchboard.token("u1", "t1", "customer")})
    assert sorted(ack["left"]) == ["lead:7", "tenant:t1:agents"]
    await switchboard.app.publish("t1", "tenant:t1:agents", "for:agents", {})
    await switchboard.app.publish("t1", "lead:7", "for:lead", {})
    await switchboard.app.publish("t1", "user:u1", "for:me", {})
    assert await agent.expect("for:me") == {}
    assert agent.received("for:agents") == agent.received("for:lead") == []
    with pytest.raises(ErrorReply) as refused:
        await agent.request("room:join", {"room": "lead:7"})
    assert refused.value.code == "forbidden"
    # and back to agent: the agents' room again, nothing left
    ack = await agent.request("auth", {"token": switchboard.token("u1", "t1", "agent")})
    assert ack["left"] == []
    await switchboard.app.publish("t1", "tenant:t1:agents", "for:agents", {"n": 2})
    assert await agent.expect("for:agents") == {"n": 2}


async def test_reauthentication_leaves_a_conversation_whose_policy_now_refuses(
        switchboard: Harness) -> None:
    response = await switchboard.http().post(
        "/api/v1/conversations", headers=switchboard.api_headers(),
        json={"tenant": "t1", "id": "c1", "participants": [{"userId": "carl"}]})
    assert response.status_code == 201
    agent = await switchboard.connect(user="u1", tenant="t1", role="agent")
    await agent.request("room:join", {"room": "conversation:c1"})
    ack = await agent.request("auth", {"token": switchboard.token("u1", "t1", "customer")})
    assert "conversation:c1" in ack["left"]


@pytest.mark.parametrize("data", [None, {}, {"token": 5}, {"token": "forged"}, "tok"])
async def test_reauthentication_without_a_valid_token_is_refused(
        switchboard: Harness, data: Any) -> None:
    client = await switchboard.connect()
    with pytest.raises(ErrorReply) as refused:
        await client.request("auth", data)
    assert refused.value.code == "unauthorized"
    await assert_answers_ping(client)


def test_what_a_session_keeps_of_its_handshake_is_what_plugins_read_without_a_bearer(
        ) -> None:
    handshake = Handshake(transport="websocket", path="/socket.io/",
                          headers={"authorization": "Bearer t"},
                          query={"token": "t", "widget": "w"}, auth={"token": "a", "lang": "pt"})
    kept = handshake.slim()
    # (the auth object as the client sent it: a re-authentication replaces it whole)
    assert (kept.headers, kept.query, kept.auth) == ({}, {"widget": "w"},
                                                      {"token": "a", "lang": "pt"})
    assert attrs.evolve(kept, auth={}).token() is None
