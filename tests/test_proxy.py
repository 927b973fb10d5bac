"""The backend bridge against a real HTTP backend: the connect, join and
event proxies, with the backend answering, refusing, slow, down or talking
nonsense. Clients are real WebSocket clients on the real port."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import trio
from backends import Backend, InProcess, backend_fixture  # noqa: F401  (the backend fixture)
from switchboard.core.config import Config
from switchboard.plugins.proxy import ProxyPlugin
from switchboard.testing import HandshakeRejected, Harness, make_config
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

TIMEOUT = 60.0
#: Real seconds the proxy waits for a backend that answers (the machine may be busy).
PROXY_TIMEOUT = 10.0
#: Real seconds the proxy waits for a backend that hangs on purpose (tests marked
#: ``backend_hangs``).
HANG_TIMEOUT = 0.5


def proxy_config(backend: Backend, **settings: Any) -> Config:
    proxy = {"connect_url": backend.url("/connect"), "join_url": backend.url("/join"),
             "join_rooms": ["lead:*"], "event_url": backend.url("/event"),
             "events": ["lead:*", "callback:*"], "forward_cookies": ["session"],
             "timeout": PROXY_TIMEOUT, "headers": {"X-Backend-Key": "b-secret"},
             **settings}
    return make_config({"plugins": {"proxy": proxy},
                        "limits": {"events": {"lead:update": {"rate": 1, "burst": 2}}}})


@pytest.fixture
def proxy_settings(request: pytest.FixtureRequest) -> Mapping[str, Any]:
    return {"timeout": HANG_TIMEOUT} if "backend_hangs" in request.keywords else {}


@pytest.fixture
def switchboard_config(backend: Backend, proxy_settings: Mapping[str, Any]) -> Config:
    return proxy_config(backend, **proxy_settings)


def ws_url(live: Harness, query: str = "") -> str:
    host, port = live.server.addresses[0]
    return f"ws://{host}:{port}/ws{query}"


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        frame: dict[str, Any] = json.loads(await ws.get_message())
    return frame


async def request(ws: WebSocketConnection, type: str, data: Any, ident: int) -> dict[str, Any]:
    await ws.send_message(json.dumps({"type": type, "data": data, "id": ident}))
    while True:
        frame = await receive(ws)
        if frame.get("id") == ident:
            return frame


def vouch(user: str = "u7", tenant: str = "acme", **extra: Any) -> Any:
    return lambda body: {"result": {"user": user, "tenant": tenant, "role": "customer",
                                    **extra}}


# -- connect -----------------------------------------------------------------------


async def test_a_connection_without_a_token_is_who_the_backend_says(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/connect", vouch(rooms=["lobby:main"], data={"plan": "gold"}))
    async with open_websocket_url(
            ws_url(switchboard_live, "?companyId=acme&userId=u7"),
            extra_headers=[("Cookie", "session=s3cr3t; tracking=xyz"),
                           ("User-Agent", "tests")]) as ws:
        session = (await receive(ws))["data"]
        assert (session["user_id"], session["tenant_id"], session["role"]) == (
            "u7", "acme", "customer")
    [call] = backend.calls_to("/connect")
    assert call.headers["X-Backend-Key"] == "b-secret"
    body = call.json
    assert body["transport"] == "websocket"
    assert body["query"] == {"companyId": "acme", "userId": "u7"}
    assert body["cookies"] == {"session": "s3cr3t"}  # the allow-listed one only
    assert body["headers"] == {"user-agent": "tests"}  # no cookie header, no others
    assert body["remote_addr"] == "127.0.0.1"


async def test_the_backends_refusal_reaches_the_client_with_its_code_and_status(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/connect", lambda body: {"error": {"code": "session_expired",
                                                   "message": "log in again",
                                                   "status": 401}})
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(ws_url(switchboard_live)):
            pass
    assert info.value.status_code == 401
    assert json.loads(info.value.body or b"{}") == {"code": "session_expired",
                                                    "message": "log in again"}


@pytest.mark.parametrize("failure, status, code", [
    pytest.param("slow", 503, "backend_unavailable", marks=pytest.mark.backend_hangs),
    ("http-500", 503, "backend_unavailable"),
    ("not-json", 502, "backend_error"),
    ("no-result", 502, "backend_error"),
    ("bad-identity", 502, "backend_error"),
    ("other-tenant-room", 502, "backend_error"),
])
async def test_a_backend_that_fails_gives_a_clear_error_never_a_hang(
        switchboard_live: Harness, backend: Backend, failure: str, status: int,
        code: str) -> None:
    answers: dict[str, Any] = {
        "slow": None,
        "http-500": (500, b"boom"),
        "not-json": (200, b"<html>"),
        "no-result": {"answer": 1},
        "bad-identity": {"result": {"user": ["u7"], "tenant": "acme"}},
        "other-tenant-room": {"result": {"user": "u7", "tenant": "acme",
                                         "rooms": ["not a room!"]}},
    }
    if failure == "slow":
        backend.hang = trio.Event()
    backend.on("/connect", lambda body: answers[failure])
    bystander = await switchboard_live.connect("bob", "acme")
    started = trio.current_time()
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(ws_url(switchboard_live)):
            pass
    # refused after the proxy timeout, not hanging until the client gives up
    assert trio.current_time() - started < HANG_TIMEOUT + 10
    assert info.value.status_code == status
    assert json.loads(info.value.body or b"{}")["code"] == code
    await switchboard_live.app.publish("acme", "tenant:acme", "still:here", {})
    assert await bystander.expect("still:here", timeout=TIMEOUT) == {}


async def test_a_token_is_decided_by_jwt_without_asking_the_backend(
        switchboard_live: Harness, backend: Backend) -> None:
    token = switchboard_live.token("ann", "acme")
    async with open_websocket_url(switchboard_live.ws_url(token)) as ws:
        assert (await receive(ws))["data"]["user_id"] == "ann"
    assert backend.calls_to("/connect") == []


class TestBackendDown:
    @pytest.fixture
    def proxy_settings(self) -> Mapping[str, Any]:
        return {"connect_url": "http://127.0.0.1:9/connect"}  # nothing listens there

    async def test_a_backend_that_refuses_connections_is_backend_unavailable(
            self, switchboard_live: Harness) -> None:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url(switchboard_live)):
                pass
        assert info.value.status_code == 503
        assert json.loads(info.value.body or b"{}")["code"] == "backend_unavailable"


class TestCache:
    @pytest.fixture
    def proxy_settings(self) -> Mapping[str, Any]:
        return {"cache_seconds": 60}

    async def test_the_same_credentials_ask_the_backend_once_while_cached(
            self, switchboard_live: Harness, backend: Backend) -> None:
        backend.on("/connect", vouch())
        for _ in range(3):
            async with open_websocket_url(ws_url(switchboard_live, "?userId=u7"),
                                          extra_headers=[("Cookie", "session=s1")]) as ws:
                assert (await receive(ws))["data"]["user_id"] == "u7"
        async with open_websocket_url(ws_url(switchboard_live, "?userId=u7"),
                                      extra_headers=[("Cookie", "session=s2")]) as ws:
            await receive(ws)
        assert len(backend.calls_to("/connect")) == 2  # s1 once, s2 once


async def test_calls_past_the_limit_wait_for_a_slot_within_the_timeout(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery,
        backend: Backend) -> None:
    """One slot and a backend that never answers: the first connect holds the
    slot until its timeout, the two behind it wait for it within the same
    timeout and give up with it, so all three are refused at 0.5 s and the
    backend saw one call. On the mock clock (the backend answers in-process),
    so a busy machine cannot stretch the waits apart."""
    proxy = ProxyPlugin()
    proxy.transport = InProcess(backend.app)
    config = proxy_config(backend, max_in_flight=1, timeout=HANG_TIMEOUT)
    harness = await Harness.start(config, nursery, clock=autojump_clock,
                                  plugins={"proxy": proxy})
    backend.on("/connect", vouch())
    backend.hang = trio.Event()
    refused: list[tuple[int, str, float]] = []

    async def attempt() -> None:
        with pytest.raises(HandshakeRejected) as info:
            await harness.connect(token="")
        refused.append((info.value.status, info.value.body.get("code", ""),
                        trio.current_time() - started))

    started = trio.current_time()
    async with trio.open_nursery() as attempts:
        for _ in range(3):
            attempts.start_soon(attempt)
    assert refused == [(503, "backend_unavailable", HANG_TIMEOUT)] * 3
    assert len(backend.calls_to("/connect")) == 1  # one slot: one call at a time
    backend.hang.set()  # a backend that answers again: the slot is free
    client = await harness.connect(token="")
    assert client.session["user_id"] == "u7"


# -- join --------------------------------------------------------------------------


async def test_the_backend_decides_joins_of_its_rooms(switchboard_live: Harness,
                                                      backend: Backend) -> None:
    backend.on("/join", lambda body: {"result": {"allow": body["room"] == "lead:7"}})
    client = await switchboard_live.connect("carl", "acme", role="customer")
    assert await client.request("room:join", {"room": "lead:7"}) == {"room": "lead:7"}
    with pytest.raises(Exception) as info:
        await client.request("room:join", {"room": "lead:8"})
    assert getattr(info.value, "code", None) == "forbidden"
    agent = await switchboard_live.connect("ann", "acme", role="agent")
    with pytest.raises(Exception) as info:  # the backend says no even to an agent
        await agent.request("room:join", {"room": "lead:8"})
    assert getattr(info.value, "code", None) == "forbidden"
    assert await agent.request("room:join", {"room": "ticket:1"}) == {"room": "ticket:1"}
    assert [c.json["room"] for c in backend.calls_to("/join")] == ["lead:7", "lead:8",
                                                                   "lead:8"]
    body = backend.calls_to("/join")[0].json
    assert (body["user"], body["tenant"], body["role"]) == ("carl", "acme", "customer")


@pytest.mark.parametrize("answer, code", [
    ({"error": {"code": "lead_closed", "message": "this lead is closed"}}, "lead_closed"),
    ((503, b"maintenance"), "backend_unavailable"),
    ({"result": {"allow": "yes"}}, "backend_error"),
])
async def test_a_join_the_backend_refuses_or_fails_answers_its_code(
        switchboard_live: Harness, backend: Backend, answer: Any, code: str) -> None:
    backend.on("/join", lambda body: answer)
    client = await switchboard_live.connect("carl", "acme", role="customer")
    with pytest.raises(Exception) as info:
        await client.request("room:join", {"room": "lead:7"})
    assert getattr(info.value, "code", None) == code


# -- events ------------------------------------------------------------------------


async def test_an_event_no_plugin_handles_goes_to_the_backend_and_its_answer_back(
        switchboard_live: Harness, backend: Backend) -> None:
    def event(body: dict[str, Any]) -> Any:
        lead = body["payload"]["leadId"]
        return {"result": {"ok": True, "lead": lead},
                "publish": [{"room": f"lead:{lead}", "event": "lead:updated",
                             "data": body["payload"]},
                            {"user": "ann", "event": "notification:new",
                             "data": {"title": "lead changed"}}]}

    backend.on("/event", event)
    backend.on("/join", lambda body: {"result": {"allow": True}})
    ann = await switchboard_live.connect("ann", "acme", role="agent")
    await ann.request("room:join", {"room": "lead:7"})
    carl = await switchboard_live.connect("carl", "acme", role="customer")
    ack = await carl.request("lead:update", {"leadId": 7, "field": "value", "value": 10})
    assert ack == {"ok": True, "lead": 7}
    assert await ann.expect("lead:updated", timeout=TIMEOUT) == {
        "leadId": 7, "field": "value", "value": 10}
    assert (await ann.expect("notification:new", timeout=TIMEOUT))["title"] == "lead changed"
    body = backend.calls_to("/event")[0].json
    assert (body["event"], body["user"], body["tenant"]) == ("lead:update", "carl", "acme")


async def test_events_outside_the_patterns_stay_unknown(switchboard_live: Harness,
                                                        backend: Backend) -> None:
    client = await switchboard_live.connect("carl", "acme", role="customer")
    with pytest.raises(Exception) as info:
        await client.request("invoice:pay", {})
    assert getattr(info.value, "code", None) == "unknown_event"
    assert backend.calls_to("/event") == []


async def test_a_backend_answer_publishing_into_another_tenant_is_refused_whole(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/event", lambda body: {"result": 1, "publish": [
        {"event": "x", "data": 1},
        {"tenant": "globex", "event": "x", "data": 2}]})
    carl = await switchboard_live.connect("carl", "acme", role="customer")
    spy = await switchboard_live.connect("gus", "globex", role="agent")
    with pytest.raises(Exception) as info:
        await carl.request("lead:update", {})
    assert getattr(info.value, "code", None) == "backend_error"
    await spy.settle(0.2)
    assert spy.received("x") == [] and carl.received("x") == []


async def test_forwarded_events_are_rate_limited_like_any_event(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/event", lambda body: {"result": None})
    carl = await switchboard_live.connect("carl", "acme", role="customer")
    await carl.request("lead:update", {})
    await carl.request("lead:update", {})
    with pytest.raises(Exception) as info:
        await carl.request("lead:update", {})
    assert getattr(info.value, "code", None) == "rate_limited"
    assert len(backend.calls_to("/event")) == 2


@pytest.mark.backend_hangs
async def test_a_slow_event_backend_answers_backend_unavailable_in_time(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/event", lambda body: {"result": 1})
    backend.hang = trio.Event()
    carl = await switchboard_live.connect("carl", "acme", role="customer")
    started = trio.current_time()
    with pytest.raises(Exception) as info:
        await carl.request("callback:request", {"leadId": 1})
    assert getattr(info.value, "code", None) == "backend_unavailable"
    # refused after the proxy timeout, not hanging until the client gives up
    assert trio.current_time() - started < HANG_TIMEOUT + 10
    assert await carl.request("presence:list") is not None  # the connection goes on


async def test_binary_data_of_a_socketio_event_is_refused_not_forwarded(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/event", lambda body: {"result": "forwarded"})
    token = switchboard_live.token("carl", "acme", "customer")
    async with open_websocket_url(ws_url(switchboard_live).replace(
            "/ws", f"/socket.io/?EIO=4&transport=websocket&token={token}")) as ws:
        await ws.get_message()  # open
        await ws.send_message("40")
        while not (await ws.get_message()).startswith("40"):
            pass
        await ws.send_message('451-1["lead:update",{"leadId":7,"files":['
                              '{"_placeholder":true,"num":0}]}]')
        await ws.send_message(b"\x00\xff")
        await ws.send_message('422["lead:update",{"leadId":7}]')
        answers = {}
        while len(answers) < 2:
            with trio.fail_after(TIMEOUT):
                message = await ws.get_message()
            if isinstance(message, str) and message[:3] in ("431", "432"):
                answers[message[2]] = json.loads(message[3:])[0]
    error = answers["1"]["error"]
    assert (error["code"], error["field"]) == ("invalid_payload", "files.0")
    assert answers["2"] == "forwarded"  # the connection goes on
    assert [call.json["payload"] for call in backend.calls_to("/event")] == [{"leadId": 7}]
