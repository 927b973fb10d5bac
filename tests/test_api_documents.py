"""The API documents: OpenAPI of every HTTP route, AsyncAPI of every socket event.

The OpenAPI document is checked against the live server by schemathesis
(every documented route, valid and invalid requests: never a 5xx, invalid
ones always a 4xx); the AsyncAPI document against the AsyncAPI 3.0 JSON
Schema of ``@asyncapi/specs`` (npm).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import hypothesis
import jsonschema
import pytest
import requests
import schemathesis
import trio
from databases import database_url
from openapi_spec_validator import validate as validate_openapi
from quart import Blueprint
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection
from socketio_fixtures import SOCKETIO_DIR, node_modules_fixture  # noqa: F401  (a fixture)
from switchboard.core import (
    ClientError,
    documented,
    hookimpl,
    identifier,
    incoming,
    object_schema,
    outgoing,
    read_json,
    require_api_key,
    structure_body,
    structure_payload,
)
from switchboard.core.apidocs import SchemaRegistry
from switchboard.core.cli import main
from switchboard.core.config import Config, merge
from switchboard.testing import TEST_API_KEY, Harness, make_config

FIRST_PARTY = ("chat", "compat", "desk", "guests", "handover", "jwt", "notifications",
               "pipeline", "presence", "proxy", "rooms", "typing", "webhooks", "whatsapp")


# -- a third-party plugin, to see its routes and events come through the hooks ----------


@attrs.frozen
class Greeting:
    """Body of the greeting route."""

    to: str = attrs.field(validator=identifier)
    times: int = 1


class GreeterPlugin:
    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("greeter", __name__)

        @bp.post("/api/v1/greetings")
        @documented("Greet someone", body=Greeting, responses={201: "greeted"})
        @require_api_key
        async def greet() -> Any:
            body = structure_body(await read_json(), Greeting)
            return {"greeted": body.to}, 201

        @bp.get("/api/v1/greetings")
        async def undeclared() -> Any:
            return {"greetings": []}

        @bp.post("/api/v1/greetings/flaky")
        @documented("Greet, and fail on the server unless once", body=Greeting)
        async def flaky() -> Any:
            body = structure_body(await read_json(), Greeting)
            if body.times != 1:
                raise RuntimeError("a bug")
            return {"greeted": body.to}

        return bp

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        async def wave(session: Any, payload: Greeting) -> dict[str, Any]:
            return {"waved": payload.to}

        return [
            incoming("greeter:wave", Greeting, wave, ack=object_schema(waved=str)),
            outgoing("greeter:waved", rooms=["tenant:{tenantId}"],
                     schema=object_schema("from", to=str)),
        ]


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"greeter": GreeterPlugin()}


#: Where a fuzzed WhatsApp bridge or the Graph API would be called: a closed
#: port of this machine (nothing the fuzzer sends leaves it).
NOWHERE = "http://127.0.0.1:9"


#: The fuzzer's API key: for one tenant, so that a request without one acts on it.
TENANT_KEY = "acme-only-key-0123456789"


@pytest.fixture
def store_kind() -> str:
    """The database of the server: the test config's in-memory SQLite, unless a
    test asks for ``sqlite`` (a file) or ``postgresql`` (the real server)."""
    return "memory"


@pytest.fixture
def switchboard_config(store_kind: str, tmp_path: Path) -> Iterator[Config]:
    overrides: dict[str, Any] = {
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"},
                     {"key": TENANT_KEY, "tenant": "acme", "name": "acme"}],
        "plugins": {"whatsapp": {"graph_url": NOWHERE, "timeout": 1.0}}}
    if store_kind == "memory":
        yield make_config(overrides)
        return
    with database_url(store_kind, tmp_path, tables=True) as url:
        yield make_config(merge(overrides, {"store": {"url": url}}))


async def get_document(switchboard: Harness, name: str) -> dict[str, Any]:
    response = await switchboard.http().get(f"/api/{name}.json")
    assert response.status_code == 200
    document: dict[str, Any] = await response.get_json()
    return document


# -- OpenAPI ---------------------------------------------------------------------------


async def test_every_route_of_the_app_is_in_the_openapi_document(switchboard: Harness) -> None:
    document = await get_document(switchboard, "openapi")
    validate_openapi(document)
    routes = set()
    for rule in switchboard.server.http_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule
        for converter in ("int:",):
            path = path.replace(f"<{converter}", "<")
        path = path.replace("<", "{").replace(">", "}")
        routes |= {(method.lower(), path) for method in rule.methods or ()
                   if method not in ("HEAD", "OPTIONS")}
    documented_routes = {(method, path) for path, methods in document["paths"].items()
                         for method in methods}
    assert routes - documented_routes == set()
    assert documented_routes - routes == set()
    # every first-party route says what it takes and answers
    undeclared = sorted((m, p) for p, methods in document["paths"].items()
                        for m, op in methods.items() if op.get("x-undeclared"))
    assert undeclared == [("get", "/api/v1/greetings")]
    tags = {tag for methods in document["paths"].values() for op in methods.values()
            for tag in op["tags"]}
    assert {"core", "engineio", "chat", "desk", "guests", "handover", "notifications",
            "pipeline", "presence", "webhooks", "whatsapp", "greeter"} <= tags


async def test_request_bodies_are_the_attrs_classes_that_check_them(
        switchboard: Harness) -> None:
    document = await get_document(switchboard, "openapi")
    schemas = document["components"]["schemas"]
    create = document["paths"]["/api/v1/conversations"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateConversation"}
    conversation = schemas["CreateConversation"]
    assert conversation["additionalProperties"] is False
    assert "participants" in conversation["properties"]
    # a plugin's own class, through the blueprint hook, with its validators
    greeting = schemas["Greeting"]
    assert greeting["required"] == ["to"]
    assert greeting["properties"]["to"]["maxLength"] == 200
    assert greeting["properties"]["times"] == {"type": "integer", "default": 1}
    greet = document["paths"]["/api/v1/greetings"]["post"]
    assert greet["security"] == [{"apiKey": []}, {"bearer": []}]
    assert set(greet["responses"]) == {"201", "400", "401", "default"}
    # the emit route takes one event or a list of them
    emit = document["paths"]["/api/v1/emit"]["post"]["requestBody"]["content"]
    assert emit["application/json"]["schema"]["anyOf"][1]["type"] == "array"
    # what the document says is what the route does: a body it refuses
    response = await switchboard.http().post(
        "/api/v1/greetings", json={"to": "", "extra": 1}, headers=switchboard.api_headers())
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "invalid_payload"
    # path parameters by their converter; the webhook says how it is authenticated
    delivery = document["paths"]["/api/v1/whatsapp/messages/{message_id}"]["get"]
    assert delivery["parameters"][0]["schema"] == {"type": "integer", "minimum": 0}
    webhook = document["paths"]["/api/v1/whatsapp/webhooks/{tenant}/{session}"]["post"]
    assert "security" not in webhook
    assert "X-Hub-Signature-256" in webhook["description"]


@attrs.frozen
class Sample:
    kind: Literal["a", "b"]
    count: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    ratio: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.lt(1.0)))
    colour: str = attrs.field(default="red", validator=attrs.validators.in_(["red", "blue"]))
    tags: list[str] = attrs.Factory(list)
    inner: Greeting | None = None


@pytest.mark.parametrize(("data", "valid"), [
    ({"kind": "a"}, True),
    ({"kind": "b", "count": 3, "ratio": 0.5, "colour": "blue", "tags": ["x"],
      "inner": {"to": "bob"}}, True),
    ({}, False),
    ({"kind": "c"}, False),
    ({"kind": "a", "count": -1}, False),
    ({"kind": "a", "ratio": 1.0}, False),
    ({"kind": "a", "colour": "green"}, False),
    ({"kind": "a", "tags": [1]}, False),
    ({"kind": "a", "inner": {"to": ""}}, False),
    ({"kind": "a", "inner": {"to": "bob", "extra": 1}}, False),
    ({"kind": "a", "extra": 1}, False),
])
def test_a_classes_schema_accepts_what_the_class_accepts(data: dict[str, Any],
                                                         valid: bool) -> None:
    registry = SchemaRegistry("#/$defs/")
    schema = {**registry.of(Sample), "$defs": registry.schemas}
    accepted = jsonschema.Draft202012Validator(schema).is_valid(data)
    try:
        structure_payload(data, Sample)
        structured = True
    except ClientError:
        structured = False
    assert (accepted, structured) == (valid, valid)


async def test_the_docs_page_lists_routes_and_events(switchboard: Harness) -> None:
    response = await switchboard.http().get("/api/docs")
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    page = (await response.get_data()).decode()
    assert "<code>/api/v1/conversations/{conv_id}/messages</code>" in page
    assert "<code>message:send</code>" in page
    assert "<script" not in page  # nothing to fetch


# -- schemathesis against the live server ------------------------------------------------


#: Examples per operation and mode, kept small for the suite's time (making a
#: request costs schemathesis some 70 ms): 3 in the everyday suite, 66 with
#: ``HYPOTHESIS_PROFILE=thorough``.
EXAMPLES = max(3, hypothesis.settings().max_examples // 30)
def _contained(case: Any) -> None:
    """Point a bridge the fuzzer made up at :data:`NOWHERE`."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("bridge"), dict):
        body["bridge"]["url"] = NOWHERE


