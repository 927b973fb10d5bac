"""Authentication is a hook: JWT is its first implementation; other plugins
decide for connections without a token, refuse with their own code, and see
what the client sent at connect on the session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from socketio_fixtures import MemoryWebSocket
from switchboard.core import AuthError, Handshake, Identity, Session, hookimpl, incoming
from switchboard.core.config import Config
from switchboard.testing import HandshakeRejected, Harness, make_config


class KioskAuth:
    """Accepts ``?kiosk=KEY`` for a kiosk user; refuses a wrong key with its own code."""

    def __init__(self) -> None:
        self.seen: list[Handshake] = []

    @hookimpl
    def switchboard_authenticate(self, handshake: Handshake) -> Identity | None:
        self.seen.append(handshake)
        key = handshake.query.get("kiosk")
        if key is None:
            return None
        if key != "k-123":
            raise AuthError("unknown kiosk", code="kiosk_unknown", status=403,
                            data={"retry": False})
        return Identity("kiosk-1", "t1", "customer", None, rooms=("lobby:main",))

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [incoming("whoami", None, self.whoami)]

    async def whoami(self, session: Session, data: Any) -> dict[str, Any]:
        handshake = session.handshake
        assert handshake is not None
        return {"user": session.user_id, "transport": handshake.transport,
                "query": dict(handshake.query),
                "auth": dict(handshake.auth) if handshake.auth else None,
                "rooms": sorted(session.rooms), "headers": dict(handshake.headers)}


class BrokenAuth:
    @hookimpl
    def switchboard_authenticate(self, handshake: Handshake) -> Identity | None:
        if handshake.query.get("broken"):
            raise RuntimeError("a bug in an authenticator")
        return None


@pytest.fixture
def kiosk() -> KioskAuth:
    return KioskAuth()


@pytest.fixture
def switchboard_plugins(kiosk: KioskAuth) -> Mapping[str, object]:
    return {"kiosk": kiosk, "broken": BrokenAuth()}


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"rooms": {"public_patterns": ["lobby:*"]}})


async def test_a_plugin_authenticates_a_connection_without_a_token(
        switchboard: Harness, kiosk: KioskAuth) -> None:
    client = await switchboard.connect(token="", path="/ws?kiosk=k-123&lang=pt",
                                       headers=[("Cookie", "sid=abc; theme=dark")])
    assert client.session["user_id"] == "kiosk-1"
    me = await client.request("whoami")
    assert me["transport"] == "websocket"
    assert me["query"] == {"kiosk": "k-123", "lang": "pt"}
    assert "lobby:main" in me["rooms"]  # granted by the authenticator
    assert me["headers"] == {}  # headers are for authentication only
    assert kiosk.seen[-1].cookies == {"sid": "abc", "theme": "dark"}


async def test_a_token_is_decided_by_jwt_first(switchboard: Harness,
                                               kiosk: KioskAuth) -> None:
    client = await switchboard.connect("ann", "t1", path="/ws?kiosk=k-123")
    assert client.session["user_id"] == "ann"
    assert kiosk.seen == []


async def test_a_plugin_refusal_reaches_the_client_with_its_code_and_status(
        switchboard: Harness) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect(token="", path="/ws?kiosk=nope")
    assert info.value.status == 403
    assert info.value.body == {"code": "kiosk_unknown", "message": "unknown kiosk",
                               "retry": False}


async def test_no_credentials_at_all_is_unauthorized(switchboard: Harness) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect(token="")
    assert (info.value.status, info.value.body["code"]) == (401, "unauthorized")


async def test_an_authenticator_that_fails_refuses_with_500_and_is_counted(
        switchboard: Harness) -> None:
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect(token="", path="/ws?broken=1")
    assert (info.value.status, info.value.body["code"]) == (500, "internal_error")
    assert ('switchboard_plugin_failures_total{hook="switchboard_authenticate",'
            'plugin="broken"} 1.0') in switchboard.app.metrics.render().decode()


async def test_socketio_connect_is_authenticated_with_the_auth_object_and_the_query(
        switchboard: Harness, kiosk: KioskAuth) -> None:
    ws = await MemoryWebSocket.connect(
        switchboard, "/socket.io/?EIO=4&transport=websocket&kiosk=k-123")
    assert str(await ws.receive()).startswith("0{")
    await ws.send('40{"device":"tablet"}')
    assert str(await ws.receive()).startswith("40{")
    await ws.send('421["whoami"]')
    answer = next(m for m in await ws.receive_until_prefix("431") if str(m).startswith("431"))
    assert '"transport":"socket.io"' in str(answer)
    assert '"auth":{"device":"tablet"}' in str(answer)
    assert kiosk.seen[-1].namespace == "/"


async def test_socketio_refusal_carries_the_plugins_code_in_connect_error(
        switchboard: Harness) -> None:
    ws = await MemoryWebSocket.connect(
        switchboard, "/socket.io/?EIO=4&transport=websocket&kiosk=nope")
    assert str(await ws.receive()).startswith("0{")
    await ws.send("40")
    refusal = str(await ws.receive())
    assert refusal.startswith("44")
    assert '"message":"unknown kiosk"' in refusal
    assert '"code":"kiosk_unknown"' in refusal


async def test_reauthentication_goes_through_the_hook_too(switchboard: Harness) -> None:
    client = await switchboard.connect("ann", "t1")
    ack = await client.request("auth", {"token": switchboard.token("ann", "t1")})
    assert ack["left"] == []
    with pytest.raises(Exception) as info:
        await client.request("auth", {"token": "garbage"})
    assert getattr(info.value, "code", None) == "unauthorized"
