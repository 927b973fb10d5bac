"""Fuzzing the front door through the real listener.

Every case is sent over a real TCP connection to the server running in this
test's Trio run (``switchboard.testing.fuzz``). After each case: the server is
alive (``GET /health`` answers 200 on a new connection), a bystander WebSocket
client connected before the case still receives a broadcast published with
``POST /api/v1/emit``, nothing was logged with a traceback (nor at ERROR), no
HTTP answer was a 5xx, and every JSON text the server sent or accepted was
strict JSON (no ``NaN`` / ``Infinity``); after a case of an admin of another
tenant, nothing crossed between the two tenants. A failure names its case and
gives the bytes to reproduce it.

Hypothesis runs in a worker thread and hands each case to the Trio thread, so
the server, the bystander and the cases share one Trio run. Examples are
derandomized and no example database is kept: every run generates the same
cases. Shrinking is off (a case that kills the server would restart it for
every shrinking step); the generators keep cases small and labelled instead.
``contrib/fuzz/front_door.py`` runs the same generators for longer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis.strategies import SearchStrategy
from switchboard.testing import fuzz
from switchboard.testing.fuzz import KNOWN, Case, FrontDoor, InProcessTarget

FUZZ = settings(derandomize=True, database=None, deadline=None,
                phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck),
                print_blob=False, report_multiple_bugs=True)


@pytest.fixture
async def front_door(nursery: trio.Nursery, caplog: pytest.LogCaptureFixture,
                     ) -> AsyncIterator[FrontDoor]:
    """The real server on an ephemeral port plus a connected bystander."""
    caplog.set_level(logging.WARNING)
    door = FrontDoor(InProcessTarget(nursery, records=lambda: caplog.records), nursery)
    await door.start()
    yield door
    await door.stop()


# Hypothesis calls these in a worker thread; each case runs in the Trio thread.

@settings(FUZZ, max_examples=110)
@example(case=KNOWN["ipv6 target"])
@example(case=KNOWN["ipv6 target not an address"])
@example(case=KNOWN["bad host"])
@example(case=KNOWN["upgrade to an http path"])
@example(case=KNOWN["non-ascii connection header"])
@example(case=KNOWN["non-ascii host on upgrade"])
@example(case=KNOWN["query-only target"])
@example(case=KNOWN["h2 preface"])
@example(case=KNOWN["h2c upgrade"])
@given(case=fuzz.request_heads())
def check_request_heads(door: FrontDoor, case: Case) -> None:
    door.check(case)


@settings(FUZZ, max_examples=90)
@example(case=KNOWN["superscript length"])
@example(case=KNOWN["pipelined after http/1.0"])
@example(case=KNOWN["nan emit"])
@example(case=KNOWN["surrogate emit"])
@example(case=KNOWN["infinity emit"])
@given(case=fuzz.request_bodies())
def check_request_bodies(door: FrontDoor, case: Case) -> None:
    door.check(case)


@settings(FUZZ, max_examples=80)
@example(case=KNOWN["nan ping"])
@example(case=KNOWN["surrogate ping"])
@given(case=fuzz.websocket_frames())
def check_websocket_frames(door: FrontDoor, case: Case) -> None:
    door.check(case)


@settings(FUZZ, max_examples=50)
@given(case=fuzz.engineio_polling_cases())
def check_engineio_polling(door: FrontDoor, case: Case) -> None:
    door.check(case)


@settings(FUZZ, max_examples=60)
@example(case=KNOWN["surrogate event name"])
@given(case=fuzz.engineio_websocket_cases())
def check_engineio_websocket(door: FrontDoor, case: Case) -> None:
    door.check(case)


@settings(FUZZ, max_examples=80)
@example(case=KNOWN["unhashable agent status"])
@given(case=fuzz.plugin_event_cases())
def check_plugin_events(door: FrontDoor, case: Case) -> None:
    door.check(case)


@settings(FUZZ, max_examples=60)
@given(case=fuzz.intruder_cases())
def check_the_tenant_fence(door: FrontDoor, case: Case) -> None:
    door.check(case)


async def test_request_heads(front_door: FrontDoor) -> None:
    await trio.to_thread.run_sync(check_request_heads, front_door)


async def test_request_bodies_and_their_framing(front_door: FrontDoor) -> None:
    await trio.to_thread.run_sync(check_request_bodies, front_door)


async def test_websocket_frames_after_the_handshake(front_door: FrontDoor) -> None:
    await trio.to_thread.run_sync(check_websocket_frames, front_door)


async def test_engineio_packets_over_polling(front_door: FrontDoor) -> None:
    await trio.to_thread.run_sync(check_engineio_polling, front_door)


async def test_engineio_packets_over_the_websocket(front_door: FrontDoor) -> None:
    await trio.to_thread.run_sync(check_engineio_websocket, front_door)


async def test_the_plugins_events_canonical_and_through_the_profiles(
        front_door: FrontDoor) -> None:
    await trio.to_thread.run_sync(check_plugin_events, front_door)


async def test_an_admin_of_another_tenant_reaches_nothing_of_the_fuzz_tenant(
        front_door: FrontDoor) -> None:
    await trio.to_thread.run_sync(check_the_tenant_fence, front_door)


@pytest.mark.parametrize("profile", sorted(set(fuzz.PROFILED.values())))
async def test_the_plugins_events_through_a_profile_bound_to_the_plain_websocket(
        profile: str, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    door = FrontDoor(InProcessTarget(nursery, config=lambda: fuzz.fuzz_config(profile),
                                     records=lambda: caplog.records), nursery)
    await door.start()

    @settings(FUZZ, max_examples=30)
    @given(case=fuzz.plugin_event_cases(profile, plain_only=True))
    def check(case: Case) -> None:
        door.check(case)

    try:
        await trio.to_thread.run_sync(check)
    finally:
        await door.stop()


async def test_an_intruders_case_that_reaches_another_tenant_fails(
        front_door: FrontDoor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tenant fence's checks see a leak both ways, and a change to the
    fuzz tenant's data: with chat taking every conversation to be the fuzz
    tenant's, an admin of another tenant posts into the fuzz tenant's c1 and
    reads its history."""
    import attrs
    from switchboard.plugins.chat.service import Chat

    frames = b"".join(fuzz.ws_frame(text.encode(), mask=b"\0\0\0\0") for text in (
        '{"type":"message:send","data":{"conversationId":"c1","type":"text",'
        '"content":{"text":"hi"},"clientId":"k1"},"id":1}',
        '{"type":"message:history","data":{"conversationId":"c1"},"id":2}'))
    case = Case(fuzz.TENANT_FENCE, "an intruder posts to c1", (frames,), setup="ws",
                tenant=fuzz.INTRUDER)
    outcome = await front_door.run(case)
    assert outcome.failures == [], outcome.report()  # (the fence holds)

    members, enqueue, page = Chat.members, Chat.enqueue, Chat.page
    monkeypatch.setattr(Chat, "members", lambda self, _tenant, conversation: members(
        self, fuzz.TENANT, conversation))
    monkeypatch.setattr(Chat, "enqueue", lambda self, message: enqueue(
        self, attrs.evolve(message, tenant_id=fuzz.TENANT)))
    monkeypatch.setattr(Chat, "page", lambda self, _tenant, conversation, **kw: page(
        self, fuzz.TENANT, conversation, **kw))
    outcome = await front_door.run(case)
    assert sorted(f.signature for f in outcome.failures) == [
        "fence breached: an intruder changed the fuzz tenant's messages in c1",
        "fence breached: an intruder's doing reached the fuzz tenant",
        "fence breached: the fuzz tenant's data reached an intruder"], outcome.report()


