"""Every translation of the compatibility profiles, inbound and outbound, fed
arbitrary JSON (hypothesis): it translates, drops, or refuses with
``invalid_payload`` naming a field, and never raises anything else."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from switchboard.core import ClientError, Profile
from switchboard.core.session import Session
from switchboard.plugins.compat import NEXTCRM, PYTAKE
from switchboard.plugins.desk.compat import CONECTCRM, CONECTCRM_LEGACY
from switchboard.plugins.whatsapp.compat import SYSZAP

PROFILES = [PYTAKE, NEXTCRM, CONECTCRM, CONECTCRM_LEGACY, SYSZAP]

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.integers(min_value=10**300, max_value=10**400))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=12)
#: Objects with the keys the translations read, of any JSON type.
KEYS = ["id", "conversationId", "conversation_id", "messageId", "message_id", "status",
        "timestamp", "content", "senderRole", "senderId", "type", "createdAt", "clientId",
        "room", "userId", "typing", "leadId", "message", "isTyping", "success", "error",
        "direction", "sender_type", "message_type", "created_at", "sent_at",
        "whatsapp_message_id", "field", "value", "newStatus", "reason", "priority"]
shaped = st.dictionaries(st.sampled_from(KEYS), json_values | st.sampled_from(
    ["conversation:c-1", "lead:1", "c-1"]), max_size=10)
payloads = json_values | shaped


def session() -> Session:
    """What the translations read of a session (its identity)."""
    return cast(Session, SimpleNamespace(user_id="u1", tenant_id="t1", role="agent"))


def outbound_cases() -> list[tuple[Profile, str]]:
    return [(p, event) for p in PROFILES for event in p.outbound]


def inbound_cases() -> list[tuple[Profile, str]]:
    return [(p, event) for p in PROFILES for event in p.inbound]


def assert_refused_properly(error: ClientError) -> None:
    assert error.code == "invalid_payload" and error.message


@pytest.mark.parametrize(("profile", "event"), outbound_cases(),
                         ids=lambda v: getattr(v, "name", v))
@settings(deadline=None)
@given(data=payloads)
def test_outbound_translations_refuse_only_with_invalid_payload(
        profile: Profile, event: str, data: Any) -> None:
    try:
        translated = profile.translate_out(event, data)
    except ClientError as error:
        assert_refused_properly(error)
        return
    if translated is not None:
        name, _ = translated
        assert isinstance(name, str) and name


@pytest.mark.parametrize(("profile", "event"), inbound_cases(),
                         ids=lambda v: getattr(v, "name", v))
@settings(deadline=None)
@given(data=payloads, result=payloads)
def test_inbound_translations_refuse_only_with_invalid_payload(
        profile: Profile, event: str, data: Any, result: Any) -> None:
    rule = profile.inbound[event]
    try:
        rule.payload(data)
        if not isinstance(rule.event, str) and rule.event is not None:
            rule.event(data)
    except ClientError as error:
        assert_refused_properly(error)
    if rule.on_result is not None:
        for name, _ in rule.on_result(session(), data, result):
            assert isinstance(name, str)
    if rule.on_error is not None:
        for name, _ in rule.on_error(session(), data,
                                     ClientError("not_found", "no such thing")):
            assert isinstance(name, str)
    rule.ack(result)
