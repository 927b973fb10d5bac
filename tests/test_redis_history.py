"""How long the Redis stream keeps publications: about ``broker.history_size``
entries, and with ``broker.history_ttl`` no older than that many seconds (by
Redis's clock, whose milliseconds the entry ids are), on the machine's Redis."""

from __future__ import annotations

from typing import Any

import coredis
import pytest
import trio
from redis_nodes import REDIS_URL, TIMEOUT, cluster_config, redis_prefix_fixture  # noqa: F401
from switchboard.core.config import ConfigError, structure_config
from switchboard.testing import Harness

#: Entries of 1970 put in the stream before the node starts: far more than
#: one node of the stream's radix tree (100 by default), so that trimming whole
#: nodes (``~``) takes nearly all of them.
OLD = 1000


async def publish_once_after_old_entries(prefix: str, nursery: trio.Nursery,
                                         broker: dict[str, Any]) -> list[bytes]:
    """The ids of the stream's entries after a node with ``broker`` settings
    published once into a stream that held :data:`OLD` entries of 1970."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
    async with client:
        for n in range(1, OLD + 1):
            await client.xadd(f"{prefix}:stream", {"e": "old", "p": "{}"}, identifier=f"{n}-0")
        node = await Harness.start(cluster_config(prefix, overrides={"broker": broker}),
                                   nursery)
        try:
            with trio.fail_after(TIMEOUT):
                await node.app.publish("acme", "lobby:1", "news", {"n": 1})
        finally:
            await node.stop()
        return [entry.identifier for entry in await client.xrange(f"{prefix}:stream")]


async def test_publications_older_than_the_history_ttl_leave_the_stream(
        redis_prefix: str, nursery: trio.Nursery) -> None:
    ids = await publish_once_after_old_entries(redis_prefix, nursery, {"history_ttl": 120.0})
    old = [i for i in ids if int(i.split(b"-")[0]) <= OLD]
    assert len(old) < 100, f"{len(old)} entries of 1970 are still there"
    assert len(ids) - len(old) == 1  # (the new publication stays)


async def test_without_a_history_ttl_the_stream_keeps_entries_whatever_their_age(
        redis_prefix: str, nursery: trio.Nursery) -> None:
    ids = await publish_once_after_old_entries(redis_prefix, nursery, {})
    assert len(ids) == OLD + 1


@pytest.mark.parametrize(("settings", "problem"), [
    ({"broker": {"history_ttl": -1.0}}, "must not be negative"),
    ({"broker": {"history_ttl": 2e9}}, "must be at most 1e+09"),
    ({"broker": {"history_ttl": 60.0}, "socketio": {"recovery_window": 120.0}},
     "at least socketio.recovery_window"),
])
def test_a_history_ttl_out_of_range_is_a_config_error(settings: dict[str, Any],
                                                      problem: str) -> None:
    with pytest.raises(ConfigError, match=r"broker\.history_ttl") as caught:
        structure_config(settings)
    assert problem in str(caught.value)


def test_a_history_ttl_of_the_recovery_window_or_longer_is_accepted() -> None:
    config = structure_config({"broker": {"history_ttl": 120.0},
                               "socketio": {"recovery_window": 120.0}})
    assert config.broker.history_ttl == 120.0
