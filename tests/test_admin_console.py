"""The admin console over the real listener: its login, CSRF tokens, what it
shows and hides, its socket and its tail (httpx and trio-websocket clients);
the socket's timers on the mock clock; the redaction of settings."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from admin_console import CONSOLE, PASSWORD, console_config, log_in, logged_in
from databases import database_down, database_url
from switchboard.core.admin.login import SESSION_COOKIE
from switchboard.core.admin.redact import HIDDEN, redact, redact_url
from switchboard.testing import TEST_API_KEY, Harness, make_config
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

WEBHOOK_SECRET = "webhook-signing-secret-4f1d9c"
PROXY_HEADER = "backend-key-8e2b71aa"
COOKIE_SECRET = "cookie-signing-secret-0123456789abcdef"


async def serve(config: Any, nursery: trio.Nursery) -> Harness:
    return await Harness.start(config, nursery, listen=True)


@pytest.fixture
async def live(nursery: trio.Nursery) -> AsyncIterator[Harness]:
    """A listening server with the console at /admin."""
    harness = await serve(console_config(), nursery)
    yield harness
    await harness.stop()


@pytest.fixture
async def browser(live: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``live`` that keeps cookies, as a browser does."""
    async with httpx.AsyncClient(base_url=live.http_url()) as client:
        yield client


def socket_url(harness: Harness, csrf: str) -> str:
    return f"ws://127.0.0.1:{harness.server.port}{CONSOLE}/socket?csrf={csrf}"


