"""Chat and notifications under concurrent requests, and at the edges of ids.

Each test is a bug a user once could have noticed (a watermark moving back, a
participant locked out, a 500 instead of a 409, a conversation nobody can
join); its docstring says what they would have seen and what the README
promises. Tests run on SQLite and PostgreSQL unless the case needs PostgreSQL
(a race that SQLite's one-writer lock rules out, or a PostgreSQL column type).

Races are made deterministic without sleeping on the real clock: a second
PostgreSQL connection holds a row lock (or an uncommitted row) so that the
server's transactions line up in the order that used to lose data, and the
test waits until PostgreSQL reports them waiting on that lock.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from chats import (
    create_conversation,
    joined,
    switchboard_config,  # noqa: F401  (the fixture: SQLite, then PostgreSQL)
    text,
)
from switchboard.testing import ErrorReply, Harness, TestClient

POSTGRESQL_ONLY = pytest.mark.parametrize("switchboard_config", ["postgresql"], indirect=True)


async def statuses(client: TestClient, conv_id: str = "c1") -> dict[int, str]:
    page = await client.request("message:history", {"conversationId": conv_id})
    return {m["id"]: m["status"] for m in page["messages"]}


async def answer(client: TestClient, event: str, data: Any) -> Any:
    """The ack, or the error code."""
    try:
        return await client.request(event, data)
    except ErrorReply as exc:
        return exc.code


def _wait_for_lock_waiters(url: str, count: int) -> None:
    """Block until ``count`` sessions of the database wait on a lock."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for _ in range(1000):
                waiting = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar_one()
                conn.rollback()  # pg_stat_activity is a snapshot per transaction
                if waiting >= count:
                    return
                time.sleep(0.01)
    finally:
        engine.dispose()
    raise AssertionError(f"never saw {count} sessions waiting on a lock")


async def wait_for_lock_waiters(switchboard: Harness, count: int) -> None:
    # hold the mock clock while the thread polls, as the README asks of plugins
    with switchboard.app.store.around_call():
        await trio.to_thread.run_sync(_wait_for_lock_waiters, switchboard.config.store.url,
                                      count)


class OtherTransaction:
    """A transaction on a second connection to the server's PostgreSQL database."""

    def __init__(self, switchboard: Harness) -> None:
        self.switchboard = switchboard
        self.engine = sa.create_engine(switchboard.config.store.url)
        self.conn = self.engine.connect()
        self.tx = self.conn.begin()

    async def execute(self, sql: str) -> None:
        with self.switchboard.app.store.around_call():
            await trio.to_thread.run_sync(self.conn.execute, sa.text(sql))

    async def commit(self) -> None:
        with self.switchboard.app.store.around_call():
            await trio.to_thread.run_sync(self.tx.commit)

    def close(self) -> None:
        if self.tx.is_active:
            self.tx.rollback()
        self.conn.close()
        self.engine.dispose()


# -- 1. receipts: concurrent receipts move the watermark backwards ----------------


@POSTGRESQL_ONLY
async def test_concurrent_read_receipts_of_two_devices_never_move_the_watermark_back(
        switchboard: Harness) -> None:
    """Ann reads on her phone (message 2) while her laptop sends a late read
    receipt for message 1. Both acks say "read", yet afterwards message 2 is back
    to "sent" for Carl: the receipt reads the participant's watermarks, takes
    max() in Python and writes the result, so on PostgreSQL (READ COMMITTED) the
    transaction that commits last overwrites the other with its older value.

    README, Chat plugin: "Receipts are watermarks per participant: message:read
    for id N marks everything up to N" -- a watermark must never go back.
    (A second connection holds ann's participant row for a moment so that both
    receipts have read the row before either writes, as two concurrent
    transactions do.)"""
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    phone = await joined(switchboard, "ann")
    laptop = await joined(switchboard, "ann")
    first = await carl.request("message:send", {"conversationId": "c1", **text("1")})
    second = await carl.request("message:send", {"conversationId": "c1", **text("2")})
    other = OtherTransaction(switchboard)
    try:
        await other.execute("SELECT 1 FROM chat_participants WHERE user_id = 'ann' FOR UPDATE")
        await phone.emit("message:read", {"conversationId": "c1", "messageId": second["id"]},
                         id="r2")
        await wait_for_lock_waiters(switchboard, 1)
        await laptop.emit("message:read", {"conversationId": "c1", "messageId": first["id"]},
                          id="r1")
        await wait_for_lock_waiters(switchboard, 2)
        await other.commit()
    finally:
        other.close()
    assert (await phone._wait(lambda f: f.get("id") == "r2", 10))["type"] == "ack"
    assert (await laptop._wait(lambda f: f.get("id") == "r1", 10))["type"] == "ack"
    assert await statuses(carl) == {first["id"]: "read", second["id"]: "read"}