async def test_an_intruders_api_key_that_reaches_another_tenant_fails(
        front_door: FrontDoor, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the API's check of a key's tenant gone, an API key of another tenant
    reads the fuzz tenant's lead: the tenant fence's checks say so."""
    from switchboard.core import http
    from switchboard.core.config import ApiKey

    case = Case(fuzz.TENANT_FENCE, "an intruder's key reads lead 1", (
        b"GET /api/v1/leads/1?tenant=fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-API-Key: @IKEY@\r\nConnection: close\r\n\r\n",), tenant=fuzz.INTRUDER,
        forbidden=True)
    outcome = await front_door.run(case)
    assert outcome.failures == [], outcome.report()
    assert outcome.answer == "403"

    def any_tenant(key: ApiKey, given: str | None) -> str:
        return given or key.tenant

    monkeypatch.setattr(http, "tenant_for_key", any_tenant)
    outcome = await front_door.run(case)
    assert sorted(f.signature for f in outcome.failures) == [
        "fence breached: an intruder's API key acted on the fuzz tenant",
        "fence breached: the fuzz tenant's data reached an intruder"], outcome.report()


async def test_a_guest_in_the_tenants_room_fails(front_door: FrontDoor,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A guest (a visitor of the fuzz tenant's widget) is in no room of the
    tenant: put in ``tenant:{id}`` as other customers are, it gets what is
    published to every session of the tenant, and the fence says so."""
    from switchboard.core.hub import Hub
    from switchboard.core.rooms import tenant_room

    frames = fuzz.ws_frame(b'{"type":"ping","id":1}', mask=b"\0\0\0\0")
    case = Case(fuzz.TENANT_FENCE, "a guest pings", (frames,), setup="ws-guest",
                tenant=fuzz.TENANT, role="guest")
    outcome = await front_door.run(case)
    assert outcome.failures == [], outcome.report()

    attach = Hub.attach

    def attach_in_the_tenants_room(self: Hub, session: Any) -> None:
        attach(self, session)
        self.rooms.add(session, tenant_room(session.tenant_id))

    monkeypatch.setattr(Hub, "attach", attach_in_the_tenants_room)
    outcome = await front_door.run(case)
    assert [f.signature for f in outcome.failures] == [
        "fence breached: the fuzz tenant's data reached a guest"], outcome.report()


# The generators must reach the known crashes by themselves, not only through
# the explicit examples above: each of these kinds must be a real share of
# what they generate.

def _urlsplit_fails(case: Case) -> bool:
    line = case.data.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    try:
        urlsplit(line[1]) if len(line) == 3 else None
    except ValueError:
        return True
    return False


def _isdigit_not_int(case: Case) -> bool:
    for line in case.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            try:
                int(value.strip())
            except ValueError:
                return True
    return False


def _idna_fails(case: Case) -> bool:
    for line in case.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "host" and value.strip():
            try:
                value.strip().encode("idna")
            except UnicodeError:
                return True
    return False


def _client_payloads(data: bytes) -> bytes:
    """The unmasked payloads of the client frames in ``data``, joined."""
    payloads, pos = [], 0
    while len(data) - pos >= 2:
        length, start = data[pos + 1] & 0x7F, pos + 2
        if length >= 126:
            width = 2 if length == 126 else 8
            length, start = int.from_bytes(data[start:start + width], "big"), start + width
        mask = data[start:start + 4] if data[pos + 1] & 0x80 else b"\0\0\0\0"
        start += 4 if data[pos + 1] & 0x80 else 0
        payload = data[start:start + length]
        payloads.append(bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        pos = start + length
    return b"".join(payloads)


def _non_standard_json(case: Case) -> bool:
    data = _client_payloads(case.data) if case.setup.startswith(("ws", "eio-ws")) else case.data
    return any(token in data for token in (b"NaN", b"Infinity", b"2e308"))


def _lone_surrogate(case: Case) -> bool:
    data = _client_payloads(case.data) if case.setup.startswith(("ws", "eio-ws")) else case.data
    return any(token in data for token in (b"\\ud800\"", b"\\udfff", b"\\udc00b"))


def _names_the_ticket(case: Case) -> bool:
    """A ticket event on the fuzzer's ticket, its placeholder where rendering finds it."""
    return fuzz.TICKET in case.data


def _an_intruder_posts(case: Case) -> bool:
    """An admin of another tenant sends a valid message to the fuzz tenant's c1."""
    return case.tenant == fuzz.INTRUDER and b'"message:send"' in case.data


def _an_outsider(case: Case) -> bool:
    """A customer of the fuzz tenant, party to none of its things."""
    return case.tenant == fuzz.TENANT and case.role == "customer"


def _a_guest(case: Case) -> bool:
    return case.role == "guest"


def _an_intruders_key(case: Case) -> bool:
    """A request of the HTTP API with an API key of the intruder's tenant."""
    return fuzz.IKEY in case.data


def _through_a_profile(case: Case) -> bool:
    return any(f"/{namespace.strip('/')},".encode() in case.data for namespace in fuzz.PROFILED)


@functools.cache
def _generated(strategy: Callable[[], SearchStrategy[Case]]) -> list[Case]:
    """What ``strategy`` generates in the tests above (derandomized, so always the same)."""
    drawn: list[Case] = []

    @settings(FUZZ, max_examples=150, phases=(Phase.generate,))
    @given(case=strategy())
    def draw(case: Case) -> None:
        drawn.append(case)

    draw()
    return drawn


@pytest.mark.parametrize(("strategy", "predicate", "share"), [
    (fuzz.request_heads, _urlsplit_fails, 0.03),
    (fuzz.request_heads, _idna_fails, 0.04),
    (fuzz.request_bodies, _isdigit_not_int, 0.05),
    (fuzz.request_bodies, _non_standard_json, 0.07),
    (fuzz.websocket_frames, _non_standard_json, 0.07),
    (fuzz.engineio_polling_cases, _non_standard_json, 0.1),
    (fuzz.engineio_websocket_cases, _non_standard_json, 0.05),
    (fuzz.request_bodies, _lone_surrogate, 0.03),
    (fuzz.websocket_frames, _lone_surrogate, 0.07),
    (fuzz.plugin_event_cases, _names_the_ticket, 0.2),
    (fuzz.plugin_event_cases, _through_a_profile, 0.3),
    (fuzz.plugin_event_cases, _non_standard_json, 0.05),
    (fuzz.intruder_cases, _an_intruder_posts, 0.03),
    (fuzz.intruder_cases, _names_the_ticket, 0.2),
    (fuzz.intruder_cases, _through_a_profile, 0.2),
    (fuzz.intruder_cases, _an_intruders_key, 0.08),
    (fuzz.intruder_cases, _an_outsider, 0.1),
    (fuzz.intruder_cases, _a_guest, 0.1),
], ids=["ipv6-target", "bad-host", "superscript-length", "nan-body", "nan-frame", "nan-packet",
        "nan-eio-frame", "surrogate-body", "surrogate-frame", "real-ticket", "profiled",
        "nan-plugin-event", "intruder-posts", "intruder-ticket", "intruder-profiled",
        "intruder-key", "outsider", "guest"])
def test_generators_reach_the_known_crashes(strategy: Callable[[], SearchStrategy[Case]],
                                            predicate: Callable[[Case], bool],
                                            share: float) -> None:
    cases = _generated(strategy)
    hits = sum(1 for case in cases if predicate(case))
    assert hits / len(cases) >= share, f"{hits} of {len(cases)} cases"