def fuzz(document: dict[str, Any], base_url: str) -> tuple[int, list[str]]:
    """Run schemathesis over every operation of ``document`` (valid and invalid
    requests); the requests made and the failures found."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    calls = 0
    with requests.Session() as session:
        session.headers["X-API-Key"] = TENANT_KEY
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                calls += _fuzz_operation(operation, mode, base_url, session, failures)
    return calls, failures


def _fuzz_operation(operation: Any, mode: GenerationMode, base_url: str,
                    session: requests.Session, failures: list[str]) -> int:
    calls = 0

    @hypothesis.settings(max_examples=EXAMPLES, derandomize=True, database=None,
                         deadline=None, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        _contained(case)
        calls += 1
        response = case.call(base_url=base_url, session=session, timeout=10)
        # (recorded, not raised to hypothesis: no shrinking, every failure listed)
        if response.status_code >= 500 and not _provider_failed(response):
            failures.append(f"{operation.label} [{mode.value}]: {response.status_code} "
                            f"{response.text[:300]}\n{case.as_curl_command()}")
        if mode is GenerationMode.NEGATIVE:
            try:
                case.validate_response(response, checks=[negative_data_rejection])
            except (Failure, FailureGroup) as exc:
                failures.append(f"{operation.label} [{mode.value}]: {exc}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # nothing to get wrong (no body, query or path parameter)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return calls


def _provider_failed(response: requests.Response) -> bool:
    """The documented answer of a WhatsApp route whose provider did not answer
    (here: :data:`NOWHERE`), a 502 that is not the server's failure."""
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code == 502 and isinstance(body, dict) \
        and body.get("code") == "provider_unavailable"


