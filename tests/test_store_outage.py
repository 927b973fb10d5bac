"""What clients see while the real PostgreSQL refuses connections, and after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def database_down(switchboard: Harness) -> AsyncIterator[None]:
    """The server's database refuses new connections and its sessions end."""
    with databases.database_down(switchboard.config.store_url):
        yield


async def test_messages_fail_with_store_unavailable_then_go_through_again(
        switchboard: Harness) -> None:
    http = switchboard.http()
    response = await http.post("/api/v1/conversations", headers=switchboard.api_headers(),
                               json={"tenant": "t1", "id": "c1",
                                     "participants": [{"userId": "carl"}, {"userId": "ann"}]})
    assert response.status_code == 201
    carl = await switchboard.connect(user="carl", role="customer")
    ann = await switchboard.connect(user="ann", role="customer")
    for client in (carl, ann):
        await client.request("conversation:join", {"conversationId": "c1"})
    body = {"conversationId": "c1", "clientId": "m-1", "type": "text",
            "content": {"text": "hello"}}

    async with database_down(switchboard):
        with pytest.raises(ErrorReply) as info:
            await carl.request("message:send", body)
        assert info.value.code == "store_unavailable"
        response = await http.post("/api/v1/conversations/c1/messages",
                                   headers=switchboard.api_headers(),
                                   json={"tenant": "t1", "senderId": "bot", "type": "text",
                                         "content": {"text": "from a webhook"}})
        assert response.status_code == 503
        assert (await response.get_json())["code"] == "store_unavailable"
        assert response.headers["Retry-After"] == "1"
        await ann.settle(1)
        assert ann.received("message:new") == []

    # the same message sent again once the database is back: stored once, broadcast once
    stored = await carl.request("message:send", body)
    assert stored["content"] == {"text": "hello"}
    assert (await ann.expect("message:new"))["id"] == stored["id"]
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert [m["id"] for m in page["messages"]] == [stored["id"]]