def cookie_header(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    return [("Cookie", f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}")]


async def next_of(ws: WebSocketConnection, kind: str) -> dict[str, Any]:
    """The next message of ``kind`` on the console socket (others skipped)."""
    with trio.fail_after(10):
        while True:
            message = json.loads(await ws.get_message())
            if message["type"] == kind:
                return message  # type: ignore[no-any-return]


# -- off unless configured ---------------------------------------------------------


async def test_console_is_off_unless_configured(nursery: trio.Nursery) -> None:
    harness = await serve(make_config(), nursery)
    try:
        async with httpx.AsyncClient(base_url=harness.http_url()) as client:
            for path in ("/admin/", "/admin/login", "/admin/state.json"):
                assert (await client.get(path)).status_code == 404
            assert (await client.post("/admin/login", data={"password": "x"})).status_code \
                == 404
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(
                    f"ws://127.0.0.1:{harness.server.port}/admin/socket"):
                pass
        assert rejected.value.status_code == 404
    finally:
        await harness.stop()


@pytest.mark.parametrize(("admin", "key"), [
    ({"path": "/admin"}, "admin.password"),
    ({"path": "/admin", "password": "short"}, "admin.password"),
    ({"path": "admin", "password": PASSWORD}, "admin.path"),
    ({"path": "/ws", "password": PASSWORD}, "admin.path"),
    ({"path": "/api/admin", "password": PASSWORD}, "admin.path"),
    ({"path": "/admin", "password": PASSWORD, "secret": "too short"}, "admin.secret"),
])
def test_a_console_config_without_a_safe_login_is_refused(admin: dict[str, Any],
                                                          key: str) -> None:
    from switchboard.core.config import ConfigError
    with pytest.raises(ConfigError) as refused:
        make_config({"admin": admin})
    assert refused.value.key == key


# -- the login ---------------------------------------------------------------------


async def test_every_page_needs_a_login(browser: httpx.AsyncClient) -> None:
    bare = await browser.get(CONSOLE)
    assert (bare.status_code, bare.headers["location"]) == (303, f"{CONSOLE}/")
    page = await browser.get(f"{CONSOLE}/")
    assert page.status_code == 303
    assert page.headers["location"] == f"{CONSOLE}/login"
    state = await browser.get(f"{CONSOLE}/state.json")
    assert state.status_code == 401
    assert state.json()["code"] == "unauthorized"
    publish = await browser.post(f"{CONSOLE}/publish",
                                 json={"tenant": "t1", "event": "x", "data": "{}"})
    assert publish.status_code == 401


async def test_the_right_password_logs_in_with_a_strict_http_only_cookie(
        browser: httpx.AsyncClient) -> None:
    answer = await log_in(browser)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{CONSOLE}/"
    cookie = next(v for k, v in answer.headers.multi_items()
                  if k == "set-cookie" and v.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert f"Path={CONSOLE}" in cookie
    page = await browser.get(f"{CONSOLE}/")
    assert page.status_code == 200
    assert "Switchboard console" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_a_wrong_password_is_refused(browser: httpx.AsyncClient) -> None:
    answer = await log_in(browser, password="correct horse battery stapl")
    assert answer.status_code == 401
    assert "Wrong password" in answer.text
    assert SESSION_COOKIE not in browser.cookies
    assert (await browser.get(f"{CONSOLE}/state.json")).status_code == 401


async def test_a_forged_session_cookie_is_refused(live: Harness) -> None:
    async with httpx.AsyncClient(base_url=live.http_url(),
                                 cookies={SESSION_COOKIE: "WyJhIiwiYiJd.x.y"}) as client:
        assert (await client.get(f"{CONSOLE}/state.json")).status_code == 401


async def test_a_login_post_without_the_forms_token_is_refused(
        browser: httpx.AsyncClient) -> None:
    await browser.get(f"{CONSOLE}/login")  # the form's cookie, but not its token
    answer = await browser.post(f"{CONSOLE}/login", data={"password": PASSWORD})
    assert answer.status_code == 403
    assert SESSION_COOKIE not in browser.cookies


async def test_login_attempts_are_rate_limited(browser: httpx.AsyncClient) -> None:
    for _ in range(5):  # admin.login_rate's burst
        assert (await log_in(browser, password="guess-guess-guess")).status_code == 401
    answer = await log_in(browser)  # even the right password, now
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) >= 1
    assert SESSION_COOKIE not in browser.cookies


async def test_an_api_key_for_every_tenant_logs_in_when_allowed(
        nursery: trio.Nursery) -> None:
    harness = await serve(console_config({"admin": {"password": "", "api_keys": True}}),
                          nursery)
    try:
        async with httpx.AsyncClient(base_url=harness.http_url()) as client:
            assert (await log_in(client, password=PASSWORD)).status_code == 401
            assert (await log_in(client, password=TEST_API_KEY)).status_code == 303
            assert (await client.get(f"{CONSOLE}/state.json")).status_code == 200
    finally:
        await harness.stop()


async def test_logging_out_ends_the_session(browser: httpx.AsyncClient) -> None:
    csrf = await logged_in(browser)
    cookie = browser.cookies[SESSION_COOKIE]
    answer = await browser.post(f"{CONSOLE}/logout", data={"csrf": csrf})
    assert answer.status_code == 303
    browser.cookies.set(SESSION_COOKIE, cookie, path=CONSOLE)  # a copy kept elsewhere
    assert (await browser.get(f"{CONSOLE}/state.json")).status_code == 401


async def test_a_logout_is_remembered_across_a_restart(nursery: trio.Nursery) -> None:
    """With a configured secret, cookies outlive a restart; a logged-out one
    does not come back with it (nor on a node started after the logout:
    both read the logouts from the store)."""
    harness = await serve(console_config({"admin": {"secret": COOKIE_SECRET}}), nursery)
    cookies: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=harness.http_url()) as browser:
        for name in ("kept", "left"):
            browser.cookies.clear()
            csrf = await logged_in(browser)
            cookies[name] = browser.cookies[SESSION_COOKIE]
        answer = await browser.post(f"{CONSOLE}/logout", data={"csrf": csrf})
        assert answer.status_code == 303
    await harness.restart()
    try:
        for name, status in (("kept", 200), ("left", 401)):
            async with httpx.AsyncClient(base_url=harness.http_url()) as browser:
                browser.cookies.set(SESSION_COOKIE, cookies[name], path=CONSOLE)
                assert (await browser.get(f"{CONSOLE}/state.json")).status_code == status, name
    finally:
        await harness.stop()


async def test_a_logout_while_the_database_is_down_still_ends_the_session(
        nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The logout cannot be stored: the session still ends on this node, and
    the log says a restart would accept its cookie again (PostgreSQL refusing
    connections, as in a restart or a failover)."""
    with database_url("postgresql", tmp_path, tables=True) as url:
        harness = await serve(console_config({"store": {"url": url}}), nursery)
        try:
            async with httpx.AsyncClient(base_url=harness.http_url()) as browser:
                csrf = await logged_in(browser)
                cookie = browser.cookies[SESSION_COOKIE]
                with database_down(url):
                    answer = await browser.post(f"{CONSOLE}/logout", data={"csrf": csrf})
                    assert answer.status_code == 303
                    assert answer.headers["location"].endswith("/login")
                browser.cookies.set(SESSION_COOKIE, cookie, path=CONSOLE)
                assert (await browser.get(f"{CONSOLE}/state.json")).status_code == 401
        finally:
            await harness.stop()
    assert any("a logout could not be stored" in r.getMessage() for r in caplog.records)


# -- CSRF --------------------------------------------------------------------------


async def test_publishing_needs_the_sessions_csrf_token(live: Harness,
                                                        browser: httpx.AsyncClient) -> None:
    csrf = await logged_in(browser)
    body = {"tenant": "t1", "room": "lobby", "event": "test:ping", "data": '{"n": 1}'}
    url = f"{CONSOLE}/publish"
    missing = await browser.post(url, json=body)
    assert (missing.status_code, missing.json()["code"]) == (403, "csrf")
    # (another last character: replacing it with "x" left one token in 64 unchanged)
    wrong_token = csrf[:-1] + ("y" if csrf.endswith("x") else "x")
    wrong = await browser.post(url, json=body, headers={"X-CSRF-Token": wrong_token})
    assert (wrong.status_code, wrong.json()["code"]) == (403, "csrf")
    form = await browser.post(url, data={**body, "csrf": "not-the-token"})
    assert form.status_code == 403
    foreign = await browser.post(url, json=body, headers={
        "X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert (foreign.status_code, foreign.json()["code"]) == (403, "forbidden")
    ok = await browser.post(url, json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 202
    assert ok.json() == {"published": 1, "tenant": "t1", "room": "lobby"}


async def test_a_published_test_event_reaches_a_client(live: Harness,
                                                       browser: httpx.AsyncClient) -> None:
    client = await live.connect("alice", "t1")
    csrf = await logged_in(browser)
    answer = await browser.post(f"{CONSOLE}/publish", data={
        "csrf": csrf, "tenant": "t1", "room": "", "event": "test:ping",
        "data": '{"hello": "world"}'})
    assert answer.status_code == 303  # the form without the script goes back to the page
    assert await client.expect("test:ping") == {"hello": "world"}


async def test_a_bad_test_event_is_answered_with_its_field(browser: httpx.AsyncClient) -> None:
    csrf = await logged_in(browser)
    answer = await browser.post(f"{CONSOLE}/publish", headers={"X-CSRF-Token": csrf}, json={
        "tenant": "t1", "room": "lobby", "event": "test:ping", "data": "{not json"})
    assert answer.status_code == 400
    assert answer.json()["field"] == "data"
    answer = await browser.post(f"{CONSOLE}/publish", headers={"X-CSRF-Token": csrf}, json={
        "tenant": "t1", "room": "no spaces", "event": "test:ping", "data": "1"})
    assert answer.status_code == 400
    assert answer.json()["field"] == "room"


# -- what it shows -----------------------------------------------------------------


async def test_connections_rooms_and_presence_show_a_connected_client(
        live: Harness, browser: httpx.AsyncClient) -> None:
    await logged_in(browser)
    async with open_websocket_url(live.ws_url(live.token("alice", "acme", "agent"))) as ws:
        await ws.get_message()  # its session frame: it is attached
        state = (await browser.get(f"{CONSOLE}/state.json")).json()
        (row,) = state["connections"]["rows"]
        assert (row["tenant"], row["user"], row["transport"], row["namespace"]) == (
            "acme", "alice", "ws", "-")
        assert state["connections"]["groups"] == [{
            "tenant": "acme", "transport": "ws", "namespace": "-", "connections": 1,
            "users": 1}]
        rooms = {(r["tenant"], r["room"]): r["users"] for r in state["rooms"]["rows"]}
        assert rooms[("acme", "user:alice")] == ["alice"]
        assert rooms[("acme", "tenant:acme:agents")] == ["alice"]
        assert [(p["user"], p["status"]) for p in state["presence"]["rows"]] == [
            ("alice", "online")]
        page = await browser.get(f"{CONSOLE}/")
        assert "tenant:acme:agents" in page.text


async def test_plugins_are_shown_with_their_events(browser: httpx.AsyncClient) -> None:
    await logged_in(browser)
    plugins = {p["name"]: p for p in (await browser.get(f"{CONSOLE}/state.json")).json()[
        "plugins"]}
    assert plugins["chat"]["enabled"]
    assert {"message:new", "conversation:join"} <= {e["name"] for e in plugins["chat"]["events"]}
    assert "presence" in plugins


async def test_secrets_are_never_shown(nursery: trio.Nursery) -> None:
    config = console_config({
        "admin": {"secret": COOKIE_SECRET},
        "plugins": {
            "webhooks": {"endpoints": [{"url": "https://user:pw-in-url@hooks.example/in?k=v1",
                                        "secret": WEBHOOK_SECRET}]},
            "proxy": {"event_url": "https://backend.example/events",
                      "headers": {"X-Backend-Key": PROXY_HEADER}},
        }})
    harness = await serve(config, nursery)
    try:
        async with httpx.AsyncClient(base_url=harness.http_url()) as client:
            csrf = await logged_in(client)
            seen = [(await client.get(f"{CONSOLE}/")).text,
                    (await client.get(f"{CONSOLE}/state.json")).text]
            async with open_websocket_url(socket_url(harness, csrf),
                                          extra_headers=cookie_header(client)) as ws:
                seen.append(json.dumps(await next_of(ws, "panels")))
        everything = "\n".join(seen)
        for secret in (PASSWORD, TEST_API_KEY, WEBHOOK_SECRET, PROXY_HEADER, COOKIE_SECRET,
                       harness.config.auth.secret, "pw-in-url", "k=v1"):
            assert secret not in everything, secret
        state = json.loads(seen[1])
        plugins = {p["name"]: json.loads(p["settings"]) for p in state["plugins"]}
        endpoint = plugins["webhooks"]["endpoints"][0]
        assert endpoint["secret"] == HIDDEN
        assert endpoint["url"] == f"https://{HIDDEN}@hooks.example/in?{HIDDEN}"
        assert plugins["proxy"]["headers"] == HIDDEN
        assert plugins["proxy"]["event_url"] == "https://backend.example/events"
    finally:
        await harness.stop()


async def test_the_last_errors_are_kept_newest_first_and_bounded(nursery: trio.Nursery) -> None:
    harness = await serve(console_config({"admin": {"max_errors": 3}}), nursery)
    try:
        async with httpx.AsyncClient(base_url=harness.http_url()) as client:
            await logged_in(client)
            for n in range(5):
                logging.getLogger("switchboard.tests").error("failure number %d", n)
            errors = (await client.get(f"{CONSOLE}/state.json")).json()["errors"]
        assert [row["message"] for row in errors["rows"]] == [
            "failure number 4", "failure number 3", "failure number 2"]
        assert errors["rows"][0]["level"] == "ERROR"
        assert errors["rows"][0]["logger"] == "switchboard.tests"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", errors["rows"][0]["at"])
    finally:
        await harness.stop()


async def test_an_insecure_cookie_in_production_is_warned_of_in_the_panel(
        nursery: trio.Nursery) -> None:
    harness = await serve(console_config({"mode": "production"}), nursery)
    try:
        async with httpx.AsyncClient(base_url=harness.http_url()) as client:
            await logged_in(client)
            errors = (await client.get(f"{CONSOLE}/state.json")).json()["errors"]
        assert any("not marked Secure" in row["message"] for row in errors["rows"])
    finally:
        await harness.stop()


# -- the console's socket ----------------------------------------------------------


async def test_the_socket_is_refused_without_the_login_cookie(
        live: Harness, browser: httpx.AsyncClient) -> None:
    csrf = await logged_in(browser)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(socket_url(live, csrf)):
            pass
    assert rejected.value.status_code == 401


async def test_the_socket_is_refused_from_another_origin_or_without_the_token(
        live: Harness, browser: httpx.AsyncClient) -> None:
    csrf = await logged_in(browser)
    foreign = [*cookie_header(browser), ("Origin", "https://evil.example")]
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(socket_url(live, csrf), extra_headers=foreign):
            pass
    assert rejected.value.status_code == 403
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(socket_url(live, "wrong"),
                                      extra_headers=cookie_header(browser)):
            pass
    assert rejected.value.status_code == 403


async def test_the_tail_shows_the_events_of_the_chosen_room_only(
        live: Harness, browser: httpx.AsyncClient) -> None:
    csrf = await logged_in(browser)
    origin = [("Origin", live.http_url())]
    async with open_websocket_url(socket_url(live, csrf),
                                  extra_headers=[*cookie_header(browser), *origin]) as ws:
        await ws.send_message(json.dumps({"type": "tail", "tenant": "t1", "room": "lobby"}))
        assert (await next_of(ws, "tailing"))["data"] == {"tenant": "t1", "room": "lobby"}
        await live.app.publish("t2", "lobby", "elsewhere", {})
        await live.app.publish("t1", "hall", "elsewhere", {})
        await live.app.publish("t1", "lobby", "chat:message", {"text": "<script>x</script>"})
        tail = (await next_of(ws, "tail"))["data"]
        assert tail["event"] == "chat:message"
        assert "<script>" not in tail["html"]
        assert "&lt;script&gt;" in tail["html"]


async def test_the_socket_says_what_it_cannot_tail(live: Harness,
                                                   browser: httpx.AsyncClient) -> None:
    csrf = await logged_in(browser)
    async with open_websocket_url(socket_url(live, csrf),
                                  extra_headers=cookie_header(browser)) as ws:
        await ws.send_message("not json")
        assert "expected" in (await next_of(ws, "error"))["data"]["message"]
        await ws.send_message(json.dumps({"type": "tail", "tenant": "t1", "room": "a b"}))
        assert (await next_of(ws, "error"))["data"]["message"] == "room: not a room name"
        # what the page never sends, and the socket outlives
        for text in ("[" * 5000 + "]" * 5000, '{"type": "tail", "tenant": NaN}',
                     '{"type": "tail", "tenant": "t1", "room": ["lobby:1"]}', b"\xff\xfe"):
            await ws.send_message(text)
            assert "data" in await next_of(ws, "error")
        await ws.send_message(json.dumps({"type": "tail", "tenant": "t1", "room": "lobby:1"}))
        assert (await next_of(ws, "tailing"))["data"] == {"tenant": "t1", "room": "lobby:1"}


# -- on the mock clock: the socket's timers ----------------------------------------


@pytest.fixture
def switchboard_config() -> Any:
    return console_config({"http": {"body_timeout": 5.0}, "admin": {"refresh": 2.0}})


async def test_the_socket_outlives_the_body_timeout_and_pushes_what_changed(
        switchboard: Harness) -> None:
    console = switchboard.server.console
    assert console is not None
    cookie, session = console.logins.open()
    socket = await _socket_client(switchboard, cookie, session.csrf)
    await switchboard.advance(60)  # far past http.body_timeout
    await switchboard.connect("bob", "t9")
    # the next refresh (admin.refresh) pushes the panels that changed
    frames_before = len(socket.frames)
    await switchboard.advance(2.5)
    pushed = socket.frames[frames_before:]
    assert any("bob" in json.dumps(f) for f in pushed), pushed
    assert socket.close_code is None


async def test_logging_out_closes_the_console_socket(switchboard: Harness) -> None:
    console = switchboard.server.console
    assert console is not None
    cookie, session = console.logins.open()
    socket = await _socket_client(switchboard, cookie, session.csrf)
    console.logins.close(session)
    code, _ = await socket.expect_closed()
    assert code == 4401


async def test_a_tail_flooded_faster_than_it_sends_says_how_many_it_dropped(
        switchboard: Harness) -> None:
    from switchboard.core.admin.console import TAIL_BUFFER

    console = switchboard.server.console
    assert console is not None
    cookie, session = console.logins.open()
    socket = await _socket_client(switchboard, cookie, session.csrf)
    await socket.send_text(json.dumps({"type": "tail", "tenant": "t1", "room": "busy"}))
    await socket.expect("tailing")
    flood = TAIL_BUFFER + 50
    for n in range(flood):  # all at once: the socket's sender gets no turn between
        switchboard.app.hub.deliver(_publication("t1", "busy", n))
    dropped = (await socket.expect("dropped"))["count"]
    await switchboard.advance(1)
    shown = socket.received("tail")
    # the socket's queue (and the event its sender had already taken) went out,
    # the rest was counted: every event is either shown or told of
    assert TAIL_BUFFER <= len(shown) <= TAIL_BUFFER + 1
    assert len(shown) + dropped == flood
    assert [t["event"] for t in shown] == ["tick"] * len(shown)


def _publication(tenant: str, room: str, n: int) -> Any:
    from switchboard.core.broker import Publication

    return Publication(tenant, room, "tick", {"n": n})


async def _socket_client(harness: Harness, cookie: str, csrf: str) -> Any:
    """A raw WebSocket client of the console's socket over a memory stream."""
    from switchboard.testing import TestClient

    client_stream, server_stream = trio.testing.memory_stream_pair()
    harness.server.start_connection(server_stream)
    client = TestClient(client_stream, harness.nursery, clock=harness.clock_name)
    await client._handshake(f"{CONSOLE}/socket?csrf={csrf}",
                            [("Cookie", f"{SESSION_COOKIE}={cookie}")])
    await harness.advance(0.1)
    assert client.frames and client.frames[0]["type"] == "panels"
    return client


# -- redaction (pure) --------------------------------------------------------------


def test_secret_settings_are_hidden_and_the_rest_shown() -> None:
    settings = {"secret": "s3", "api_key": "k", "token_ttl": 60, "admin_roles": ["admin"],
                "headers": {"X-Key": "v"}, "password": "", "nested": [{"auth_token": "t"}],
                "url": "postgresql://me:pw@db:5432/app"}
    assert redact(settings) == {
        "secret": HIDDEN, "api_key": HIDDEN, "token_ttl": 60, "admin_roles": ["admin"],
        "headers": HIDDEN, "password": "", "nested": [{"auth_token": HIDDEN}],
        "url": f"postgresql://{HIDDEN}@db:5432/app"}


def test_urls_lose_their_credentials_and_query_only() -> None:
    assert redact_url("https://example.com/a/b") == "https://example.com/a/b"
    assert redact_url("https://example.com/hook?token=abc") == f"https://example.com/hook?{HIDDEN}"
    assert redact_url("redis://:pw@[::1]:6379/0") == f"redis://{HIDDEN}@[::1]:6379/0"
    assert redact_url("not a url") == "not a url"


# -- packaging ---------------------------------------------------------------------


def test_every_template_and_static_file_is_package_data() -> None:
    """``pip install .`` (and a one-file build) ship what the console serves."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["switchboard.core.admin"]
    folder = root / "core" / "admin"
    files = [p.relative_to(folder).as_posix() for sub in ("templates", "static")
             for p in (folder / sub).iterdir() if p.is_file()]
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
