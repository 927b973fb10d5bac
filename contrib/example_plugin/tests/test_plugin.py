"""The help-request plugin, run in an in-process server by Switchboard's test harness."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
import trio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from switchboard.core import Config, ConfigError
from switchboard.core.migrations import History, upgrade_history
from switchboard.core.server import Server
from switchboard.testing import ErrorReply, Harness, make_config
from switchboard_example.plugin import MAX_REASON, HelpRequestPlugin

TENANT_KEY = "acme-only-key-0123456789"


@pytest.fixture
def switchboard_plugins() -> dict[str, object]:
    """Run the plugin without installing it, under the name of its entry point."""
    return {"help_demo": HelpRequestPlugin}


@pytest.fixture
def switchboard_config(request: pytest.FixtureRequest) -> Config:
    """The default test config, or the overrides given by indirect parametrization."""
    return make_config(getattr(request, "param", None))


async def open_requests(switchboard: Harness, tenant: str = "acme") -> dict[str, Any]:
    response = await switchboard.http().get(f"/api/v1/help/{tenant}",
                                            headers=switchboard.api_headers())
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


# -- the event ------------------------------------------------------------------


async def test_help_request_reaches_the_agents_of_the_tenant(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="acme", role="agent")
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    ack = await customer.request("help:request", {"reason": "my card was declined"})
    assert await agent.expect("help:requested") == {
        "id": ack["id"], "userId": "carl", "reason": "my card was declined", "at": ack["at"]}


async def test_help_request_is_not_sent_to_customers(switchboard: Harness) -> None:
    await switchboard.connect(user="ann", tenant="acme", role="agent")
    bystander = await switchboard.connect(user="bea", tenant="acme", role="customer")
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    await customer.request("help:request", {"reason": "my card was declined"})
    await bystander.settle(1)
    assert bystander.received("help:requested") == []
    assert customer.received("help:requested") == []


async def test_help_request_stays_in_its_tenant(switchboard: Harness) -> None:
    other_agent = await switchboard.connect(user="ann", tenant="globex", role="agent")
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    await customer.request("help:request", {"reason": "my card was declined"})
    await other_agent.settle(1)
    assert other_agent.received("help:requested") == []
    assert (await open_requests(switchboard, "globex"))["open"] == []


@pytest.mark.parametrize("payload", [
    {}, {"reason": 42}, {"reason": "   "}, {"reason": "x" * (MAX_REASON + 1)},
], ids=["missing", "not_a_string", "blank", "too_long"])
async def test_invalid_reason_is_refused_naming_the_field(switchboard: Harness,
                                                          payload: dict[str, Any]) -> None:
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    with pytest.raises(ErrorReply) as refused:
        await customer.request("help:request", payload)
    assert refused.value.code == "invalid_payload"
    assert refused.value.field == "reason"


async def test_help_requests_are_rate_limited(switchboard: Harness) -> None:
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    for _ in range(3):
        await customer.request("help:request", {"reason": "anyone there?"})
    with pytest.raises(ErrorReply) as refused:
        await customer.request("help:request", {"reason": "anyone there?"})
    assert refused.value.code == "rate_limited"
    assert (await open_requests(switchboard))["received"] == 3


# -- the HTTP route ---------------------------------------------------------------


async def test_http_route_lists_open_requests_and_the_count(switchboard: Harness) -> None:
    carl = await switchboard.connect(user="carl", tenant="acme", role="customer")
    dora = await switchboard.connect(user="dora", tenant="acme", role="customer")
    await carl.request("help:request", {"reason": "card declined"})
    await dora.request("help:request", {"reason": "wrong invoice"})
    body = await open_requests(switchboard)
    assert body["received"] == 2
    assert [(r["userId"], r["reason"]) for r in body["open"]] == [
        ("carl", "card declined"), ("dora", "wrong invoice")]


async def test_http_route_needs_an_api_key(switchboard: Harness) -> None:
    response = await switchboard.http().get("/api/v1/help/acme")
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "unauthorized"


async def test_http_route_refuses_a_wrong_api_key(switchboard: Harness) -> None:
    response = await switchboard.http().get(
        "/api/v1/help/acme", headers=switchboard.api_headers("not-a-key-0123456789"))
    assert response.status_code == 401


@pytest.mark.parametrize("switchboard_config",
                         [{"api_keys": [{"key": TENANT_KEY, "tenant": "acme"}]}],
                         indirect=True, ids=["acme_key"])
async def test_http_route_refuses_a_key_of_another_tenant(switchboard: Harness) -> None:
    http = switchboard.http()
    own = await http.get("/api/v1/help/acme", headers={"X-API-Key": TENANT_KEY})
    other = await http.get("/api/v1/help/globex", headers={"X-API-Key": TENANT_KEY})
    assert own.status_code == 200
    assert other.status_code == 403


# -- expiry on the (mock) clock -------------------------------------------------


async def test_request_expires_after_the_default_age(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="acme", role="agent")
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    asked_at = trio.current_time()
    ack = await customer.request("help:request", {"reason": "card declined"})
    await trio.sleep_until(asked_at + 599)
    assert agent.received("help:expired") == []
    await trio.sleep_until(asked_at + 601)
    assert await agent.expect("help:expired") == {"id": ack["id"], "userId": "carl"}
    assert (await open_requests(switchboard))["open"] == []


async def test_customer_in_their_help_room_is_told_of_the_expiry(switchboard: Harness) -> None:
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    await customer.request("room:join", {"room": "help:carl"})
    ack = await customer.request("help:request", {"reason": "card declined"})
    await trio.sleep(601)
    assert customer.received("help:expired") == [{"id": ack["id"], "userId": "carl"}]


async def test_only_old_requests_expire(switchboard: Harness) -> None:
    carl = await switchboard.connect(user="carl", tenant="acme", role="customer")
    dora = await switchboard.connect(user="dora", tenant="acme", role="customer")
    await carl.request("help:request", {"reason": "card declined"})
    await trio.sleep(300)
    await dora.request("help:request", {"reason": "wrong invoice"})
    await trio.sleep(301)
    assert [r["userId"] for r in (await open_requests(switchboard))["open"]] == ["dora"]


@pytest.mark.parametrize("switchboard_config",
                         [{"plugins": {"help_demo": {"expire_after": 30}}}],
                         indirect=True, ids=["expire_after_30"])
async def test_expire_after_setting_from_config(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="acme", role="agent")
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    asked_at = trio.current_time()
    await customer.request("help:request", {"reason": "card declined"})
    await trio.sleep_until(asked_at + 29)
    assert agent.received("help:expired") == []
    await trio.sleep_until(asked_at + 31)
    assert len(agent.received("help:expired")) == 1


@pytest.mark.parametrize(("section", "key"), [
    ({"expire_afterr": 30}, "plugins.help_demo.expire_afterr"),
    ({"expire_after": "soon"}, "plugins.help_demo.expire_after"),
], ids=["unknown_key", "wrong_type"])
def test_bad_setting_is_a_config_error_naming_the_key(section: dict[str, Any], key: str) -> None:
    config = make_config({"plugins": {"help_demo": section}})
    with pytest.raises(ConfigError) as refused:
        Server(config, plugins={"help_demo": HelpRequestPlugin})
    assert refused.value.key == key


# -- joining help rooms ---------------------------------------------------------------


async def test_customer_may_join_their_own_help_room(switchboard: Harness) -> None:
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    assert await customer.request("room:join", {"room": "help:carl"}) == {"room": "help:carl"}


async def test_customer_may_not_join_another_customers_help_room(switchboard: Harness) -> None:
    customer = await switchboard.connect(user="carl", tenant="acme", role="customer")
    with pytest.raises(ErrorReply) as refused:
        await customer.request("room:join", {"room": "help:dora"})
    assert refused.value.code == "forbidden"


async def test_agent_may_join_a_customers_help_room(switchboard: Harness) -> None:
    agent = await switchboard.connect(user="ann", tenant="acme", role="agent")
    assert await agent.request("room:join", {"room": "help:carl"}) == {"room": "help:carl"}


# -- the schema ------------------------------------------------------------------


def test_the_migrations_make_the_declared_table() -> None:
    """The revisions in migrations/ and switchboard_tables agree: a change of the
    table without its revision (or the other way round) fails here."""
    plugin = HelpRequestPlugin()
    declared = sa.MetaData()
    plugin.switchboard_tables(declared)
    history = History("help_demo", plugin.switchboard_migrations())
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        upgrade_history(conn, history)
        context = MigrationContext.configure(conn, opts={
            "include_object": lambda obj, name, kind, *_: name != history.version_table})
        assert compare_metadata(context, declared) == []
    engine.dispose()
