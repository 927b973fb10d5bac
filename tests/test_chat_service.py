"""The chat plugin as other plugins use it: the ``chat`` service and the hooks
of its domain events, whatever a message's source. SQLite, then PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio
from chats import (
    create_conversation,
    joined,
    switchboard_config,  # noqa: F401  (the fixture: SQLite, then PostgreSQL)
    text,
)
from switchboard.core import (
    App,
    ChatMessage,
    ChatParticipant,
    ChatService,
    ChatStatusChange,
    ClientError,
    ConfigError,
    MessageSource,
    hookimpl,
)
from switchboard.core.server import Server
from switchboard.testing import ErrorReply, Harness, make_config


class Recorder:
    """Another plugin, listening to the chat's domain events."""

    def __init__(self) -> None:
        self.stored: list[tuple[ChatMessage, MessageSource]] = []
        self.statuses: list[ChatStatusChange] = []
        self.shut_down_after: int | None = None

    @hookimpl
    def switchboard_chat_message_stored(self, message: ChatMessage,
                                        source: MessageSource) -> None:
        self.stored.append((message, source))

    @hookimpl
    def switchboard_chat_status_changed(self, change: ChatStatusChange) -> None:
        self.statuses.append(change)

    @hookimpl
    def switchboard_shutdown(self) -> None:
        self.shut_down_after = len(self.stored)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def switchboard_plugins(request: pytest.FixtureRequest,
                        recorder: Recorder) -> Mapping[str, object]:
    """The recorder, or the plugins given by indirect parametrization."""
    plugins: Mapping[str, object] = getattr(request, "param", {"recorder": recorder})
    return plugins


def plugin(switchboard: Harness, name: str) -> Any:
    return switchboard.server.plugins.pm.get_plugin(name)


def chat_of(switchboard: Harness) -> ChatService:
    app: App = switchboard.app
    return app.service("chat")


async def quiet(seconds: float = 1) -> None:
    """Let the server finish what it is doing (mock time)."""
    await trio.sleep(seconds)


async def post_over_http(switchboard: Harness, conv_id: str = "c1", **body: Any) -> Any:
    response = await switchboard.http().post(
        f"/api/v1/conversations/{conv_id}/messages", headers=switchboard.api_headers(),
        json={"tenant": "t1", "senderId": "whatsapp:+5511987654321", "senderRole": "customer",
              **text("from WhatsApp"), **body})
    assert response.status_code in (200, 201), await response.get_json()
    return await response.get_json()


# -- the hook: a message is stored, whatever its source ---------------------------------


async def test_every_stored_message_is_reported_once_with_its_source(
        switchboard: Harness, recorder: Recorder) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    from_socket = await carl.request("message:send", {"conversationId": "c1", **text("hi")})
    from_http = await post_over_http(switchboard, clientId="wamid.1")
    from_plugin = await chat_of(switchboard).post_message(
        "t1", "c1", sender_id="autoreply", sender_role="bot", content={"text": "hello!"})
    await post_over_http(switchboard, clientId="wamid.1")  # a resend: nothing new
    await quiet()
    assert [(m.id, m.sender_id, m.sender_role, source) for m, source in recorder.stored] == [
        (from_socket["id"], "carl", "customer", "socket"),
        (from_http["id"], "whatsapp:+5511987654321", "customer", "http"),
        (from_plugin.id, "autoreply", "bot", "plugin")]
    assert recorder.stored[0][0].to_json() == from_socket
    assert recorder.stored[0][0].tenant_id == "t1"


class HistoryReader:
    """Reads each reported message back through the service: it is committed."""

    def __init__(self) -> None:
        self.found: list[bool] = []
        self.app: App | None = None

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app

    @hookimpl
    async def switchboard_chat_message_stored(self, message: ChatMessage) -> None:
        assert self.app is not None
        page = await self.app.service("chat").history(message.tenant_id,
                                                      message.conversation_id,
                                                      after=message.id - 1, limit=1)
        self.found.append([m.id for m in page.messages] == [message.id])


