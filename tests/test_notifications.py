"""The notifications plugin: created by HTTP or by another plugin, pushed to every
device of the user, replayed to a device that was offline, listed and marked read.

Every test runs on in-memory SQLite and on a real PostgreSQL database."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from databases import database_url
from switchboard.core import App, ClientError, Notification, Session, hookimpl, incoming
from switchboard.core.config import Config, merge
from switchboard.testing import ErrorReply, Harness, TestClient, make_config

ACME_KEY = "acme-only-key-0123456789"


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One fresh PostgreSQL database for this module (emptied before each test)."""
    with database_url("postgresql", tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture
def extra_config() -> dict[str, Any]:
    """Config overrides of one test (parametrize it to change them)."""
    return {}


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, extra_config: dict[str, Any]) -> Config:
    overrides: dict[str, Any] = {
        "api_keys": [{"key": "test-api-key-0123456789", "tenant": "*", "name": "tests"},
                     {"key": ACME_KEY, "tenant": "acme", "name": "acme backend"}],
    }
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS notifications_items")
            conn.exec_driver_sql("DROP TABLE IF EXISTS notifications_alembic_version")
        engine.dispose()
        overrides["store"] = {"url": url}
    return make_config(merge(overrides, extra_config))


class NotifierPlugin:
    """Another plugin: ``test:notify {user, notification}`` creates a notification
    through the hook and acks what it returned; it records every notification
    reported created."""

    app: App

    def __init__(self) -> None:
        self.created: list[Notification] = []

    @hookimpl
    def switchboard_notification_created(self, notification: Notification) -> None:
        self.created.append(notification)

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [incoming("test:notify", None, self.notify)]

    async def notify(self, session: Session, data: Any) -> Any:
        results = await self.app.call_hook(
            "switchboard_create_notification", tenant_id=session.tenant_id,
            user_id=data["user"], notification=data["notification"])
        return results[0]


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"notifier": NotifierPlugin}


async def notify(switchboard: Harness, user: str = "alice", tenant: str = "acme",
                 **fields: Any) -> dict[str, Any]:
    """Create a notification through the HTTP API; return the stored notification."""
    body = {"tenant": tenant, "user": user, "title": "New lead", "message": "Ana wrote",
            **fields}
    response = await switchboard.http().post("/api/v1/notifications",
                                             headers=switchboard.api_headers(), json=body)
    assert response.status_code == 201, await response.get_json()
    stored: dict[str, Any] = await response.get_json()
    return stored


async def connect(switchboard: Harness, user: str = "alice", tenant: str = "acme") -> TestClient:
    """Connect and consume the unread count every new device gets."""
    client = await switchboard.connect(user=user, tenant=tenant)
    await client.expect("notification:unread_count")
    return client


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


# -- creation and live delivery -------------------------------------------------


async def test_created_notification_reaches_every_device_of_the_user(
        switchboard: Harness) -> None:
    phone = await connect(switchboard)
    laptop = await connect(switchboard)
    stored = await notify(switchboard, type="lead", link="/leads/7", data={"leadId": 7})
    expected = {"id": stored["id"], "title": "New lead", "message": "Ana wrote", "type": "lead",
                "link": "/leads/7", "data": {"leadId": 7}, "createdAt": stored["createdAt"],
                "read": False}
    assert await phone.expect("notification:new") == expected
    assert await laptop.expect("notification:new") == expected


async def test_http_creation_answers_201_with_the_stored_notification(
        switchboard: Harness) -> None:
    before = time.time()
    stored = await notify(switchboard, user="bob")
    assert stored["id"] >= 1
    assert stored["tenant"] == "acme" and stored["user"] == "bob"
    assert (stored["title"], stored["message"], stored["type"]) == ("New lead", "Ana wrote",
                                                                   "info")
    assert stored["link"] is None and stored["data"] is None
    assert before <= stored["createdAt"] <= time.time()
    assert stored["read"] is False and stored["readAt"] is None


