"""Many conversations created in one call (``ChatService.create_conversations``
and ``create_conversations_with``), on SQLite and on a real PostgreSQL, where
the conversations and the participants of the new ones are one statement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from databases import database_url
from switchboard.core import (
    ChatConversation,
    ChatParticipant,
    ChatService,
    ClientError,
    StoreError,
)
from switchboard.core.config import Config
from switchboard.testing import Harness, make_config


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield make_config({"store": {"url": url}})


def chat_of(switchboard: Harness) -> ChatService:
    chat: ChatService = switchboard.app.service("chat")
    return chat


async def test_many_conversations_are_created_in_one_call(switchboard: Harness) -> None:
    chat = chat_of(switchboard)
    await chat.create_conversation("t1", "c-old", title="kept",
                                   participants=[ChatParticipant("olga", "agent")])
    created = await chat.create_conversations([
        ChatConversation("t1", "c-new", "New", (ChatParticipant("carl"),
                                                ChatParticipant("ana", "agent"))),
        ChatConversation("t1", "c-old", "changed?", (ChatParticipant("mallory"),)),
        ChatConversation("t2", "c-new", None, (ChatParticipant("olga", "agent"),)),
        ChatConversation("t1", "c-empty", None, ()),
        ChatConversation("t1", "c-new", "again", (ChatParticipant("eve"),)),  # a repeat
    ])
    assert created == [True, False, True, True, False]
    old = await chat.get_conversation("t1", "c-old")  # left as it was
    assert old is not None and old.title == "kept"
    assert old.participants == (ChatParticipant("olga", "agent"),)
    new = await chat.get_conversation("t1", "c-new")  # as it came first
    assert new is not None and new.title == "New"
    assert sorted(new.participants, key=lambda p: p.user_id) == [
        ChatParticipant("ana", "agent"), ChatParticipant("carl")]
    other = await chat.get_conversation("t2", "c-new")  # the same id in another tenant
    assert other is not None and other.participants == (ChatParticipant("olga", "agent"),)
    empty = await chat.get_conversation("t1", "c-empty")
    assert empty is not None and empty.participants == ()
    assert await chat.create_conversations([]) == []
    with pytest.raises(ClientError) as bad:
        await chat.create_conversations([
            ChatConversation("t1", "c-ok", None, ()),
            ChatConversation("t1", "has space", None, ())])
    assert bad.value.code == "invalid_payload" and bad.value.field == "conversations.1.id"
    assert await chat.get_conversation("t1", "c-ok") is None


async def test_conversations_and_a_plugins_own_rows_are_stored_together_or_not_at_all(
        switchboard: Harness) -> None:
    chat = chat_of(switchboard)
    table = sa.Table("test_records", sa.MetaData(), sa.Column("id", sa.String(10),
                                                              primary_key=True))
    await switchboard.app.store.run(lambda conn: table.create(conn))

    def record(conn: sa.Connection) -> int:
        return conn.execute(table.insert(), [{"id": "r1"}]).rowcount

    created, written = await chat.create_conversations_with(
        [ChatConversation("t1", "c-a", None, (ChatParticipant("carl"),))], record,
        serialize_on=[("test", "t1")])
    assert (created, written) == ([True], 1)

    def refused(conn: sa.Connection) -> None:
        conn.execute(table.insert(), [{"id": "r1"}])  # the same key again

    with pytest.raises(StoreError):
        await chat.create_conversations_with(
            [ChatConversation("t1", "c-b", None, (ChatParticipant("carl"),))], refused)
    assert await chat.get_conversation("t1", "c-b") is None  # rolled back with the rows
    found = await chat.get_conversation("t1", "c-a")
    assert found is not None and found.participants == (ChatParticipant("carl"),)
    await switchboard.app.store.run(lambda conn: table.drop(conn))