@pytest.mark.parametrize("switchboard_plugins", [{"reader": HistoryReader}], indirect=True)
async def test_the_hook_runs_after_the_batch_committed(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    for n in range(5):
        await carl.emit("message:send", {"conversationId": "c1", **text(f"{n}")}, id=n)
    await quiet()
    reader = plugin(switchboard, "reader")
    assert reader.found == [True] * 5


class Blocking:
    """A hook that waits until the test lets it go."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.seen: list[str] = []

    @hookimpl
    async def switchboard_chat_message_stored(self, message: ChatMessage) -> None:
        await self.release.wait()
        self.seen.append(message.content["text"])


@pytest.mark.parametrize("switchboard_plugins", [{"blocking": Blocking}], indirect=True)
async def test_a_slow_hook_holds_up_neither_the_sender_nor_the_room(
        switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    for n in range(3):
        ack = await carl.request("message:send", {"conversationId": "c1", **text(f"m{n}")})
        assert (await ann.expect("message:new"))["id"] == ack["id"]
    blocking = plugin(switchboard, "blocking")
    assert blocking.seen == []
    blocking.release.set()
    await quiet()
    assert blocking.seen == ["m0", "m1", "m2"]  # in order, none lost


class Failing:
    @hookimpl
    def switchboard_chat_message_stored(self, message: ChatMessage) -> None:
        raise RuntimeError("this plugin has a bug")


@pytest.mark.parametrize("switchboard_plugins", [{"failing": Failing, "zrecorder": Recorder}],
                         indirect=True)
async def test_a_failing_hook_is_counted_and_the_others_still_run(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    for n in range(2):
        await carl.request("message:send", {"conversationId": "c1", **text(f"m{n}")})
    await quiet()
    recorder = plugin(switchboard, "zrecorder")
    assert len(recorder.stored) == 2
    metrics = switchboard.app.metrics.render().decode()
    assert ('switchboard_plugin_failures_total{hook="switchboard_chat_message_stored",'
            'plugin="failing"} 2.0') in metrics


class Echo:
    """Answers every customer message from inside the hook, as a bot."""

    def __init__(self) -> None:
        self.app: App | None = None

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app

    @hookimpl
    async def switchboard_chat_message_stored(self, message: ChatMessage) -> None:
        assert self.app is not None
        if message.sender_role == "customer":
            await self.app.service("chat").post_message(
                message.tenant_id, message.conversation_id, sender_id="echo-bot",
                sender_role="bot", content={"text": f"echo: {message.content['text']}"},
                client_id=f"echo:{message.id}")


@pytest.mark.parametrize("switchboard_plugins", [{"echo": Echo, "recorder": Recorder}],
                         indirect=True)
async def test_a_hook_may_post_into_the_chat_itself(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    sent = await carl.request("message:send", {"conversationId": "c1", **text("ping")})
    echo = await carl.expect("message:new")
    assert (echo["senderId"], echo["senderRole"], echo["content"]) == (
        "echo-bot", "bot", {"text": "echo: ping"})
    assert echo["clientId"] == f"echo:{sent['id']}"
    await quiet()
    recorder = plugin(switchboard, "recorder")
    assert [(m.id, source) for m, source in recorder.stored] == [
        (sent["id"], "socket"), (echo["id"], "plugin")]
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert [m["id"] for m in page["messages"]] == [sent["id"], echo["id"]]


async def test_status_changes_are_reported_when_a_watermark_moves(
        switchboard: Harness, recorder: Recorder) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    first = await carl.request("message:send", {"conversationId": "c1", **text("1")})
    second = await carl.request("message:send", {"conversationId": "c1", **text("2")})
    await ann.request("message:read", {"conversationId": "c1", "messageId": second["id"]})
    # moves nothing: read already passed it
    await ann.request("message:delivered", {"conversationId": "c1", "messageId": first["id"]})
    await quiet()
    assert recorder.statuses == [ChatStatusChange("t1", "c1", second["id"], "ann", "read")]


async def test_hooks_of_what_was_stored_run_before_the_server_stops(
        switchboard: Harness, recorder: Recorder) -> None:
    await create_conversation(switchboard)
    chat = chat_of(switchboard)
    for n in range(3):
        await chat.post_message("t1", "c1", sender_id="system", content={"text": f"{n}"})
    await switchboard.stop()
    assert recorder.shut_down_after == 3


# -- the service -------------------------------------------------------------------------


async def test_a_bot_message_is_broadcast_and_kept_in_the_history(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    posted = await chat_of(switchboard).post_message(
        "t1", "c1", sender_id="helpdesk-bot", sender_role="bot",
        content={"text": "An agent will answer shortly."})
    assert posted.id > 0 and posted.status == "sent" and posted.sender_role == "bot"
    assert await carl.expect("message:new") == posted.to_json()
    page = await carl.request("message:history", {"conversationId": "c1"})
    assert page["messages"] == [posted.to_json()]


async def test_a_system_message_of_any_type_and_its_resend(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    ann = await joined(switchboard, "ann")
    chat = chat_of(switchboard)
    image = {"url": "https://cdn.example/p.jpg", "mimeType": "image/jpeg"}
    posted = await chat.post_message("t1", "c1", sender_id="crm", type="image", content=image,
                                     client_id="lead-7-photo")
    assert posted.sender_role == "system" and posted.content == image
    again = await chat.post_message("t1", "c1", sender_id="crm", type="image", content=image,
                                    client_id="lead-7-photo")
    assert again.id == posted.id
    await ann.expect("message:new")
    await ann.settle(1)
    assert ann.received("message:new") == []


@pytest.mark.parametrize(("arguments", "code", "field"), [
    ({"content": {"text": ""}}, "invalid_payload", "content.text"),
    ({"content": {"text": "x"}, "type": "sticker"}, "invalid_payload", "type"),
    ({"content": {"url": "ftp://x"}, "type": "image"}, "invalid_payload", "content.url"),
    ({"content": {"text": "x"}, "sender_id": ""}, "invalid_payload", "sender_id"),
    ({"content": {"text": "x"}, "sender_role": "b\x00t"}, "invalid_payload", "sender_role"),
    ({"content": {"text": "x"}, "client_id": "k" * 201}, "invalid_payload", "client_id"),
    ({"content": {"text": "x"}, "conversation_id": "c 1"}, "invalid_payload",
     "conversation_id"),
    ({"content": {"text": "x"}, "conversation_id": "nope"}, "not_found", None),
    ({"content": {"text": "x"}, "tenant_id": "t2"}, "not_found", None),
])
async def test_bad_posts_are_refused_with_a_code_naming_the_argument(
        switchboard: Harness, arguments: dict[str, Any], code: str, field: str | None) -> None:
    await create_conversation(switchboard)
    call = {"tenant_id": "t1", "conversation_id": "c1", "sender_id": "bot", **arguments}
    with pytest.raises(ClientError) as refused:
        await chat_of(switchboard).post_message(call.pop("tenant_id"),
                                                call.pop("conversation_id"), **call)
    assert (refused.value.code, refused.value.field) == (code, field)
    history = await chat_of(switchboard).history("t1", "c1")
    assert history.messages == []


async def test_get_or_create_finds_a_conversation_or_creates_it_once(
        switchboard: Harness) -> None:
    chat = chat_of(switchboard)
    customer = ChatParticipant("+5511987654321", "customer")
    results: list[tuple[Any, bool]] = []

    async def get_or_create(title: str) -> None:
        results.append(await chat.get_or_create_conversation(
            "t1", "whatsapp:+5511987654321", title=title, participants=[customer]))

    async with trio.open_nursery() as nursery:
        for title in ("first", "second", "third"):
            nursery.start_soon(get_or_create, title)
    assert sorted(created for _, created in results) == [False, False, True]
    winner = next(conv for conv, created in results if created)
    assert all(conv == winner for conv, _ in results)
    assert winner.participants == (customer,)
    assert winner.room == "conversation:whatsapp:+5511987654321"
    assert await chat.get_conversation("t1", "whatsapp:+5511987654321") == winner
    assert await chat.get_conversation("t2", "whatsapp:+5511987654321") is None


async def test_create_conversation_with_a_random_id_and_a_conflict(switchboard: Harness) -> None:
    chat = chat_of(switchboard)
    made = await chat.create_conversation("t1", title="Support",
                                          participants=[ChatParticipant("carl")])
    assert made.id and made.title == "Support"
    with pytest.raises(ClientError) as refused:
        await chat.create_conversation("t1", made.id)
    assert refused.value.code == "conflict"
    with pytest.raises(ClientError) as refused:
        await chat.create_conversation("t1", "c2", title="t" * 501)
    assert (refused.value.code, refused.value.field) == ("invalid_payload", "title")
    with pytest.raises(ClientError) as refused:
        await chat.create_conversation("t1", "c2", participants=[ChatParticipant("u\x01")])
    assert refused.value.field == "participants.0.user_id"
    customer = await switchboard.connect(user="carl", role="customer")
    ack = await customer.request("conversation:join", {"conversationId": made.id})
    assert ack["success"] is True


async def test_an_added_participant_may_join_and_a_removed_one_is_taken_out(
        switchboard: Harness) -> None:
    chat = chat_of(switchboard)
    await create_conversation(switchboard, participants=("ann",))
    dora = await switchboard.connect(user="dora", role="customer")
    refused = await dora.request("conversation:join", {"conversationId": "c1"})
    assert refused["error"]["code"] == "forbidden"
    assert await chat.add_participant("t1", "c1", "dora") == ChatParticipant("dora", "customer")
    assert (await dora.request("conversation:join", {"conversationId": "c1"}))["success"]
    agent = await joined(switchboard, "zoe", role="agent")
    await chat.add_participant("t1", "c1", "zoe", role="agent")

    assert await chat.remove_participant("t1", "c1", "dora") is True
    assert await chat.remove_participant("t1", "c1", "dora") is False
    assert await chat.remove_participant("t1", "c1", "zoe") is True
    await chat.post_message("t1", "c1", sender_id="system", content={"text": "after"})
    assert (await agent.expect("message:new"))["content"] == {"text": "after"}  # still in
    await dora.settle(1)
    assert dora.received("message:new") == []
    assert "conversation:c1" not in next(iter(switchboard.app.user_sessions("t1", "dora"))).rooms
    again = await dora.request("conversation:join", {"conversationId": "c1"})
    assert again["error"]["code"] == "forbidden"
    conversation = await chat.get_conversation("t1", "c1")
    assert conversation is not None
    assert [p.user_id for p in conversation.participants] == ["ann"]


async def test_participants_of_an_unknown_conversation_are_not_found(
        switchboard: Harness) -> None:
    chat = chat_of(switchboard)
    for call in (chat.add_participant("t1", "nope", "dora"),
                 chat.remove_participant("t1", "nope", "dora"),
                 chat.history("t1", "nope")):
        with pytest.raises(ClientError) as refused:
            await call
        assert refused.value.code == "not_found"


async def test_history_pages_with_statuses(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    ids = [(await carl.request("message:send", {"conversationId": "c1", **text(f"{n}")}))["id"]
           for n in range(5)]
    await ann.request("message:read", {"conversationId": "c1", "messageId": ids[1]})
    chat = chat_of(switchboard)
    newest = await chat.history("t1", "c1", limit=2)
    assert [m.id for m in newest.messages] == ids[3:] and newest.has_more
    older = await chat.history("t1", "c1", before=newest.next_before)
    assert [(m.id, m.status) for m in older.messages] == [
        (ids[0], "read"), (ids[1], "read"), (ids[2], "sent")]
    caught_up = await chat.history("t1", "c1", after=ids[2])
    assert [m.id for m in caught_up.messages] == ids[3:] and not caught_up.has_more
    with pytest.raises(ClientError) as refused:
        await chat.history("t1", "c1", before=1, after=1)
    assert refused.value.field == "after"
    with pytest.raises(ClientError) as refused:
        await chat.history("t1", "c1", before=-1)
    assert refused.value.field == "before"


# -- over HTTP ---------------------------------------------------------------------------


async def test_http_removes_a_participant(switchboard: Harness) -> None:
    await create_conversation(switchboard)
    http, headers = switchboard.http(), switchboard.api_headers()
    gone = await http.delete("/api/v1/conversations/c1/participants/carl?tenant=t1",
                             headers=headers)
    assert gone.status_code == 204
    again = await http.delete("/api/v1/conversations/c1/participants/carl?tenant=t1",
                              headers=headers)
    assert again.status_code == 404 and (await again.get_json())["code"] == "not_found"
    unknown = await http.delete("/api/v1/conversations/nope/participants/carl?tenant=t1",
                                headers=headers)
    assert unknown.status_code == 404
    anonymous = await http.delete("/api/v1/conversations/c1/participants/ann?tenant=t1")
    assert anonymous.status_code == 401
    shown = await http.get("/api/v1/conversations/c1?tenant=t1", headers=headers)
    assert (await shown.get_json())["participants"] == [{"userId": "ann", "role": "customer"}]


async def test_http_shows_the_title_of_a_conversation(switchboard: Harness) -> None:
    await chat_of(switchboard).create_conversation("t1", "c9", title="Refund for order 7")
    shown = await switchboard.http().get("/api/v1/conversations/c9?tenant=t1",
                                         headers=switchboard.api_headers())
    assert (await shown.get_json())["title"] == "Refund for order 7"


async def test_a_customer_who_is_not_a_participant_still_cannot_send(
        switchboard: Harness) -> None:
    await create_conversation(switchboard)
    mallory = await switchboard.connect(user="mallory", role="customer")
    with pytest.raises(ErrorReply) as refused:
        await mallory.request("message:send", {"conversationId": "c1", **text("hi")})
    assert refused.value.code == "forbidden"


# -- finding services --------------------------------------------------------------------


async def test_an_unknown_service_is_a_lookup_error_naming_what_is_offered(
        switchboard: Harness) -> None:
    with pytest.raises(LookupError, match=r"'crm'.*chat"):
        switchboard.app.service("crm")


class AnotherChat:
    @hookimpl
    def switchboard_services(self) -> Mapping[str, object]:
        return {"chat": object()}


def test_two_plugins_offering_the_same_service_is_a_start_up_error() -> None:
    with pytest.raises(ConfigError) as refused:
        Server(make_config(), plugins={"another": AnotherChat})
    assert refused.value.key == "plugins.another"
    assert "'chat'" in refused.value.message


def test_a_disabled_chat_offers_no_service() -> None:
    server = Server(make_config({"plugins": {"chat": {"enabled": False}}}))
    with pytest.raises(LookupError):
        server.app.service("chat")
    assert server.app.service("notifications") is not None


async def test_a_failure_of_the_batch_writer_is_counted_and_the_chat_goes_on(
        switchboard: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    writer = plugin(switchboard, "chat").chat._writer
    real = writer._flush_some
    failures = [RuntimeError("a bug in the writer")]

    async def flush_some() -> None:
        if failures:
            raise failures.pop()
        await real()

    monkeypatch.setattr(writer, "_flush_some", flush_some)
    sent = await carl.request("message:send", {"conversationId": "c1", **text("still here")})
    assert (await ann.expect("message:new"))["id"] == sent["id"]
    metrics = switchboard.app.metrics.render().decode()
    assert 'switchboard_plugin_failures_total{hook="task",plugin="ChatPlugin"} 1.0' in metrics
    await trio.sleep(2)  # started again: later messages are written as before
    again = await carl.request("message:send", {"conversationId": "c1", **text("and here")})
    assert (await ann.expect("message:new"))["id"] == again["id"]


async def test_a_receipt_given_on_a_participants_behalf(switchboard: Harness) -> None:
    chat = chat_of(switchboard)
    await chat.create_conversation("t1", "wa1", participants=[
        ChatParticipant("wa:5511", "customer"), ChatParticipant("ann", "agent")])
    ann = await switchboard.connect("ann", "t1", role="agent")
    await ann.request("conversation:join", {"conversationId": "wa1"})
    first = await chat.post_message("t1", "wa1", sender_id="ann", sender_role="agent",
                                    content={"text": "one"})
    second = await chat.post_message("t1", "wa1", sender_id="ann", sender_role="agent",
                                     content={"text": "two"})
    change = await chat.mark_receipt("t1", "wa1", "wa:5511", second.id, "read")
    assert change == ChatStatusChange("t1", "wa1", second.id, "wa:5511", "read")
    status = await ann.expect("message:status")
    assert (status["userId"], status["status"], status["messageId"]) == (
        "wa:5511", "read", second.id)
    late = await chat.mark_receipt("t1", "wa1", "wa:5511", first.id, "delivered")
    assert late.status == "read"  # a watermark never moves back
    history = await chat.history("t1", "wa1")
    assert [m.status for m in history.messages] == ["read", "read"]
    with pytest.raises(ClientError) as stranger:
        await chat.mark_receipt("t1", "wa1", "eve", first.id, "read")
    assert (stranger.value.code, stranger.value.field) == ("invalid_payload", "user_id")
    with pytest.raises(ClientError) as missing:
        await chat.mark_receipt("t1", "wa1", "wa:5511", 10**9, "read")
    assert missing.value.code == "not_found"
    with pytest.raises(ClientError) as elsewhere:
        await chat.mark_receipt("t2", "wa1", "wa:5511", first.id, "read")
    assert elsewhere.value.code == "not_found"


