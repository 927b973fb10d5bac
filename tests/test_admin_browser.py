"""The admin console in a real headless browser: Debian's chromium driven by
Playwright (its sync API, in a worker thread of the trio test, while the
server listens on a real port in the test).

One browser launch for the module: the whole flow is one test, in the order
an operator goes: a wrong password, the right one, a client connecting, the
tail of its room, the publish form. Screenshots of each step are written to
``tests/artifacts/admin-console/`` (git-ignored). Fails, never skips, when
chromium is missing (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from admin_console import CONSOLE, PASSWORD, console_config
from switchboard.testing import Harness
from trio_websocket import open_websocket_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "admin-console"
#: Milliseconds the browser waits for what a step expects to see.
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium: the test fails (not skips) without it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium "
                    "(apt-get install -y chromium; .ci/run does it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


class Client:
    """A plain WebSocket client over the real listener, kept open by a task of
    the test's nursery until :meth:`close`; what it receives is in ``frames``."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self._done = trio.Event()
        self._arrived = trio.Event()

    async def run(self, url: str, *, task_status: trio.TaskStatus[None]) -> None:
        async with open_websocket_url(url) as ws:
            self.frames.append(json.loads(await ws.get_message()))  # its session
            task_status.started()
            with trio.move_on_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, ws, nursery.cancel_scope)
                    await self._done.wait()
                    nursery.cancel_scope.cancel()

    async def _read(self, ws: Any, scope: trio.CancelScope) -> None:
        while True:
            self.frames.append(json.loads(await ws.get_message()))
            self._arrived.set()
            self._arrived = trio.Event()

    async def expect(self, event: str) -> Any:
        """The data of the first ``event`` received (waiting for it)."""
        with trio.fail_after(10):
            while True:
                for frame in self.frames:
                    if frame.get("type") == event:
                        return frame.get("data")
                await self._arrived.wait()

    def close(self) -> None:
        self._done.set()


def browser_flow(base: str, chromium: str, on_server: Callable[..., Any]) -> dict[str, Any]:
    """Everything the browser does, in a worker thread; ``on_server(fn, *args)``
    runs an async function of the test in the trio thread."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict[str, Any] = {}
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # 1. not logged in: the login page; a wrong password is refused
            page.goto(f"{base}{CONSOLE}/")
            assert page.url.endswith(f"{CONSOLE}/login")
            page.fill("#password", "not the password")
            page.click("#login")
            expect(page.locator("#login-error")).to_contain_text("Wrong password")
            page.screenshot(path=ARTIFACTS / "1-wrong-password.png")

            # 2. the right password: the console, live over its socket
            page.fill("#password", PASSWORD)
            page.click("#login")
            expect(page.locator("#live")).to_have_text("live")
            expect(page.locator("#connection-count")).to_have_text("0")
            page.screenshot(path=ARTIFACTS / "2-logged-in.png", full_page=True)

            # 3. a client connects: its connection and its rooms appear
            on_server("connect")
            expect(page.locator("#connection-count")).to_have_text("1")
            expect(page.locator("tr.connection[data-user='alice']")).to_contain_text("acme")
            room = page.locator("tr.room", has_text="tenant:acme").first
            expect(room).to_be_visible()
            page.screenshot(path=ARTIFACTS / "3-client-connected.png", full_page=True)

            # 4. tail the client's tenant room; an event published to it shows
            room.locator("button.tail-room").click()
            expect(page.locator("#tail-status")).to_contain_text("Tailing tenant:acme")
            on_server("publish")
            expect(page.locator("#tail-body tr", has_text="order:shipped")).to_contain_text(
                "parcel-17")
            page.screenshot(path=ARTIFACTS / "4-tail.png", full_page=True)

            # 5. the publish form: the event goes out, and the tail shows it
            page.fill("#publish-tenant", "acme")
            page.fill("#publish-room", "tenant:acme")
            page.fill("#publish-event", "console:test")
            page.fill("#publish-data", '{"sent": "from the console"}')
            page.click("#publish-send")
            expect(page.locator("#publish-result")).to_contain_text(
                "Published console:test to tenant:acme of tenant acme")
            expect(page.locator("#tail-body tr", has_text="console:test")).to_contain_text(
                "from the console")
            page.screenshot(path=ARTIFACTS / "5-published.png", full_page=True)
            seen["page_errors"] = errors
        finally:
            browser.close()
    return seen


async def test_an_operator_logs_in_watches_a_client_and_publishes(
        chromium: str, nursery: trio.Nursery) -> None:
    harness = await Harness.start(console_config(), nursery, listen=True)
    client = Client()
    try:
        async def step(name: str) -> None:
            if name == "connect":
                url = harness.ws_url(harness.token("alice", "acme", "agent"))
                await nursery.start(client.run, url)
            elif name == "publish":
                await harness.app.publish("acme", "tenant:acme", "order:shipped",
                                          {"parcel": "parcel-17"})

        def on_server(name: str) -> None:
            trio.from_thread.run(step, name)

        base = f"http://127.0.0.1:{harness.server.port}"
        seen = await trio.to_thread.run_sync(browser_flow, base, chromium, on_server)
        assert seen["page_errors"] == []
        # the client got both events, the one of the form included
        assert await client.expect("order:shipped") == {"parcel": "parcel-17"}
        assert await client.expect("console:test") == {"sent": "from the console"}
    finally:
        client.close()
        await harness.stop()
