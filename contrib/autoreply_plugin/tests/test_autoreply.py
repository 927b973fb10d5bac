"""The auto-reply plugin in an in-process server on the harness's mock clock:
120 seconds of waiting take no real time. Every test runs on SQLite, then on
PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from switchboard.core import ChatParticipant, ChatService, Config, ConfigError
from switchboard.core.server import Server  # (a server outside the fixture, as the example)
from switchboard.testing import Harness, TestClient, make_config
from switchboard_autoreply.plugin import AutoReplyPlugin

DELAY = 120.0  # the default
#: How long before the restart the previous run stored the message it waits on.
AGE = 60.0
DEFAULT_TEXT = "Thanks for your message! An agent will be with you shortly."
ACME_KEY = "acme-only-key-0123456789"


@pytest.fixture
def switchboard_plugins() -> dict[str, object]:
    """Run the plugin without installing it, under the name of its entry point."""
    return {"autoreply": AutoReplyPlugin}


@pytest.fixture
def switchboard_config(request: pytest.FixtureRequest, database: str) -> Config:
    """The test config on ``database``, with the overrides given by indirect
    parametrization."""
    return make_config({"store": {"url": database},
                        "api_keys": [{"key": "test-api-key-0123456789", "tenant": "*"},
                                     {"key": ACME_KEY, "tenant": "acme"}],
                        **(getattr(request, "param", None) or {})})


def chat_of(switchboard: Harness) -> ChatService:
    chat: ChatService = switchboard.app.service("chat")
    return chat


async def conversation(switchboard: Harness, conv_id: str = "c1", tenant: str = "acme",
                       customer: str = "carl") -> None:
    await chat_of(switchboard).create_conversation(
        tenant, conv_id, participants=[ChatParticipant(customer)])


async def joined(switchboard: Harness, user: str, role: str, conv_id: str = "c1",
                 tenant: str = "acme") -> TestClient:
    client = await switchboard.connect(user=user, tenant=tenant, role=role)
    ack = await client.request("conversation:join", {"conversationId": conv_id})
    assert ack["success"], ack
    return client


async def say(client: TestClient, words: str, conv_id: str = "c1") -> dict[str, Any]:
    message: dict[str, Any] = await client.request(
        "message:send", {"conversationId": conv_id, "type": "text", "content": {"text": words}})
    return message


def bot_replies(client: TestClient) -> list[dict[str, Any]]:
    return [m for m in client.received("message:new") if m["senderRole"] == "bot"]


# -- the reply ------------------------------------------------------------------------


async def test_an_unanswered_customer_gets_a_stored_bot_reply_after_the_delay(
        switchboard: Harness) -> None:
    await conversation(switchboard)
    carl = await joined(switchboard, "carl", "customer")
    asked = await say(carl, "Where is my order?")
    await trio.sleep(DELAY - 1)
    assert bot_replies(carl) == []
    await trio.sleep(2)
    [reply] = bot_replies(carl)
    assert (reply["senderId"], reply["content"]) == ("autoreply", {"text": DEFAULT_TEXT})
    assert reply["id"] > asked["id"]
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert [m["id"] for m in page["messages"]] == [asked["id"], reply["id"]]


async def test_an_agent_answering_in_time_means_no_bot_reply(switchboard: Harness) -> None:
    await conversation(switchboard)
    carl = await joined(switchboard, "carl", "customer")
    ann = await joined(switchboard, "ann", "agent")
    await say(carl, "Where is my order?")
    await trio.sleep(DELAY - 10)
    await say(ann, "On its way!")
    await trio.sleep(DELAY)
    assert bot_replies(carl) == []


async def test_a_message_from_a_whatsapp_webhook_is_answered_too(switchboard: Harness) -> None:
    await conversation(switchboard, "whatsapp:+5511987654321", customer="+5511987654321")
    ann = await joined(switchboard, "ann", "agent", "whatsapp:+5511987654321")
    response = await switchboard.http().post(
        "/api/v1/conversations/whatsapp:+5511987654321/messages",
        headers=switchboard.api_headers(),
        json={"tenant": "acme", "senderId": "+5511987654321", "senderRole": "customer",
              "clientId": "wamid.1", "type": "text", "content": {"text": "Olá?"}})
    assert response.status_code == 201
    await trio.sleep(DELAY + 1)
    [reply] = bot_replies(ann)
    assert reply["conversationId"] == "whatsapp:+5511987654321"


async def test_a_message_another_plugin_posts_for_a_customer_is_answered(
        switchboard: Harness) -> None:
    await conversation(switchboard)
    ann = await joined(switchboard, "ann", "agent")
    await chat_of(switchboard).post_message("acme", "c1", sender_id="carl",
                                            sender_role="customer", content={"text": "hi"})
    await trio.sleep(DELAY + 1)
    assert len(bot_replies(ann)) == 1


async def test_the_bot_answers_once_until_an_agent_has_written(switchboard: Harness) -> None:
    await conversation(switchboard)
    carl = await joined(switchboard, "carl", "customer")
    ann = await joined(switchboard, "ann", "agent")
    await say(carl, "hello?")
    await trio.sleep(DELAY + 1)
    await say(carl, "anyone?")
    await trio.sleep(DELAY + 1)
    assert len(bot_replies(carl)) == 1
    await say(ann, "Sorry for the wait!")
    await say(carl, "thanks, one more thing")
    await trio.sleep(DELAY + 1)
    assert len(bot_replies(carl)) == 2


async def test_the_wait_starts_at_the_first_unanswered_message(switchboard: Harness) -> None:
    await conversation(switchboard)
    carl = await joined(switchboard, "carl", "customer")
    started = trio.current_time()
    await say(carl, "hello?")
    await trio.sleep(60)
    await say(carl, "anyone?")
    await trio.sleep_until(started + DELAY + 1)
    assert len(bot_replies(carl)) == 1


async def test_conversations_and_tenants_wait_on_their_own(switchboard: Harness) -> None:
    await conversation(switchboard, "c1")
    await conversation(switchboard, "c2", customer="dora")
    await conversation(switchboard, "c1", tenant="globex")
    carl = await joined(switchboard, "carl", "customer", "c1")
    dora = await joined(switchboard, "dora", "customer", "c2")
    ann = await joined(switchboard, "ann", "agent", "c2")
    elsewhere = await joined(switchboard, "carl", "customer", "c1", tenant="globex")
    await say(carl, "hello?", "c1")
    await say(dora, "hello?", "c2")
    await say(ann, "Hi Dora!", "c2")
    await trio.sleep(DELAY + 1)
    assert len(bot_replies(carl)) == 1
    assert bot_replies(dora) == []
    assert bot_replies(elsewhere) == []


async def test_bot_and_system_messages_start_no_wait(switchboard: Harness) -> None:
    await conversation(switchboard)
    carl = await joined(switchboard, "carl", "customer")
    chat = chat_of(switchboard)
    await chat.post_message("acme", "c1", sender_id="crm", content={"text": "Order shipped"})
    await chat.post_message("acme", "c1", sender_id="survey-bot", sender_role="bot",
                            content={"text": "How did we do?"})
    await trio.sleep(DELAY + 1)
    assert [m["senderId"] for m in bot_replies(carl)] == ["survey-bot"]


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("switchboard_config", [{"plugins": {"autoreply": {
    "delay": 30, "text": "Un momento, por favor.", "sender_id": "helpdesk",
    "customer_roles": ["customer", "visitor"]}}}], indirect=True, ids=["custom"])
async def test_settings_from_config(switchboard: Harness) -> None:
    await conversation(switchboard, customer="vic")
    vic = await joined(switchboard, "vic", "visitor")
    await say(vic, "hola")
    await trio.sleep(29)
    assert bot_replies(vic) == []
    await trio.sleep(2)
    [reply] = bot_replies(vic)
    assert (reply["senderId"], reply["content"]) == ("helpdesk",
                                                     {"text": "Un momento, por favor."})


@pytest.mark.parametrize(("section", "key"), [
    ({"delay": -1}, "plugins.autoreply.delay"),
    ({"delay": "soon"}, "plugins.autoreply.delay"),
    ({"text": "   "}, "plugins.autoreply.text"),
    ({"text": "x" * 4097}, "plugins.autoreply.text"),
    ({"sender_id": ""}, "plugins.autoreply.sender_id"),
    ({"customer_roles": []}, "plugins.autoreply.customer_roles"),
    ({"dealy": 30}, "plugins.autoreply.dealy"),
], ids=["negative_delay", "wrong_type", "blank_text", "long_text", "empty_sender",
        "no_roles", "misspelled"])
def test_a_bad_setting_is_a_config_error_naming_it(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Server(make_config({"plugins": {"autoreply": section}}),
               plugins={"autoreply": AutoReplyPlugin})
    assert refused.value.key == key


def test_without_the_chat_plugin_the_start_up_fails_naming_it() -> None:
    async def start() -> None:
        server = Server(make_config({"plugins": {"chat": {"enabled": False}}}),
                        plugins={"autoreply": AutoReplyPlugin})
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: server.run(listen=False,
                                                               task_status=task_status))
            server.shutdown()

    with pytest.raises(BaseExceptionGroup) as refused:
        trio.run(start)
    assert refused.group_contains(LookupError, match="'chat'", depth=None)


# -- the route --------------------------------------------------------------------------


async def test_the_route_lists_the_conversations_waiting_for_an_agent(
        switchboard: Harness) -> None:
    await conversation(switchboard, "c1")
    await conversation(switchboard, "c2", customer="dora")
    carl = await joined(switchboard, "carl", "customer", "c1")
    dora = await joined(switchboard, "dora", "customer", "c2")
    asked = await say(carl, "hello?", "c1")
    await trio.sleep(DELAY + 1)  # answered by the bot: no longer waiting
    asked = await say(dora, "hello?", "c2")
    await dora.settle(1)  # the plugin hears of it in the background
    response = await switchboard.http().get("/api/v1/autoreply/acme",
                                            headers=switchboard.api_headers())
    body = await response.get_json()
    assert [(w["conversationId"], w["messageId"]) for w in body["waiting"]] == [
        ("c2", asked["id"])]
    assert body["waiting"][0]["replyAt"] == asked["createdAt"] + DELAY


async def test_the_route_needs_a_key_for_the_tenant(switchboard: Harness) -> None:
    http = switchboard.http()
    assert (await http.get("/api/v1/autoreply/acme")).status_code == 401
    own = await http.get("/api/v1/autoreply/acme", headers={"X-API-Key": ACME_KEY})
    other = await http.get("/api/v1/autoreply/globex", headers={"X-API-Key": ACME_KEY})
    assert (own.status_code, other.status_code) == (200, 403)


# -- across a restart -------------------------------------------------------------------


@pytest.fixture
def wait_left_by_a_previous_run(database: str) -> Iterator[None]:
    """A previous run stored a customer's message ``AGE`` s ago (wall clock) and stopped."""
    metadata = sa.MetaData()
    AutoReplyPlugin().switchboard_tables(metadata)
    engine = sa.create_engine(database)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(metadata.tables["autoreply_waits"].insert(), {
                "tenant_id": "acme", "conversation_id": "c1", "message_id": 41,
                "since": time.time() - AGE, "replied": False})
        yield
    finally:
        engine.dispose()


async def test_a_wait_keeps_the_time_it_had_left_across_a_restart(
        wait_left_by_a_previous_run: None, switchboard: Harness) -> None:
    # DELAY - AGE (60 s) were left: no reply half-way through them (so the real
    # time the start takes, up to 30 s, does not matter), one before a whole new
    # DELAY would have ended
    await conversation(switchboard)
    ann = await joined(switchboard, "ann", "agent")
    await trio.sleep((DELAY - AGE) / 2)
    assert bot_replies(ann) == []
    await trio.sleep(DELAY - AGE)
    [reply] = bot_replies(ann)
    assert reply["clientId"] == "autoreply:41"