async def test_notification_is_delivered_only_when_a_device_is_connected(
        switchboard: Harness) -> None:
    offline = await notify(switchboard, user="bob")
    await connect(switchboard, user="carol")
    online = await notify(switchboard, user="carol")
    assert offline["deliveredAt"] is None
    assert online["deliveredAt"] is not None


async def test_other_users_and_tenants_do_not_get_it(switchboard: Harness) -> None:
    alice = await connect(switchboard, user="alice", tenant="acme")
    bob = await connect(switchboard, user="bob", tenant="acme")
    alice_elsewhere = await connect(switchboard, user="alice", tenant="globex")
    await notify(switchboard, user="alice", tenant="acme")
    await alice.expect("notification:new")
    await alice.settle(1)
    assert bob.received("notification:new") == []
    assert alice_elsewhere.received("notification:new") == []


async def test_another_plugin_creates_notifications_through_the_hook(
        switchboard: Harness) -> None:
    alice = await connect(switchboard, user="alice")
    bot = await connect(switchboard, user="bot")
    stored = await bot.request("test:notify", {"user": "alice", "notification": {
        "title": "Handover", "message": "A customer asks for you", "type": "handover"}})
    assert stored["user"] == "alice" and stored["tenant"] == "acme"
    pushed = await alice.expect("notification:new")
    assert pushed["id"] == stored["id"]
    assert (pushed["title"], pushed["type"]) == ("Handover", "handover")
    listed = await alice.request("notification:list")
    assert ids(listed["items"]) == [stored["id"]]


async def test_the_hook_refuses_an_invalid_notification_naming_the_field(
        switchboard: Harness) -> None:
    bot = await connect(switchboard, user="bot")
    with pytest.raises(ErrorReply) as refused:
        await bot.request("test:notify", {"user": "alice", "notification": {"title": "x"}})
    assert refused.value.code == "invalid_payload" and refused.value.field == "message"


# -- missed notifications ---------------------------------------------------------


async def test_offline_user_gets_missed_notifications_on_connect_oldest_first(
        switchboard: Harness) -> None:
    first = await notify(switchboard, title="one")
    second = await notify(switchboard, title="two")
    alice = await switchboard.connect(user="alice", tenant="acme")
    replayed = [await alice.expect("notification:new") for _ in range(2)]
    assert [n["id"] for n in replayed] == [first["id"], second["id"]]
    assert [n["title"] for n in replayed] == ["one", "two"]
    assert await alice.expect("notification:unread_count") == {"count": 2}


async def test_missed_notifications_are_replayed_only_once(switchboard: Harness) -> None:
    await notify(switchboard)
    first = await switchboard.connect(user="alice", tenant="acme")
    await first.expect("notification:new")
    await first.close()
    again = await switchboard.connect(user="alice", tenant="acme")
    assert await again.expect("notification:unread_count") == {"count": 1}
    await again.settle(1)
    assert again.received("notification:new") == []


async def test_notifications_pushed_live_are_not_replayed(switchboard: Harness) -> None:
    phone = await connect(switchboard)
    await notify(switchboard)
    await phone.expect("notification:new")
    laptop = await switchboard.connect(user="alice", tenant="acme")
    assert await laptop.expect("notification:unread_count") == {"count": 1}
    await laptop.settle(1)
    assert laptop.received("notification:new") == []


@pytest.mark.parametrize("extra_config", [{"plugins": {"notifications": {"replay_limit": 2}}}])
async def test_replay_sends_the_newest_missed_up_to_the_limit(switchboard: Harness) -> None:
    created = [await notify(switchboard, title=f"n{i}") for i in range(4)]
    alice = await switchboard.connect(user="alice", tenant="acme")
    assert await alice.expect("notification:unread_count") == {"count": 4}
    assert ids(alice.received("notification:new")) == ids(created[2:])
    listed = await alice.request("notification:list")
    assert ids(listed["items"]) == ids(created[::-1])


