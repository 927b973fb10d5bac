"""Webhooks out, against a real HTTP backend: signed deliveries of session
and published events, retried in order per key while the backend is down or
failing, dead letters counted and retried, nothing lost across a restart."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from backends import Backend, Call, InProcess, backend_fixture  # noqa: F401  (the backend fixture)
from switchboard.core import Args
from switchboard.core.config import Config
from switchboard.core.server import Server
from switchboard.plugins.webhooks import WebhooksPlugin
from switchboard.testing import TEST_API_KEY, Harness, make_config

SECRET = "whsec-0123456789abcdef"


def webhook_config(backend: Backend, tmp_path: Path, **settings: Any) -> Config:
    return make_config({
        "store": {"url": f"sqlite:///{tmp_path / 'switchboard.db'}"},
        "plugins": {"webhooks": {
            "endpoints": [{"url": backend.url("/hooks"), "secret": SECRET, "name": "crm",
                           "events": ["session.*", "user:online", "lead:*"]}],
            "retry_first": 0.05, "retry_longest": 0.2, "max_attempts": 4, "timeout": 30.0,
            **settings}}})


@pytest.fixture
def switchboard_config(backend: Backend, tmp_path: Path) -> Config:
    return webhook_config(backend, tmp_path)


def verified(call: Call) -> dict[str, Any]:
    """The body of a delivery whose signature checks out (what a backend does)."""
    timestamp = call.headers["X-Switchboard-Timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + call.body,
                                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call.headers["X-Switchboard-Signature"], expected)
    body: dict[str, Any] = call.json
    assert call.headers["X-Switchboard-Event"] == body["event"]
    return body


async def test_session_and_published_events_are_delivered_signed(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/hooks", lambda body: {})
    ann = await switchboard_live.connect("ann", "acme", role="agent")
    await switchboard_live.app.publish("acme", "lead:7", "lead:moved", {"stage": "won"})
    await switchboard_live.app.publish("acme", "lead:7", "not:configured", {})
    await ann.close()
    calls = await backend.wait_calls("/hooks", 4)
    events = [verified(c) for c in calls]
    assert [e["event"] for e in events] == ["session.opened", "user:online", "lead:moved",
                                            "session.closed"]
    assert events[0]["data"]["userId"] == "ann" and events[0]["tenant"] == "acme"
    assert events[2]["room"] == "lead:7" and events[2]["data"] == {"stage": "won"}
    assert events[3]["data"]["reason"] == "client"
    assert len({c.headers["X-Switchboard-Delivery"] for c in calls}) == 4


async def test_several_arguments_are_an_array_and_what_json_cannot_carry_is_skipped(
        switchboard_live: Harness, backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    backend.on("/hooks", lambda body: {})
    agent = await switchboard_live.connect("ann", "acme", role="agent")
    await switchboard_live.app.publish("acme", "lead:7", "lead:args", Args(1, "two"))
    await switchboard_live.app.publish("acme", "lead:7", "lead:file", Args("a.png", b"\x00"))
    await switchboard_live.app.publish("acme", "lead:7", "lead:nan", {"x": float("nan")})
    await switchboard_live.app.publish("acme", "lead:7", "lead:after", {})
    events = [verified(c) for c in await backend.wait_calls("/hooks", 4)]
    assert [(e["event"], e["data"]) for e in events[2:]] == [
        ("lead:args", [1, "two"]), ("lead:after", {})]
    assert "lead:file not delivered" in caplog.text and "lead:nan not delivered" in caplog.text
    await agent.close()


async def test_a_failing_backend_gets_every_event_in_order_once_it_answers(
        switchboard_live: Harness, backend: Backend) -> None:
    failures = {"left": 3}

    def flaky(body: dict[str, Any]) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            return (503, b"busy")
        return {}

    backend.on("/hooks", flaky)
    for n in range(5):
        await switchboard_live.app.publish("acme", "lead:1", "lead:moved", {"n": n})
    calls = await backend.wait_calls("/hooks", 8)
    accepted = [verified(c)["data"]["n"] for c in calls[3:]]
    assert accepted == [0, 1, 2, 3, 4]
    assert [verified(c)["data"]["n"] for c in calls[:3]] == [0, 0, 0]  # n=0 held the key


async def test_one_blocked_key_does_not_hold_up_the_others(switchboard_live: Harness,
                                                           backend: Backend) -> None:
    backend.on("/hooks", lambda body: (500, b"no") if body["room"] == "lead:1" else {})
    await switchboard_live.app.publish("acme", "lead:1", "lead:moved", {"n": 1})
    await switchboard_live.app.publish("acme", "lead:2", "lead:moved", {"n": 2})
    await switchboard_live.app.publish("acme", "lead:2", "lead:moved", {"n": 3})
    await backend.wait_calls("/hooks", 3)
    delivered_to_2 = [verified(c)["data"]["n"] for c in backend.calls_to("/hooks")
                      if c.json["room"] == "lead:2"]
    assert delivered_to_2 == [2, 3]


async def test_a_delivery_that_keeps_failing_becomes_a_dead_letter_and_can_be_retried(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/hooks", lambda body: (500, b"broken") if body["data"]["n"] == 1 else {})
    await switchboard_live.app.publish("acme", "lead:1", "lead:moved", {"n": 1})
    await switchboard_live.app.publish("acme", "lead:1", "lead:moved", {"n": 2})
    calls = await backend.wait_calls("/hooks", 5)  # 4 tries of n=1, then n=2
    assert [c.json["data"]["n"] for c in calls] == [1, 1, 1, 1, 2]
    async with httpx.AsyncClient(timeout=60) as http:
        headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
        stats = (await http.get(switchboard_live.http_url("/api/v1/webhooks"),
                                headers=headers)).json()
        [crm] = stats["endpoints"]
        assert (crm["endpoint"], crm["dead"], crm["lastError"]) == ("crm", 1, "HTTP 500")
        backend.on("/hooks", lambda body: {})
        retried = (await http.post(switchboard_live.http_url("/api/v1/webhooks/dead/retry"),
                                   headers=headers)).json()
        assert retried == {"retried": 1}
    calls = await backend.wait_calls("/hooks", 6)
    assert calls[-1].json["data"]["n"] == 1


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        server = Server(config)
        await nursery.start(server.run)
        try:
            yield server
        finally:
            server.shutdown()
            await server.wait_stopped()


async def test_deliveries_pending_at_a_restart_are_sent_by_the_next_server(
        backend: Backend, tmp_path: Path) -> None:
    config = webhook_config(backend, tmp_path, retry_first=60.0, retry_longest=60.0)
    backend.on("/hooks", lambda body: (503, b"down"))
    async with serving(config) as server:
        for n in range(3):
            await server.app.publish("acme", "lead:1", "lead:moved", {"n": n})
        await backend.wait_calls("/hooks", 1)  # the first try failed; the next is 60 s off
    backend.on("/hooks", lambda body: {})
    restarted = webhook_config(backend, tmp_path)
    async with serving(restarted):
        calls = await backend.wait_calls("/hooks", 4)
    assert [c.json["data"]["n"] for c in calls[1:]] == [0, 1, 2]


async def test_back_off_runs_on_the_servers_clock(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend,
        tmp_path: Path) -> None:
    """Retry times are stored as UNIX times but waited for on Trio's clock, so a
    test on the mock clock sees a minute's back-off pass in no real time (and
    the sender neither spins nor waits for the real minute)."""
    config = webhook_config(backend, tmp_path, retry_first=60.0, retry_longest=600.0,
                            max_attempts=5, endpoints=[{
                                "url": "http://backend.invalid/hooks", "secret": SECRET,
                                "name": "crm", "events": ["lead:*"]}])
    webhooks = WebhooksPlugin()
    webhooks.transport = InProcess(backend.app)  # (no socket: the mock clock rules)
    harness = await Harness.start(config, nursery, clock=autojump_clock,
                                  plugins={"webhooks": webhooks})
    answers = iter([(503, b"busy"), (503, b"busy"), {}])
    backend.on("/hooks", lambda body: next(answers))
    await harness.app.publish("acme", "lead:1", "lead:moved", {"n": 1})
    await harness.advance(1)
    assert len(backend.calls_to("/hooks")) == 1
    await harness.advance(58)  # the first back-off is 60 s
    assert len(backend.calls_to("/hooks")) == 1
    await harness.advance(2)
    assert len(backend.calls_to("/hooks")) == 2
    await harness.advance(119)  # then 120 s
    assert len(backend.calls_to("/hooks")) == 2
    await harness.advance(2)
    calls = backend.calls_to("/hooks")
    assert len(calls) == 3 and verified(calls[-1])["data"] == {"n": 1}
    await harness.stop()