# -- 2. receipts: re-adding a participant resets them -----------------------------


async def test_adding_an_existing_participant_again_keeps_their_receipts(
        switchboard: Harness) -> None:
    """The backend posts a participant who is already in the conversation (a
    role change, or simply an idempotent retry of "add Ann"). Everything Ann had
    read turns back to "sent" for Carl: POST .../participants deletes the row and
    inserts it again with last_delivered_id = last_read_id = 0.

    README, Chat plugin: receipts are watermarks per participant ("message:read
    for id N marks everything up to N"); nothing documents adding a participant
    as erasing what they have already read."""
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    ann = await joined(switchboard, "ann")
    message = await carl.request("message:send", {"conversationId": "c1", **text("hello")})
    await ann.request("message:read", {"conversationId": "c1", "messageId": message["id"]})
    assert await statuses(carl) == {message["id"]: "read"}
    response = await switchboard.http().post(
        "/api/v1/conversations/c1/participants", headers=switchboard.api_headers(),
        json={"tenant": "t1", "userId": "ann", "role": "vip"})
    assert response.status_code == 201
    assert await statuses(carl) == {message["id"]: "read"}


# -- 3. conversation ids the README allows cannot be joined -------------------------


@pytest.mark.parametrize("conv_id", ["whatsapp:+5511987654321", "c" * 195])
async def test_a_participant_can_join_every_conversation_the_api_created(
        switchboard: Harness, conv_id: str) -> None:
    """The backend creates a WhatsApp conversation named after the phone number
    ("whatsapp:+5511987654321"), or one with a 195-character id; both are
    accepted (201) and messages can be posted to them, but their participant's
    conversation:join answers success: false, invalid_room -- so nobody ever gets
    that conversation's message:new live. The room conversation:{id} must be a
    room name (letters, digits and _.:@-, at most 200 characters), which "+" and
    a 188+ character id break.

    README, Chat plugin: ids (conversationId, ...) "are 1 to 200 characters
    without control characters", and conversation:join "joins
    conversation:{id}"; "Who may join conversation:{id}: the tenant's agents and
    the conversation's participants"."""
    await create_conversation(switchboard, conv_id=conv_id, participants=("carl",))
    carl = await switchboard.connect(user="carl", role="customer")
    ack = await carl.request("conversation:join", {"conversationId": conv_id})
    assert ack == {"success": True, "conversationId": conv_id}


# -- 4. notifications: ids past 2**31-1 crash on PostgreSQL -------------------------


