"""What consultants see while the real PostgreSQL refuses connections, and after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import databases
import pytest
from databases import database_url
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness, make_config


@pytest.fixture
def switchboard_config(tmp_path: Path) -> Iterator[Config]:
    with database_url("postgresql", tmp_path) as url:
        yield make_config({"store": {"url": url}})


async def test_a_move_fails_with_store_unavailable_then_goes_through_once(
        switchboard: Harness) -> None:
    ana = await switchboard.connect(user="ana", role="agent")
    bia = await switchboard.connect(user="bia", role="agent")
    for client in (ana, bia):
        await client.request("pipeline:join", {})
    lead = await ana.request("lead:create", {"title": "ACME"})
    await bia.expect("lead:created")
    move = {"leadId": lead["id"], "stageId": "proposta", "version": 1}

    with databases.database_down(switchboard.config.store_url):
        with pytest.raises(ErrorReply) as info:
            await ana.request("lead:move", move)
        assert info.value.code == "store_unavailable"
        await bia.settle(1)
        assert bia.received("lead:moved") == []

    moved = await ana.request("lead:move", move)  # the same move again: not stale
    assert moved["stageId"] == "proposta" and moved["version"] == 2
    assert (await bia.expect("lead:moved"))["version"] == 2
    log = await ana.request("lead:activity", {"leadId": lead["id"]})
    assert [e["action"] for e in log["entries"]] == ["moved", "created"]