async def test_a_new_device_learns_the_unread_count(switchboard: Harness) -> None:
    for _ in range(3):
        await notify(switchboard)
    await notify(switchboard, user="bob")
    alice = await switchboard.connect(user="alice", tenant="acme")
    assert await alice.expect("notification:unread_count") == {"count": 3}


async def test_devices_connecting_at_once_each_get_their_own_missed_and_count(
        switchboard: Harness) -> None:
    """Devices that connect in the same moment are answered from one read:
    each still gets only its own user's missed notifications and count, in
    its own tenant."""
    mine = [await notify(switchboard, title=f"alice {i}") for i in range(2)]
    bobs = await notify(switchboard, user="bob", title="bob")
    other_tenant = await notify(switchboard, tenant="globex", title="globex alice")
    await notify(switchboard, user="bob", tenant="globex", title="globex bob")
    owners = [("alice", "acme"), ("alice", "acme"), ("bob", "acme"), ("carol", "acme"),
              ("alice", "globex")]
    clients: dict[int, TestClient] = {}

    async def open_one(i: int, user: str, tenant: str) -> None:
        clients[i] = await switchboard.connect(user=user, tenant=tenant)

    async with trio.open_nursery() as nursery:
        for i, (user, tenant) in enumerate(owners):
            nursery.start_soon(open_one, i, user, tenant)
    expected = [(mine, 2), (mine, 2), ([bobs], 1), ([], 0), ([other_tenant], 1)]
    for i, (replayed, count) in enumerate(expected):
        client = clients[i]
        assert await client.expect("notification:unread_count") == {"count": count}, owners[i]
        got = ids(client.received("notification:new"))
        # (alice's second device may find them delivered to the first already)
        assert got == ids(replayed) or (i == 1 and got == []), owners[i]
    assert ids(mine) in (ids(clients[0].received("notification:new")),
                         ids(clients[1].received("notification:new")))


# -- reading -------------------------------------------------------------------


async def test_reading_one_acks_the_unread_count_and_other_devices_see_it(
        switchboard: Harness) -> None:
    first = await notify(switchboard)
    await notify(switchboard)
    phone = await connect(switchboard)
    laptop = await connect(switchboard)
    ack = await phone.request("notification:read", {"id": first["id"]})
    assert ack == {"id": first["id"], "unreadCount": 1}
    assert await laptop.expect("notification:read") == {"ids": [first["id"]], "unreadCount": 1}
    await phone.settle(1)
    assert phone.received("notification:read") == []


async def test_read_notification_is_listed_as_read(switchboard: Harness) -> None:
    stored = await notify(switchboard)
    alice = await connect(switchboard)
    await alice.request("notification:read", {"id": stored["id"]})
    listed = await alice.request("notification:list")
    assert [item["read"] for item in listed["items"]] == [True]


async def test_reading_an_already_read_notification_announces_nothing(
        switchboard: Harness) -> None:
    stored = await notify(switchboard)
    phone = await connect(switchboard)
    laptop = await connect(switchboard)
    await phone.request("notification:read", {"id": stored["id"]})
    await laptop.expect("notification:read")
    assert await phone.request("notification:read", {"id": stored["id"]}) == {
        "id": stored["id"], "unreadCount": 0}
    await laptop.settle(1)
    assert laptop.received("notification:read") == []


async def test_read_all_marks_every_unread_one(switchboard: Harness) -> None:
    created = [await notify(switchboard) for _ in range(3)]
    phone = await connect(switchboard)
    laptop = await connect(switchboard)
    await phone.request("notification:read", {"id": created[0]["id"]})
    await laptop.expect("notification:read")
    assert await phone.request("notification:read_all") == {"count": 2, "unreadCount": 0}
    assert await laptop.expect("notification:read") == {"ids": ids(created[1:]),
                                                        "unreadCount": 0}
    unread = await phone.request("notification:list", {"unreadOnly": True})
    assert unread == {"items": [], "nextBefore": None}


