"""One failure ends one thing: a bad request, a failing connection, a plugin
hook or a plugin task that raises never ends the server or another client."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
from switchboard.core import ConfigError, Session, hookimpl, incoming
from switchboard.core.config import Config
from switchboard.core.pluginmanager import Plugins
from switchboard.testing import TEST_API_KEY, Harness, TestClient, make_config

#: Upper bound for anything that should happen at once over loopback: generous, as the
#: suite runs on parallel workers of a busy machine and only a failure waits it out.
TIMEOUT = 60.0


async def exchange(live: Harness, data: bytes) -> bytes:
    """Send raw bytes to the server's port; everything it answers until it closes."""
    host, port = live.server.addresses[0]
    stream = await trio.open_tcp_stream(host, port)
    answer = b""
    with trio.fail_after(TIMEOUT):
        await stream.send_all(data)
        while chunk := await stream.receive_some(65536):
            answer += chunk
    await stream.aclose()
    return answer


async def assert_serving(live: Harness, bystander: TestClient) -> None:
    """The server answers a new request and still delivers to a connected client."""
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            health = await http.get(live.http_url("/health"))
            emitted = await http.post(
                live.http_url("/api/v1/emit"),
                headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                json={"event": "still:here", "tenant": "t1", "data": {"n": 1}})
    assert health.status_code == 200
    assert emitted.status_code == 202
    assert await bystander.expect("still:here", timeout=TIMEOUT) == {"n": 1}


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("head", [
    pytest.param(b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-ipv6-target"),
    pytest.param(b"POST /api/v1/emit HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n",
                 id="superscript-content-length"),
    pytest.param(b"POST /api/v1/emit HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                 id="negative-content-length"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: 127.0.0..1\r\n\r\n", id="malformed-host"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: [::1\r\n\r\n", id="unclosed-ipv6-host"),
    pytest.param(b"GET /health HTTP/1.1\r\nBad Header: x\r\nHost: a\r\n\r\n",
                 id="space-in-header-name"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", id="two-hosts"),
    pytest.param(b"POST /api/v1/emit HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n", id="length-and-chunked"),
    pytest.param(b"GET /health\r\n\r\n", id="no-version"),
    pytest.param(b"GET ?x HTTP/1.1\r\nHost: x\r\n\r\n", id="query-only-target"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="http2-preface"),
    pytest.param(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\xda\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n", id="non-ascii-connection-on-upgrade"),
])
async def test_a_malformed_request_head_is_answered_400_and_the_server_serves_on(
        switchboard_live: Harness, caplog: pytest.LogCaptureFixture, head: bytes) -> None:
    bystander = await switchboard_live.connect("bob", "t1")
    answer = await exchange(switchboard_live, head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b'"code": "bad_request"' in answer
    await assert_serving(switchboard_live, bystander)
    assert tracebacks(caplog) == []


async def test_an_upgrade_to_a_path_without_websockets_is_answered_404(
        switchboard_live: Harness, caplog: pytest.LogCaptureFixture) -> None:
    bystander = await switchboard_live.connect("bob", "t1")
    answer = await exchange(switchboard_live, (
        b"GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nx"))
    assert answer.startswith(b"HTTP/1.1 404 "), answer
    await assert_serving(switchboard_live, bystander)
    assert tracebacks(caplog) == []


async def test_a_head_over_the_limit_is_answered_431(switchboard_live: Harness) -> None:
    bystander = await switchboard_live.connect("bob", "t1")
    answer = await exchange(switchboard_live, b"GET /health HTTP/1.1\r\nX: "
                            + b"a" * 20000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    await assert_serving(switchboard_live, bystander)


async def test_a_bad_second_request_on_a_kept_alive_publish_connection_is_answered_400(
        switchboard_live: Harness) -> None:
    body = b'{"event":"x","tenant":"t1"}'
    first = (b"POST /api/v1/emit HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "
             + TEST_API_KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
             + b"\r\n\r\n" + body)
    answer = await exchange(switchboard_live, first + b"GET http://[::1/ HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert b"HTTP/1.1 400 " in answer


# -- a connection that fails on the server side ------------------------------


class Unencodable:
    pass


class FaultyPlugin:
    """Handlers and hooks that fail in the ways a plugin can."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [incoming("answer:garbage", None, self.garbage)]

    async def garbage(self, session: Session, data: Any) -> Any:
        return {"value": Unencodable()}  # no JSON encoder takes this


async def test_a_connection_whose_answer_cannot_be_encoded_is_closed_1011_alone(
        switchboard: Harness, caplog: pytest.LogCaptureFixture) -> None:
    bystander = await switchboard.connect("bob", "t1")
    victim = await switchboard.connect("carl", "t1")
    await victim.emit("answer:garbage", {}, id=1)
    code, _ = await victim.expect_closed()
    assert code == 1011
    failures = [r for r in tracebacks(caplog) if "websocket session" in r.getMessage()]
    assert len(failures) == 1
    assert "switchboard_connection_failures_total 1.0" in (
        switchboard.app.metrics.render().decode())
    await switchboard.app.publish("t1", "tenant:t1", "still:here", {"n": 1})
    assert await bystander.expect("still:here") == {"n": 1}
    newcomer = await switchboard.connect("dan", "t1")
    assert newcomer.session["user_id"] == "dan"


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"faulty": FaultyPlugin()}


@pytest.fixture
def switchboard_config() -> Config:
    return make_config()


# -- hooks: through pluggy, one implementation at a time ---------------------


class Recorder:
    """Records hook calls in a shared list, to see their order."""

    def __init__(self, calls: list[str], name: str, *, fail: bool = False) -> None:
        self.calls = calls
        self.name = name
        self.fail = fail

    @hookimpl
    async def switchboard_session_closed(self, session: Session, reason: str) -> None:
        self.calls.append(f"{self.name}:start")
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise RuntimeError(f"{self.name} is broken")
        self.calls.append(f"{self.name}:end")


class FirstRecorder(Recorder):
    @hookimpl(tryfirst=True)
    async def switchboard_session_closed(self, session: Session, reason: str) -> None:
        await super().switchboard_session_closed(session, reason)


class Wrapper:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(wrapper=True)
    def switchboard_authorize_join(self, session: Session, room: str) -> Any:
        self.calls.append(f"wrapper:{room}")
        return (yield)


def _plugins(**objs: object) -> Plugins:
    return Plugins(make_config(), objs, use_entry_points=False)


async def test_async_hooks_run_one_at_a_time_in_pluggy_order_and_a_failure_stops_none(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    plugins = _plugins(a=Recorder(calls, "a", fail=True), b=Recorder(calls, "b"),
                       c=FirstRecorder(calls, "c"))
    failed: list[tuple[str, str]] = []
    await plugins.notify("switchboard_session_closed",
                         lambda plugin, hook, exc: failed.append((plugin, hook)),
                         session=object(), reason="client")
    # tryfirst first; then the latest registered first (pluggy's order); each
    # finishes before the next starts; the failing one does not stop the rest
    assert calls == ["c:start", "c:end", "b:start", "b:end", "a:start"]
    assert failed == [("a", "switchboard_session_closed")]


def test_hook_wrappers_apply_to_each_implementation() -> None:
    calls: list[str] = []

    class Allow:
        @hookimpl
        def switchboard_authorize_join(self, session: Session, room: str) -> bool:
            calls.append("allow")
            return True

    plugins = _plugins(wrapper=Wrapper(calls), allow=Allow())
    [(name, call)] = plugins.callers("switchboard_authorize_join")
    assert name == "allow"
    assert call(session=object(), room="lobby") is True
    assert calls == ["wrapper:lobby", "allow"]


@pytest.mark.parametrize("plugin, message", [
    pytest.param(type("Typo", (), {"switchboard_sesion_closed": hookimpl(lambda self: None)})(),
                 "'switchboard_sesion_closed' is not a Switchboard hook", id="misspelled"),
    pytest.param(type("NoMarker", (), {"switchboard_startup": lambda self, app: None})(),
                 "'switchboard_startup' is not marked with @hookimpl", id="unmarked"),
    pytest.param(type("BadArgs", (), {
        "switchboard_session_closed": hookimpl(lambda self, session, why: None)})(),
        "switchboard_session_closed", id="unknown-argument"),
])
def test_a_hook_that_does_not_exist_or_fit_is_refused_at_start_up(plugin: object,
                                                                     message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _plugins(broken=plugin)
    assert info.value.key == "plugins.broken"
    assert message in str(info.value)


class BrokenHooks:
    """Every notification hook raises; the join policy raises too."""

    @hookimpl
    async def switchboard_session_opened(self, session: Session) -> None:
        raise RuntimeError("opened is broken")

    @hookimpl
    def switchboard_session_closed(self, session: Session) -> None:
        raise RuntimeError("closed is broken")

    @hookimpl
    def switchboard_authorize_join(self, session: Session, room: str) -> bool:
        raise RuntimeError("policy is broken")


class TestBrokenHooks:
    @pytest.fixture
    def switchboard_plugins(self) -> Mapping[str, object]:
        return {"broken": BrokenHooks()}

    async def test_clients_are_served_while_every_hook_of_a_plugin_raises(
            self, switchboard: Harness, caplog: pytest.LogCaptureFixture) -> None:
        watcher = await switchboard.connect("ann", "t1")
        leaver = await switchboard.connect("bob", "t1")
        # presence still announced bob: the broken plugin did not stop the others
        assert (await watcher.expect("user:online"))["userId"] in ("ann", "bob")
        await leaver.close()
        await switchboard.app.publish("t1", "tenant:t1", "still:here", {})
        assert await watcher.expect("still:here") == {}
        # a join policy that raises refuses (fails closed) instead of allowing
        with pytest.raises(Exception) as info:
            await watcher.request("room:join", {"room": "lead:1"})
        assert getattr(info.value, "code", None) == "forbidden"
        metrics = switchboard.app.metrics.render().decode()
        assert ('switchboard_plugin_failures_total{hook="switchboard_session_closed",'
                'plugin="broken"} 1.0') in metrics
        assert ('switchboard_plugin_failures_total{hook="switchboard_session_opened",'
                'plugin="broken"} 2.0') in metrics


# -- plugin tasks ------------------------------------------------------------


class TaskPlugin:
    def __init__(self) -> None:
        self.runs: list[float] = []
        self.five_runs = trio.Event()
        self.app: Any = None

    @hookimpl
    def switchboard_startup(self, app: Any) -> None:
        self.app = app

    @hookimpl
    def switchboard_background_tasks(self) -> list[Any]:
        return [self.flaky]

    async def flaky(self) -> None:
        self.runs.append(trio.current_time())
        if len(self.runs) == 5:
            self.five_runs.set()
        await trio.lowlevel.checkpoint()
        raise RuntimeError(f"run {len(self.runs)} failed")

    async def one_off(self) -> None:
        raise RuntimeError("a helper task failed")


class TestPluginTasks:
    @pytest.fixture
    def plugin(self) -> TaskPlugin:
        return TaskPlugin()

    @pytest.fixture
    def switchboard_plugins(self, plugin: TaskPlugin) -> Mapping[str, object]:
        return {"tasks": plugin}

    async def test_a_background_task_that_raises_is_restarted_with_back_off(
            self, switchboard: Harness, plugin: TaskPlugin) -> None:
        client = await switchboard.connect("ann", "t1")
        await plugin.five_runs.wait()
        gaps = [round(b - a, 3) for a, b in zip(plugin.runs, plugin.runs[1:], strict=False)]
        assert gaps == [1, 2, 4, 8]  # 1 s, doubling
        metrics = switchboard.app.metrics.render().decode()
        assert ('switchboard_plugin_failures_total{hook="background_task",plugin="tasks"}'
                in metrics)
        await switchboard.app.publish("t1", "tenant:t1", "still:here", {})
        assert await client.expect("still:here") == {}

    async def test_a_task_started_in_app_nursery_that_raises_is_logged_not_fatal(
            self, switchboard: Harness, plugin: TaskPlugin,
            caplog: pytest.LogCaptureFixture) -> None:
        client = await switchboard.connect("ann", "t1")
        plugin.app.nursery.start_soon(plugin.one_off)
        await trio.sleep(0.1)
        assert any("a helper task failed" in r.getMessage() for r in tracebacks(caplog))
        await switchboard.app.publish("t1", "tenant:t1", "still:here", {})
        assert await client.expect("still:here") == {}


class TestMixedKeyFamilies:
    """``auth.algorithms`` naming algorithms of two key families."""

    @pytest.fixture
    def switchboard_config(self) -> Config:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return make_config({"auth": {"secret": "", "public_key": pem,
                                     "algorithms": ["RS256", "HS256"]}})

    async def test_a_token_of_the_other_family_is_refused_401_over_a_real_socket(
            self, switchboard_live: Harness) -> None:
        from trio_websocket import ConnectionRejected, open_websocket_url

        token = switchboard_live.token("eve", "t1", secret="some-hmac-secret-0123456789abcdefghij")
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(switchboard_live.ws_url(token)):
                pass
        assert info.value.status_code == 401
        async with httpx.AsyncClient(timeout=60) as http:
            health = await http.get(switchboard_live.http_url("/health"))
        assert health.status_code == 200


async def test_a_handshake_that_fails_on_the_server_is_answered_500_alone(
        switchboard_live: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    bystander = await switchboard_live.connect("bob", "t1")

    def broken(token: str | None) -> Any:
        raise RuntimeError("a bug in a verifier")

    monkeypatch.setattr(switchboard_live.app, "authenticate", broken)
    answer = await exchange(switchboard_live, (
        b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 500 "), answer
    monkeypatch.undo()
    await assert_serving(switchboard_live, bystander)


async def test_a_publish_that_fails_on_the_server_is_answered_500_alone(
        switchboard_live: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    bystander = await switchboard_live.connect("bob", "t1")

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the hub")

    monkeypatch.setattr(switchboard_live.app.hub, "publish", broken)
    body = b'{"event":"x","tenant":"t1"}'
    answer = await exchange(switchboard_live, (
        b"POST /api/v1/emit HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "
        + TEST_API_KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\n\r\n" + body))
    assert answer.startswith(b"HTTP/1.1 500 "), answer
    assert b"internal_error" in answer
    monkeypatch.undo()
    await assert_serving(switchboard_live, bystander)


async def test_a_served_task_that_fails_is_started_again_and_its_starter_told_once(
        autojump_clock: trio.testing.MockClock) -> None:
    from switchboard.core import keep_serving

    starts: list[float] = []
    reports: list[str] = []

    async def writer(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) < 3:
            raise RuntimeError(f"failure {len(starts)}")

    async with trio.open_nursery() as nursery:
        await nursery.start(keep_serving, writer, "test: writer",
                            lambda what, exc: reports.append(f"{what}: {exc}"))
    assert reports == ["test: writer: failure 1", "test: writer: failure 2"]
    assert [round(starts[1] - starts[0]), round(starts[2] - starts[1])] == [1, 2]  # doubling


class Later:
    """A plugin route that starts work outliving its request."""

    app: Any
    contexts: list[list[object]]

    @hookimpl
    def switchboard_startup(self, app: Any) -> None:
        self.app = app
        self.contexts = []

    @hookimpl
    def switchboard_blueprints(self) -> Any:
        from quart import Blueprint

        bp = Blueprint("later", __name__)

        @bp.post("/api/v1/later")
        async def later() -> Any:
            self.app.nursery.start_soon(self.work)
            return {}, 202

        return bp

    async def work(self) -> None:
        import contextvars

        self.contexts.append(list(contextvars.copy_context().values()))


@pytest.mark.parametrize("switchboard_plugins", [{"later": Later}])
async def test_work_a_request_starts_in_the_servers_nursery_keeps_nothing_of_it(
        switchboard: Harness) -> None:
    """A task of ``app.nursery`` outlives the request that started it: it must
    not keep that request (the framework's request context, its headers)."""
    from quart.ctx import RequestContext

    response = await switchboard.http().post("/api/v1/later")
    assert response.status_code == 202
    await trio.testing.wait_all_tasks_blocked()
    plugin = switchboard.app.plugins.pm.get_plugin("later")
    assert len(plugin.contexts) == 1
    assert not any(isinstance(value, RequestContext) for value in plugin.contexts[0])