@POSTGRESQL_ONLY
async def test_unread_count_stays_right_when_reads_of_one_user_overlap(
        switchboard: Harness) -> None:
    """Alice has three unread notifications. While another transaction (a
    second node, say) is marking the first one read, her phone asks to read the
    first and her laptop the second. Her tablet must end up with the true count,
    1: before, the laptop's transaction counted the first as still unread and
    announced 2, and the phone, finding the first already read, announced
    nothing to correct it.

    README, Notifications plugin: reading one "acks the unread count and other
    devices see it"."""
    async def notify(n: int) -> int:
        response = await switchboard.http().post(
            "/api/v1/notifications", headers=switchboard.api_headers(),
            json={"tenant": "acme", "user": "alice", "title": f"n{n}", "message": "m"})
        assert response.status_code == 201
        return int((await response.get_json())["id"])

    first, second, _ = [await notify(n) for n in range(3)]
    phone, laptop, tablet = [await switchboard.connect(user="alice", tenant="acme")
                             for _ in range(3)]
    for device in (phone, laptop, tablet):
        assert await device.expect("notification:unread_count") == {"count": 3}
    other = OtherTransaction(switchboard)
    try:
        await other.execute(f"UPDATE notifications_items SET read_at = 1 WHERE id = {first}")
        await phone.emit("notification:read", {"id": first}, id="p")
        await wait_for_lock_waiters(switchboard, 1)
        await laptop.emit("notification:read", {"id": second}, id="l")
        await wait_for_lock_waiters(switchboard, 2)
        await other.commit()
    finally:
        other.close()
    acks = [(await device._wait(lambda f, i=i: f.get("id") == i, 10))["data"]
            for device, i in ((phone, "p"), (laptop, "l"))]
    assert acks[1]["unreadCount"] == 1  # the laptop's read is the last to commit
    await tablet.settle(1)
    announced = tablet.received("notification:read")
    assert announced and announced[-1]["unreadCount"] == 1


@POSTGRESQL_ONLY
async def test_notification_ids_and_cursors_past_2_31_are_not_internal_errors(
        switchboard: Harness) -> None:
    """A web client that starts paging with before = Number.MAX_SAFE_INTEGER
    (2**53-1) gets internal_error on PostgreSQL, and marking id 2**31 read is
    internal_error instead of not_found; GET /api/v1/notifications/...?before=
    answers 500. notifications_items.id is an INTEGER (int4) column there while
    the payloads accept ids up to 2**63-1, so PostgreSQL raises "integer out of
    range" for the comparison. (The same column also makes the 2**31st
    notification impossible to store.)

    README, Notifications plugin: "before?: id" and "another user's or tenant's
    id is not_found"; Errors and close codes: "internal_error is any other
    failure on the server side (a bug: the log has the traceback)"; Chat plugin
    (the same store rules): ids and cursors "are 0 to 2**63-1"."""
    alice = await switchboard.connect(user="alice", tenant="acme")
    await alice.expect("notification:unread_count")
    listed = await answer(alice, "notification:list", {"before": 2**53 - 1})
    read = await answer(alice, "notification:read", {"id": 2**31})
    response = await switchboard.http().get(
        f"/api/v1/notifications/acme/alice?before={2**53 - 1}",
        headers=switchboard.api_headers())
    assert (listed, read, response.status_code) == (
        {"items": [], "nextBefore": None}, "not_found", 200)


# -- 5. participants cache: a participant added during a load is locked out ---------