async def test_another_users_notification_is_not_found(switchboard: Harness) -> None:
    bobs = await notify(switchboard, user="bob")
    alice = await connect(switchboard)
    with pytest.raises(ErrorReply) as refused:
        await alice.request("notification:read", {"id": bobs["id"]})
    assert refused.value.code == "not_found"
    bob = await connect(switchboard, user="bob")
    assert (await bob.request("notification:list"))["items"][0]["read"] is False


async def test_another_tenants_notification_is_not_found(switchboard: Harness) -> None:
    foreign = await notify(switchboard, user="alice", tenant="globex")
    alice = await connect(switchboard, user="alice", tenant="acme")
    with pytest.raises(ErrorReply) as refused:
        await alice.request("notification:read", {"id": foreign["id"]})
    assert refused.value.code == "not_found"
    assert (await alice.request("notification:list"))["items"] == []


async def test_unknown_id_is_not_found(switchboard: Harness) -> None:
    alice = await connect(switchboard)
    with pytest.raises(ErrorReply) as refused:
        await alice.request("notification:read", {"id": 999_999})
    assert refused.value.code == "not_found"


async def test_read_all_does_not_touch_other_users(switchboard: Harness) -> None:
    await notify(switchboard, user="alice")
    await notify(switchboard, user="bob")
    alice = await connect(switchboard, user="alice")
    assert await alice.request("notification:read_all") == {"count": 1, "unreadCount": 0}
    bob = await switchboard.connect(user="bob", tenant="acme")
    assert await bob.expect("notification:unread_count") == {"count": 1}


# -- listing -------------------------------------------------------------------


async def test_list_pages_newest_first_by_id(switchboard: Harness) -> None:
    created = ids([await notify(switchboard) for _ in range(5)])
    alice = await connect(switchboard)
    pages = []
    before = None
    while True:
        page = await alice.request("notification:list", {"limit": 2, "before": before}
                                   if before else {"limit": 2})
        pages.append(ids(page["items"]))
        before = page["nextBefore"]
        if before is None:
            break
    assert pages == [created[4:2:-1], created[2:0:-1], created[:1]]


async def test_list_defaults_to_twenty(switchboard: Harness) -> None:
    created = ids([await notify(switchboard) for _ in range(21)])
    alice = await connect(switchboard)
    page = await alice.request("notification:list")
    assert ids(page["items"]) == created[:0:-1]
    assert page["nextBefore"] == created[1]


async def test_list_of_unread_only_leaves_out_read_ones(switchboard: Harness) -> None:
    first = await notify(switchboard)
    second = await notify(switchboard)
    alice = await connect(switchboard)
    await alice.request("notification:read", {"id": second["id"]})
    unread = await alice.request("notification:list", {"unreadOnly": True})
    assert ids(unread["items"]) == [first["id"]]


@pytest.mark.parametrize(("payload", "field"), [
    ({"limit": 101}, "limit"),
    ({"limit": 0}, "limit"),
    ({"limit": "5"}, "limit"),
    ({"before": -1}, "before"),
    ({"unreadOnly": "yes"}, "unreadOnly"),
    ({"page": 2}, "page"),
])
async def test_invalid_list_request_names_the_field(switchboard: Harness,
                                                    payload: dict[str, Any], field: str) -> None:
    alice = await connect(switchboard)
    with pytest.raises(ErrorReply) as refused:
        await alice.request("notification:list", payload)
    assert refused.value.code == "invalid_payload" and refused.value.field == field


