"""The harness plugin authors test with: its clock, its timeouts, restarting a
server on the same database."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from databases import database_url
from quart import Blueprint, url_for
from switchboard.core import App, ChatParticipant, hookimpl
from switchboard.testing import Harness, Timeout, make_config


class Alarm:
    """A plugin with a timer: one minute after start, ``alarm:rang`` to tenant t1."""

    def __init__(self) -> None:
        self.app: App | None = None

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app

    @hookimpl
    def switchboard_background_tasks(self, app: App) -> list[Callable[[], Awaitable[None]]]:
        async def ring() -> None:
            await trio.sleep(60)
            await app.publish("t1", "tenant:t1", "alarm:rang", {"at": trio.current_time()})
            await trio.sleep_forever()
        return [ring]


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"alarm": Alarm}


async def test_the_harness_gives_the_clock_the_test_runs_on(
        switchboard: Harness, autojump_clock: trio.testing.MockClock) -> None:
    assert switchboard.clock is autojump_clock
    before = switchboard.now()
    await switchboard.advance(12.5)
    assert switchboard.now() == pytest.approx(before + 12.5)
    assert switchboard.now() == trio.current_time()


async def test_a_timer_longer_than_the_default_timeout_is_waited_for_with_timeout(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", tenant="t1")
    started = switchboard.now()
    rang = await client.expect("alarm:rang", timeout=90)
    assert rang["at"] - started == pytest.approx(60, abs=1)


async def test_a_timeout_says_it_counted_on_the_mock_clock_and_how_to_wait_longer(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", tenant="t1")
    with pytest.raises(Timeout) as info:
        await client.expect("alarm:rang", timeout=20)
    message = str(info.value)
    assert "waited 20 s of mock time" in message and "for event 'alarm:rang'" in message
    assert "MockClock" in message and "timeout=" in message
    assert info.value.seconds == 20
    # the frame still comes when its time does: nothing was lost by the timeout
    assert (await client.expect("alarm:rang", timeout=60))["at"] >= 60


async def test_advancing_the_clock_runs_what_falls_due(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", tenant="t1")
    await switchboard.advance(59)
    assert client.received("alarm:rang") == []
    await switchboard.advance(2)
    await client.settle()
    assert len(client.received("alarm:rang")) == 1


async def test_a_request_that_gets_no_answer_names_the_event_and_the_clock(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", tenant="t1")
    client.pause_reading()
    with pytest.raises(Timeout, match=r"waited 5 s of mock time .* for the answer to 'room:join'"):
        await client.request("room:join", {"room": "lead:1"}, timeout=5)


async def test_the_live_server_runs_on_real_time(switchboard_live: Harness) -> None:
    assert switchboard_live.clock is None
    assert switchboard_live.clock_name == "real time"


# -- restarting on the same database ------------------------------------------------


async def _conversation_with_a_message(switchboard: Harness) -> None:
    chat = switchboard.app.service("chat")
    await chat.create_conversation("t1", "c1", participants=[ChatParticipant("carl")])
    await chat.post_message("t1", "c1", sender_id="carl", sender_role="customer",
                            content={"text": "before the restart"})


async def test_a_restart_on_the_default_in_memory_database_keeps_what_was_stored(
        switchboard: Harness) -> None:
    await _conversation_with_a_message(switchboard)
    carl = await switchboard.connect(user="carl", tenant="t1", role="customer")
    first_app = switchboard.app

    await switchboard.restart()

    assert await carl.expect_closed() == (1001, "server shutting down")
    assert switchboard.app is not first_app
    history = await switchboard.app.service("chat").history("t1", "c1")
    assert [m.content["text"] for m in history.messages] == ["before the restart"]
    again = await switchboard.connect(user="carl", tenant="t1", role="customer")
    page = await again.request("message:history", {"conversationId": "c1"})
    assert [m["content"]["text"] for m in page["messages"]] == ["before the restart"]


async def test_timers_of_the_new_server_count_from_its_start(switchboard: Harness) -> None:
    await switchboard.advance(30)
    await switchboard.restart()
    restarted = switchboard.now()
    client = await switchboard.connect(user="ann", tenant="t1")
    rang = await client.expect("alarm:rang", timeout=90)
    assert rang["at"] - restarted == pytest.approx(60, abs=1)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_restart_on_a_database_file_or_postgresql_keeps_what_was_stored(
        kind: str, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with database_url(kind, tmp_path) as url:
        async with trio.open_nursery() as nursery:
            harness = await Harness.start(make_config({"store": {"url": url}}), nursery,
                                          clock=autojump_clock)
            try:
                await _conversation_with_a_message(harness)
                await harness.restart()
                history = await harness.app.service("chat").history("t1", "c1")
            finally:
                await harness.stop()
    assert [m.content["text"] for m in history.messages] == ["before the restart"]


async def test_each_config_gets_a_database_of_its_own(switchboard: Harness) -> None:
    """Two servers of two tests never share the in-memory database."""
    await _conversation_with_a_message(switchboard)
    async with trio.open_nursery() as nursery:
        other = await Harness.start(make_config(), nursery, clock=switchboard.clock)
        try:
            assert await other.app.service("chat").get_conversation("t1", "c1") is None
        finally:
            await other.stop()


class Widgets:
    """A plugin route that answers a creation with the URL of what it made."""

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("widgets", __name__)

        @bp.post("/api/v1/widgets/<tenant>")
        async def create(tenant: str) -> Any:
            return {}, 201, {"Location": url_for("widgets.show", tenant=tenant, widget=7,
                                                 color="blue")}

        @bp.get("/api/v1/widgets/<tenant>/<int:widget>")
        async def show(tenant: str, widget: int) -> Any:
            return {"widget": widget}

        return bp


@pytest.mark.parametrize("switchboard_plugins", [{"widgets": Widgets}])
async def test_routes_build_their_urls(switchboard: Harness) -> None:
    """URL builders are made on first use (a server's start skips them): they
    still build what werkzeug builds, query string included."""
    response = await switchboard.http().post("/api/v1/widgets/acme")
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/widgets/acme/7?color=blue"


async def test_advancing_during_a_database_call_waits_for_it_and_keeps_time(
        switchboard: Harness) -> None:
    """The clock stands still while the database works: an advance asked for
    meanwhile neither leaps ahead of the call nor returns before its time."""
    release = threading.Event()
    log: list[str] = []

    def slow_write(conn: Any) -> None:
        release.wait(10)
        log.append("written")

    async def advance() -> None:
        await switchboard.advance(10)
        log.append("advanced")

    start = switchboard.now()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(switchboard.app.store.run, slow_write)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(advance)
        await trio.testing.wait_all_tasks_blocked()
        assert (log, switchboard.now()) == ([], start)
        release.set()
    assert log == ["written", "advanced"]
    assert switchboard.now() == pytest.approx(start + 10)