# (PostgreSQL refuses what SQLite keeps: an integer past 32 or 64 bits, a NUL)
@pytest.mark.parametrize("store_kind", ["memory", "postgresql"])
async def test_schemathesis_finds_no_server_error_and_bad_requests_get_a_4xx(
        switchboard_live: Harness) -> None:
    document = await get_document(switchboard_live, "openapi")
    del document["paths"]["/api/v1/greetings/flaky"]  # (the next test's)
    base_url = switchboard_live.http_url()
    calls, failures = await trio.to_thread.run_sync(fuzz, document, base_url)
    operations = sum(len(methods) for methods in document["paths"].values())
    assert operations >= 60
    assert calls >= operations * 2
    assert failures == []


# -- AsyncAPI --------------------------------------------------------------------------


async def test_the_asyncapi_document_is_valid_and_has_every_event(
        switchboard: Harness, node_modules: Path) -> None:
    document = await get_document(switchboard, "asyncapi")
    meta = json.loads((SOCKETIO_DIR / "node_modules" / "@asyncapi" / "specs" / "schemas"
                       / "3.0.0.json").read_text())
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in
              jsonschema.validators.validator_for(meta)(meta).iter_errors(document)]
    assert errors == []
    events = switchboard.app.plugins.events.values()
    declared = {(spec.direction, spec.name, spec.plugin) for spec in events}
    assert {plugin for _, _, plugin in declared} >= {
        "chat", "desk", "guests", "handover", "notifications", "pipeline", "presence",
        "rooms", "typing", "whatsapp", "greeter"}
    messages = document["components"]["messages"]
    listed = {(key.split(".", 1)[0], message["name"], message["x-plugin"])
              for key, message in messages.items() if not key.startswith("ack.")}
    assert listed == declared
    # every incoming event has its operation with the ack as reply
    for direction, name, _ in declared:
        if direction == "in":
            operation = document["operations"][f"receive.{name.replace(':', '.')}"]
            assert operation["reply"]["messages"]
    # every first-party event says its payload, its rooms (outgoing) and its ack (incoming)
    assert [spec.name for spec in events if spec.plugin in FIRST_PARTY
            and spec.direction == "out" and not spec.rooms] == []
    for key, message in messages.items():
        direction = key.split(".", 1)[0]
        if message.get("x-plugin") in FIRST_PARTY and direction == "out":
            assert message["payload"], key
            assert any(key in channel["messages"] for name, channel
                       in document["channels"].items() if name != "connection"), key
        if direction == "ack" and messages[f"in.{key.split('.', 1)[1]}"]["x-plugin"] \
                in FIRST_PARTY:
            assert message["payload"]["anyOf"][0], key
    assert document["operations"]["send.message.new"]["channel"] == {
        "$ref": "#/channels/room.conversation.conversationId"}
    # payloads from the attrs classes, or the declared schema
    assert messages["in.greeter.wave"]["payload"] == {"$ref": "#/components/schemas/Greeting"}
    assert messages["ack.greeter.wave"]["payload"]["anyOf"][0]["properties"] == {
        "waved": {"type": "string"}}
    assert messages["out.greeter.waved"]["payload"]["required"] == ["from", "to"]
    assert document["channels"]["room.tenant.tenantId"]["address"] == "tenant:{tenantId}"
    assert document["operations"]["send.greeter.waved"]["channel"] == {
        "$ref": "#/channels/room.tenant.tenantId"}
    # a compat profile's frontend names for a canonical event
    assert messages["in.conversation.join"]["x-profiles"]["pytake"] == {
        "frontendEvents": ["join_conversation"]}
    assert document["x-profiles"]["pytake"]["inbound"]["join_conversation"] == {
        "canonical": "conversation:join"}


