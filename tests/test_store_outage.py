"""What clients see while the real PostgreSQL refuses connections, and after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from databases import PG_ADMIN_URL, database_url
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness, make_config


@pytest.fixture
def switchboard_config(tmp_path: Path) -> Iterator[Config]:
    with database_url("postgresql", tmp_path) as url:
        yield make_config({"store": {"url": url}})


def _admin(sql: str, **params: object) -> None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


@asynccontextmanager
async def database_down(switchboard: Harness) -> AsyncIterator[None]:
    """The server's database refuses new connections and its sessions end."""
    name = sa.engine.make_url(switchboard.config.store_url).database
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE datname = :db AND pid <> pg_backend_pid()", db=name)
        yield
    finally:
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


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