async def test_a_participant_added_while_the_conversation_is_loading_may_join(
        switchboard: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent opens a conversation whose participants are not cached (the
    load reads the participants table) while the backend adds Ann to it. The
    add commits and drops the cache entry, then the load that had read the
    table before the add finishes and caches the old participants. From then on
    Ann's conversation:join is forbidden (and her sends and history too) until
    the entry happens to be evicted -- with cache_size 10,000, practically never.

    The test holds the first load's result back for a moment after its
    transaction ran (as a slow commit round trip or a busy event loop does); the
    README promises: "Who may join conversation:{id}: ... the conversation's
    participants", and POST .../participants adds one."""
    await create_conversation(switchboard, participants=("carl",))
    store = switchboard.app.store
    original = store.run
    loaded, resume = trio.Event(), trio.Event()
    loads = 0

    async def run(fn: Any) -> Any:
        nonlocal loads
        result = await original(fn)
        if getattr(fn, "__name__", "") == "load":
            loads += 1
            if loads == 1:  # the agent's load: its answer arrives late
                loaded.set()
                await resume.wait()
        return result

    monkeypatch.setattr(store, "run", run)
    zoe = await switchboard.connect(user="zoe", role="agent")
    await zoe.emit("conversation:join", {"conversationId": "c1"}, id="join")
    await loaded.wait()
    added = await switchboard.http().post(
        "/api/v1/conversations/c1/participants", headers=switchboard.api_headers(),
        json={"tenant": "t1", "userId": "ann"})
    assert added.status_code == 201
    resume.set()
    assert (await zoe._wait(lambda f: f.get("id") == "join", 10))["data"]["success"] is True
    ann = await switchboard.connect(user="ann", role="customer")
    ack = await ann.request("conversation:join", {"conversationId": "c1"})
    assert ack == {"success": True, "conversationId": "c1"}


# -- 6. creating a conversation concurrently is a 500, not a 409 --------------------


@POSTGRESQL_ONLY
async def test_creating_a_conversation_that_another_request_is_creating_is_409(
        switchboard: Harness) -> None:
    """Two backend requests (say a WhatsApp webhook and its retry, or two
    nodes) create conversation c1 at the same time. The second answers 500
    internal_server_error instead of 409: POST /api/v1/conversations checks
    whether the id exists, then INSERTs; on PostgreSQL the other request's row is
    not visible yet to the check, so the INSERT hits the primary key and the
    IntegrityError surfaces as a server error.

    README, Chat plugin HTTP: "POST /api/v1/conversations ... -> 201 (409 if it
    exists)". (A second connection plays the other request: its row is inserted
    and committed while this one waits on it.)"""
    other = OtherTransaction(switchboard)
    result: dict[str, Any] = {}

    async def create() -> None:
        response = await switchboard.http().post(
            "/api/v1/conversations", headers=switchboard.api_headers(),
            json={"tenant": "t1", "id": "c1", "participants": [{"userId": "carl"}]})
        result["status"] = response.status_code
        result["body"] = await response.get_json()

    try:
        await other.execute("INSERT INTO chat_conversations (tenant_id, id, title, created_at) "
                            "VALUES ('t1', 'c1', NULL, 0)")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            await wait_for_lock_waiters(switchboard, 1)
            await other.commit()
    finally:
        other.close()
    assert (result["status"], result["body"]["code"]) == (409, "conflict")


# -- 7. a late receipt broadcasts a status older than the watermark ----------------


async def test_a_late_delivered_receipt_does_not_turn_a_read_message_back_to_delivered(
        switchboard: Harness) -> None:
    """Ann's phone marks the message read; her laptop's "delivered" receipt for
    the same message arrives a moment later. Carl's client gets message:status
    {status: "delivered"} for a message Ann has read, and its read ticks turn
    back to delivered (history still says "read": the stored watermark did not
    move, only the broadcast and the ack report the stale receipt).

    README, Chat plugin: "Receipts are watermarks per participant: message:read
    for id N marks everything up to N"; message:status carries the status of
    that participant's receipt to conversation:{id}."""
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    phone = await joined(switchboard, "ann")
    laptop = await joined(switchboard, "ann")
    message = await carl.request("message:send", {"conversationId": "c1", **text("hi")})
    receipt = {"conversationId": "c1", "messageId": message["id"]}
    await phone.request("message:read", receipt)
    assert (await carl.expect("message:status"))["status"] == "read"
    await laptop.request("message:delivered", receipt)
    await carl.settle(1)
    assert await statuses(carl) == {message["id"]: "read"}
    assert [s["status"] for s in carl.received("message:status")] in ([], ["read"])


# -- 8. history limit 0 ----------------------------------------------------------------


async def test_history_limit_zero_is_refused_like_any_non_positive_limit(
        switchboard: Harness) -> None:
    """message:history with limit 0 answers a full default page (50 messages):
    `limit or history_page` treats 0 as "not given", so the check right after it
    ("limit: must be positive") never sees it, while limit -1 is refused
    invalid_payload. A client computing "how many more fit" that reaches 0 gets
    50 messages it did not ask for. The HTTP route behaves the same (limit=0).

    README, Errors: a payload that does not fit is invalid_payload naming the
    field; the plugin itself says a limit must be positive."""
    await create_conversation(switchboard)
    carl = await joined(switchboard, "carl")
    await carl.request("message:send", {"conversationId": "c1", **text("x")})
    with pytest.raises(ErrorReply) as negative:
        await carl.request("message:history", {"conversationId": "c1", "limit": -1})
    assert (negative.value.code, negative.value.field) == ("invalid_payload", "limit")
    zero = await answer(carl, "message:history", {"conversationId": "c1", "limit": 0})
    assert zero == "invalid_payload"