# -- the command line ------------------------------------------------------------------


def test_the_command_prints_both_documents(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWITCHBOARD_CONFIG", raising=False)
    assert main(["openapi"]) == 0
    openapi = json.loads(capsys.readouterr().out)
    validate_openapi(openapi)
    assert "/api/v1/conversations/{conv_id}/messages" in openapi["paths"]
    assert main(["asyncapi"]) == 0
    asyncapi = json.loads(capsys.readouterr().out)
    assert asyncapi["asyncapi"] == "3.0.0"
    assert "receive.message.send" in asyncapi["operations"]


async def test_an_empty_tenant_is_refused_not_taken_for_the_keys(
        switchboard: Harness) -> None:
    """Found by schemathesis: ``?tenant=`` acted on the API key's own tenant."""
    http = switchboard.http()
    response = await http.get("/api/v1/agents?tenant=", headers={"X-API-Key": TENANT_KEY})
    assert response.status_code == 400
    assert (await response.get_json())["field"] == "tenant"
    response = await http.get("/api/v1/agents", headers={"X-API-Key": TENANT_KEY})
    assert response.status_code == 200


async def test_a_query_integer_is_digits(switchboard: Harness) -> None:
    """Found by schemathesis: ``?limit=5_0`` was read as 50 (Python's ``int``)."""
    http = switchboard.http()
    for limit, status in (("5_0", 400), (" 5", 400), ("+5", 400), ("5", 200), ("", 200)):
        response = await http.get(f"/api/v1/notifications/acme/ann?limit={limit}",
                                   headers={"X-API-Key": TENANT_KEY})
        assert response.status_code == status, limit


async def test_schemathesis_reports_a_server_error(switchboard_live: Harness) -> None:
    document = await get_document(switchboard_live, "openapi")
    document["paths"] = {"/api/v1/greetings/flaky":
                         document["paths"]["/api/v1/greetings/flaky"]}
    _, failures = await trio.to_thread.run_sync(fuzz, document, switchboard_live.http_url())
    assert failures
    assert all(f.startswith("POST /api/v1/greetings/flaky [positive]: 500 ")
               for f in failures)


async def test_the_admin_consoles_routes_are_declared_when_it_is_on(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    from admin_console import console_config
    harness = await Harness.start(console_config(), nursery, clock=autojump_clock)
    document = await get_document(harness, "openapi")
    validate_openapi(document)
    console = {(m, p): op for p, methods in document["paths"].items()
               for m, op in methods.items() if p.startswith("/admin")}
    assert {("post", "/admin/login"), ("post", "/admin/publish"),
            ("get", "/admin/state.json")} <= set(console)
    assert [key for key, op in console.items() if op.get("x-undeclared")] == []
    assert all(op["tags"] == ["admin console"] for op in console.values())
    await harness.stop()