# -- HTTP API ------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"tenant": "acme", "user": "alice", "message": "m"}, "title"),
    ({"tenant": "acme", "user": "alice", "title": "t"}, "message"),
    ({"user": "alice", "title": "t", "message": "m"}, "tenant"),
    ({"tenant": "acme", "user": "alice", "title": 5, "message": "m"}, "title"),
    ({"tenant": "acme", "user": "alice", "title": "t", "message": "m", "data": [1]}, "data"),
    ({"tenant": "acme", "user": "alice", "title": "t", "message": "m", "link": 3}, "link"),
    ({"tenant": "acme", "user": "alice", "title": "t", "message": "m", "urgent": True},
     "urgent"),
    ({"tenant": "acme", "user": "", "title": "t", "message": "m"}, "user"),
    ({"tenant": "acme", "user": "alice", "title": "t" * 201, "message": "m"}, "title"),
    # values PostgreSQL cannot keep
    ({"tenant": "acme", "user": "al\x00ice", "title": "t", "message": "m"}, "user"),
    ({"tenant": "ac\nme", "user": "alice", "title": "t", "message": "m"}, "tenant"),
    ({"tenant": "acme", "user": "alice", "title": "t\x00", "message": "m"}, "title"),
    ({"tenant": "acme", "user": "alice", "title": "t", "message": "m\x00"}, "message"),
    ({"tenant": "acme", "user": "alice", "title": "t", "message": "m", "link": "\x00"}, "link"),
])
async def test_invalid_creation_is_400_naming_the_field(switchboard: Harness,
                                                        body: dict[str, Any], field: str) -> None:
    response = await switchboard.http().post("/api/v1/notifications",
                                             headers=switchboard.api_headers(), json=body)
    assert response.status_code == 400
    error = await response.get_json()
    assert error["code"] == "invalid_payload" and error["field"] == field


async def test_creation_requires_an_api_key(switchboard: Harness) -> None:
    response = await switchboard.http().post("/api/v1/notifications", json={
        "tenant": "acme", "user": "alice", "title": "t", "message": "m"})
    assert response.status_code == 401


async def test_tenant_scoped_key_notifies_only_its_tenant(switchboard: Harness) -> None:
    http = switchboard.http()
    headers = switchboard.api_headers(ACME_KEY)
    body = {"user": "alice", "title": "t", "message": "m"}
    own = await http.post("/api/v1/notifications", headers=headers,
                          json={"tenant": "acme", **body})
    foreign = await http.post("/api/v1/notifications", headers=headers,
                              json={"tenant": "globex", **body})
    assert own.status_code == 201
    assert foreign.status_code == 403
    listed = await http.get("/api/v1/notifications/globex/alice",
                            headers=switchboard.api_headers())
    assert (await listed.get_json())["items"] == []


async def test_http_list_pages_and_filters(switchboard: Harness) -> None:
    created = ids([await notify(switchboard) for _ in range(3)])
    alice = await connect(switchboard)
    await alice.request("notification:read", {"id": created[2]})
    http = switchboard.http()
    headers = switchboard.api_headers()
    page = await (await http.get("/api/v1/notifications/acme/alice?limit=1",
                                 headers=headers)).get_json()
    assert ids(page["items"]) == [created[2]] and page["nextBefore"] == created[2]
    assert page["items"][0]["readAt"] is not None
    unread = await (await http.get(
        f"/api/v1/notifications/acme/alice?unread=true&before={created[2]}",
        headers=headers)).get_json()
    assert ids(unread["items"]) == [created[1], created[0]] and unread["nextBefore"] is None


async def test_http_list_with_a_tenant_scoped_key_of_another_tenant_is_403(
        switchboard: Harness) -> None:
    response = await switchboard.http().get("/api/v1/notifications/globex/alice",
                                            headers=switchboard.api_headers(ACME_KEY))
    assert response.status_code == 403


async def test_http_list_with_a_bad_query_names_the_parameter(switchboard: Harness) -> None:
    response = await switchboard.http().get("/api/v1/notifications/acme/alice?limit=lots",
                                            headers=switchboard.api_headers())
    assert response.status_code == 400
    assert (await response.get_json())["field"] == "limit"


