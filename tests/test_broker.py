"""The broker's seams on one node (the in-memory broker): the control
channel, the node id, stats of the cluster of one, configuration."""

from __future__ import annotations

import pytest
from switchboard.core import Announcement
from switchboard.core.broker import MemoryBroker, make_broker
from switchboard.core.config import ConfigError, structure_config
from switchboard.testing import Harness


async def test_an_announcement_reaches_this_node(switchboard: Harness) -> None:
    heard: list[Announcement] = []
    switchboard.app.on_announcement("test:cache", heard.append)
    switchboard.app.on_announcement("test:other", lambda a: heard.append(a))
    await switchboard.app.announce("test:cache", {"drop": "k1"})
    assert heard == [Announcement("test:cache", {"drop": "k1"}, switchboard.app.node_id)]


async def test_a_failing_announcement_handler_is_counted_not_raised(
        switchboard: Harness) -> None:
    heard: list[Announcement] = []

    def broken(_: Announcement) -> None:
        raise RuntimeError("plugin bug")

    switchboard.app.on_announcement("test:cache", broken)
    switchboard.app.on_announcement("test:cache", heard.append)
    await switchboard.app.announce("test:cache", 1)
    assert [a.data for a in heard] == [1]


async def test_stats_of_one_node_name_it(switchboard: Harness) -> None:
    await switchboard.connect("u1")
    async with switchboard.http() as http:
        response = await http.get("/api/v1/stats", headers=switchboard.api_headers())
        ready = await http.get("/ready")
    data = await response.get_json()
    assert data["connections"] == 1
    assert data["node"] == switchboard.app.node_id
    assert list(data["nodes"]) == [switchboard.app.node_id]
    assert data["nodes"][switchboard.app.node_id]["connections"] == 1
    assert ready.status_code == 200


def test_broker_urls_and_settings_are_checked() -> None:
    assert isinstance(make_broker("memory://"), MemoryBroker)
    with pytest.raises(ConfigError, match=r"broker\.url"):
        structure_config({"broker": {"url": "nats://x"}, "auth": {"secret": "s" * 32}})
    with pytest.raises(ConfigError, match=r"broker\.node_ttl"):
        structure_config({"broker": {"heartbeat": 5, "node_ttl": 2}})
    with pytest.raises(ConfigError, match=r"broker\.prefix"):
        structure_config({"broker": {"prefix": "a b"}})
    with pytest.raises(ConfigError, match=r"broker\.history_size"):
        structure_config({"broker": {"history_size": 0}})
