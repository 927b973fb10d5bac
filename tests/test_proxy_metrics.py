"""Metrics of the events an event proxy takes: any name its patterns match
is the client's to choose, so the names counted on their own are bounded
and the rest are counted together. A real HTTP backend, a real client."""

from __future__ import annotations

import re
from typing import Any

import pytest
from backends import Backend, backend_fixture  # noqa: F401  (the backend fixture)
from switchboard.core.config import Config
from switchboard.core.metrics import MAX_UNDECLARED_EVENT_LABELS, OTHER_EVENTS
from switchboard.testing import Harness, make_config


@pytest.fixture
def switchboard_config(backend: Backend) -> Config:
    return make_config({
        "plugins": {"proxy": {"event_url": backend.url("/event"), "events": ["callback:*"],
                              "timeout": 10.0}},
        "limits": {"connection": {"rate": 1000.0, "burst": 1000.0},
                   "user": {"rate": 1000.0, "burst": 1000.0}}})


def counted(metrics: str) -> dict[str, float]:
    """``switchboard_events_received_total`` by event."""
    return {event: float(value) for event, value in re.findall(
        r'^switchboard_events_received_total\{event="([^"]*)"\} (\S+)$', metrics, re.M)}


async def test_a_client_cannot_grow_the_metrics_with_event_names(
        switchboard_live: Harness, backend: Backend) -> None:
    backend.on("/event", lambda body: {"result": None})
    client = await switchboard_live.connect("carl", "acme", role="customer")
    extra = 30
    for n in range(MAX_UNDECLARED_EVENT_LABELS + extra):
        await client.request(f"callback:{n}", {})
    await client.request("callback:0", {})  # a name counted on its own stays so
    await client.request("presence:heartbeat")  # a plugin's event
    assert len(backend.calls_to("/event")) == MAX_UNDECLARED_EVENT_LABELS + extra + 1
    async with switchboard_live.http() as http:
        response = await http.get("/metrics")
        text: Any = (await response.get_data()).decode()
    events = counted(text)
    own = {name for name in events if name.startswith("callback:")}
    assert len(own) == MAX_UNDECLARED_EVENT_LABELS
    assert events["callback:0"] == 2
    assert events[OTHER_EVENTS] == extra
    assert events["presence:heartbeat"] == 1