async def test_concurrent_creations_each_reach_every_device_once(switchboard: Harness) -> None:
    devices = [await connect(switchboard) for _ in range(3)]
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(notify, switchboard)
    await devices[0].settle(1)
    received = [sorted(ids(device.received("notification:new"))) for device in devices]
    assert len(set(received[0])) == 5
    assert received == [received[0]] * len(devices)



async def test_reading_an_id_past_the_largest_is_invalid_payload(switchboard: Harness) -> None:
    alice = await switchboard.connect(user="alice", tenant="acme")
    with pytest.raises(ErrorReply) as info:
        await alice.request("notification:read", {"id": 2**63})
    assert (info.value.code, info.value.field) == ("invalid_payload", "id")


@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/notifications/acme/al%00ice", "user"),
    ("/api/v1/notifications/acme/alice?before=9223372036854775808", "before"),
])
async def test_http_list_of_values_the_store_cannot_keep_is_400(switchboard: Harness,
                                                                path: str, field: str) -> None:
    response = await switchboard.http().get(path, headers=switchboard.api_headers())
    assert response.status_code == 400
    assert (await response.get_json())["field"] == field


# -- the service and the hook, for other plugins -------------------------------------------


def notifier(switchboard: Harness) -> NotifierPlugin:
    found: NotifierPlugin = switchboard.server.plugins.pm.get_plugin("notifier")
    return found


async def test_another_plugin_creates_notifications_through_the_service(
        switchboard: Harness) -> None:
    phone = await connect(switchboard, user="alice")
    service = switchboard.app.service("notifications")
    created = await service.create("acme", "alice", title="Handover",
                                   message="A customer asks for you", type="handover",
                                   data={"conversationId": "c1"})
    assert (created.tenant_id, created.user_id, created.type) == ("acme", "alice", "handover")
    assert created.delivered_at is not None and created.read_at is None
    pushed = await phone.expect("notification:new")
    assert (pushed["id"], pushed["data"]) == (created.id, {"conversationId": "c1"})
    assert await service.unread_count("acme", "alice") == 1
    await phone.request("notification:read", {"id": created.id})
    assert await service.unread_count("acme", "alice") == 0
    assert await service.unread_count("acme", "nobody") == 0


@pytest.mark.parametrize(("arguments", "field"), [
    ({"tenant_id": ""}, "tenant_id"),
    ({"user_id": "a\x00b"}, "user_id"),
    ({"title": 5}, "title"),
    ({"title": "t" * 201}, "title"),
    ({"message": None}, "message"),
    ({"type": "t" * 51}, "type"),
    ({"data": ["not", "an", "object"]}, "data"),
])
async def test_the_service_refuses_bad_arguments_naming_them(
        switchboard: Harness, arguments: dict[str, Any], field: str) -> None:
    call: dict[str, Any] = {"tenant_id": "acme", "user_id": "alice", "title": "Hi",
                            "message": "there", **arguments}
    with pytest.raises(ClientError) as refused:
        await switchboard.app.service("notifications").create(
            call.pop("tenant_id"), call.pop("user_id"), **call)
    assert (refused.value.code, refused.value.field) == ("invalid_payload", field)
    listed = await switchboard.http().get("/api/v1/notifications/acme/alice",
                                          headers=switchboard.api_headers())
    assert (await listed.get_json())["items"] == []


async def test_every_created_notification_is_reported_whoever_created_it(
        switchboard: Harness) -> None:
    bot = await connect(switchboard, user="bot")
    over_http = await notify(switchboard, user="alice")
    through_hook = await bot.request("test:notify", {"user": "bob", "notification": {
        "title": "Handover", "message": "A customer asks for you"}})
    through_service = await switchboard.app.service("notifications").create(
        "acme", "carol", title="Lead", message="New lead")
    await bot.settle(1)
    assert [(n.id, n.user_id, n.title) for n in notifier(switchboard).created] == [
        (over_http["id"], "alice", "New lead"), (through_hook["id"], "bob", "Handover"),
        (through_service.id, "carol", "Lead")]
