"""One bad message never takes the messages batched with it down, nor leaks.

The chat plugin writes concurrent messages in one transaction. When the database
refuses one of them (here a trigger or CHECK constraint stands in for any value
that slipped past validation), the others, of other users and other tenants,
must still be stored and broadcast, and only the bad one is answered an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from databases import database_url
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness, TestClient, make_config


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        # a linger long enough (on the mock clock) for every message to share a batch
        yield make_config({"store": {"url": url},
                           "plugins": {"chat": {"batch_linger": 0.05}}})


async def refuse_client_id(switchboard: Harness, client_id: str) -> None:
    store = switchboard.server.store
    if store.dialect == "sqlite":
        await store.execute(sa.text(
            "CREATE TRIGGER refuse BEFORE INSERT ON chat_messages "
            f"WHEN NEW.client_id = '{client_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    else:
        await store.execute(sa.text(
            f"ALTER TABLE chat_messages ADD CONSTRAINT refuse CHECK (client_id <> '{client_id}')"))


async def member(switchboard: Harness, tenant: str, user: str) -> TestClient:
    response = await switchboard.http().post(
        "/api/v1/conversations", headers=switchboard.api_headers(),
        json={"tenant": tenant, "id": "c1", "participants": [{"userId": user}]})
    assert response.status_code in (201, 409)
    if response.status_code == 409:
        await switchboard.http().post(
            "/api/v1/conversations/c1/participants", headers=switchboard.api_headers(),
            json={"tenant": tenant, "userId": user})
    client = await switchboard.connect(user=user, tenant=tenant, role="customer")
    await client.request("conversation:join", {"conversationId": "c1"})
    return client


async def test_a_refused_message_fails_alone(switchboard: Harness) -> None:
    await refuse_client_id(switchboard, "boom")
    alice = await member(switchboard, "t1", "alice")
    bob = await member(switchboard, "t1", "bob")
    other = await member(switchboard, "t2", "olga")
    listener = await member(switchboard, "t1", "lena")

    def body(client_id: str) -> dict[str, object]:
        return {"conversationId": "c1", "clientId": client_id, "type": "text",
                "content": {"text": client_id}}

    await alice.emit("message:send", body("a1"), id=1)
    await bob.emit("message:send", body("boom"), id=1)
    await other.emit("message:send", body("o1"), id=1)
    await alice.emit("message:send", body("a2"), id=2)

    first = await alice._wait(lambda f: f.get("id") == 1, 10)
    second = await alice._wait(lambda f: f.get("id") == 2, 10)
    assert (first["type"], second["type"]) == ("ack", "ack")
    assert (await other._wait(lambda f: f.get("id") == 1, 10))["type"] == "ack"
    with pytest.raises(ErrorReply) as info:  # the bad one, and only it
        refused = await bob._wait(lambda f: f.get("id") == 1, 10)
        raise ErrorReply(refused["data"])
    assert info.value.code == "internal_error"

    heard = [(await listener.expect("message:new"))["clientId"] for _ in range(2)]
    assert heard == ["a1", "a2"]  # in order, nothing of t2, nothing refused
    await listener.settle(1)
    assert listener.received("message:new") == []
    page = await listener.request("message:history", {"conversationId": "c1"})
    assert [m["clientId"] for m in page["messages"]] == ["a1", "a2"]
    page = await other.request("message:history", {"conversationId": "c1"})
    assert [m["clientId"] for m in page["messages"]] == ["o1"]
