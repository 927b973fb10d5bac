"""The providers' sans-IO parsers: whatever JSON a webhook holds, they return
events and never raise; the send answers mean what the providers mean."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from backends import Backend, backend_fixture  # noqa: F401  (the backend fixture)
from hypothesis import given, settings
from hypothesis import strategies as st
from switchboard.plugins.whatsapp import bridge, cloud, providers
from switchboard.plugins.whatsapp.model import (
    ConnectionUpdate,
    InboundMessage,
    QrUpdate,
    StatusUpdate,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**400)
    | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["100200300", "text", "image", "messages",
                                               "5511987654321@s.whatsapp.net", "open"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from([
        "entry", "changes", "value", "metadata", "phone_number_id", "messages", "statuses",
        "contacts", "from", "id", "type", "text", "body", "image", "errors", "status",
        "event", "instance", "data", "key", "remoteJid", "message", "conversation",
        "qrcode", "code", "state", "statusReason", "keyId", "pushName", "timestamp",
        "messageTimestamp"]), inner, max_size=5),
    max_leaves=30)


@settings(deadline=None)
@given(json_values)
def test_cloud_webhooks_of_any_shape_parse_without_raising(body: Any) -> None:
    cloud.parse_webhook({"entry": [{"changes": [{"value": body}]}]}, "100200300",
                        "https://graph.example/v21.0")
    cloud.parse_webhook(body, "100200300", "https://graph.example/v21.0")


@settings(deadline=None)
@given(st.sampled_from(["qrcode.updated", "connection.update", "messages.upsert",
                        "messages.update", "contacts.update", "logout.instance", "x"]),
       json_values)
def test_bridge_webhooks_of_any_shape_parse_without_raising(event: str, data: Any) -> None:
    bridge.parse_webhook({"event": event, "instance": "sim", "data": data}, "sim")


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["from", "id", "type", "timestamp", "text", "image",
                                        "document", "location", "contacts", "interactive"]),
                       json_values, max_size=6))
def test_cloud_messages_with_any_fields_parse_without_raising(fields: Any) -> None:
    message = {"from": "5511987654321", "id": "wamid.1", "type": "text", **fields}
    cloud.parse_webhook({"entry": [{"changes": [{"value": {
        "metadata": {"phone_number_id": "1"}, "messages": [message],
        "statuses": [{"id": "wamid.1", "status": "failed", **fields}]}}]}]}, "1", "https://g")


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["key", "message", "messageTimestamp", "pushName",
                                        "status", "keyId"]), json_values, max_size=5))
def test_bridge_messages_with_any_fields_parse_without_raising(fields: Any) -> None:
    item = {"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "M1"}, **fields}
    for event in ("messages.upsert", "messages.update", "contacts.update"):
        bridge.parse_webhook({"event": event, "instance": "sim", "data": [item]}, "sim")


def test_a_timestamp_too_large_for_a_float_is_no_timestamp() -> None:
    [message] = cloud.parse_webhook({"entry": [{"changes": [{"value": {
        "metadata": {"phone_number_id": "1"}, "messages": [{
            "from": "5511987654321", "id": "w1", "type": "text", "text": {"body": "x"},
            "timestamp": 10**400}]}}]}]}, "1", "https://g")
    assert isinstance(message, InboundMessage) and message.timestamp is None


def test_cloud_messages_and_statuses_of_other_numbers_are_left_out() -> None:
    body = {"entry": [{"changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "999"},
        "messages": [{"from": "5511987654321", "id": "wamid.1", "type": "text",
                      "text": {"body": "not for us"}}]}}]}]}
    assert cloud.parse_webhook(body, "100200300", "https://g/v21.0") == []


def test_bridge_events() -> None:
    assert bridge.parse_webhook({"event": "QRCODE_UPDATED", "instance": "sim", "data": {
        "qrcode": {"code": "2@abc"}}}, "sim") == [QrUpdate("2@abc")]
    assert bridge.parse_webhook({"event": "connection.update", "instance": "sim", "data": {
        "state": "close", "statusReason": 401}}, "sim") == [
        ConnectionUpdate("logged_out", "closed (401)")]
    assert bridge.parse_webhook({"event": "qrcode.updated", "instance": "other", "data": {
        "qrcode": {"code": "2@abc"}}}, "sim") == []  # another instance's
    upsert = bridge.parse_webhook({"event": "messages.upsert", "instance": "sim", "data": [
        {"key": {"remoteJid": "120363@g.us", "id": "G1"}, "message": {"conversation": "grp"}},
        {"key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": True, "id": "M1"},
         "message": {"conversation": "ours"}},
        {"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "M2"}, "pushName": "Ana",
         "message": {"extendedTextMessage": {"text": "theirs"}}}]}, "sim")
    assert [(m.provider_id, m.content) for m in upsert
            if isinstance(m, InboundMessage)] == [("M2", {"text": "theirs"})]
    acks = bridge.parse_webhook({"event": "messages.update", "instance": "sim", "data": {
        "keyId": "M9", "status": "DELIVERY_ACK"}}, "sim")
    assert acks == [StatusUpdate("M9", "delivered")]


def test_send_answers() -> None:
    accepted = cloud.send_outcome(200, {}, {"messages": [{"id": "wamid.X"}]})
    assert accepted.provider_id == "wamid.X"
    throttled = cloud.send_outcome(400, {}, {"error": {"code": 130429, "message": "slow"}})
    assert throttled.retry and not throttled.accepted
    refused = cloud.send_outcome(400, {}, {"error": {"code": 131030, "message": "not allowed",
                                                     "error_data": {"details": "test number"}}})
    assert not refused.retry and refused.error == "(131030) not allowed - test number (HTTP 400)"
    later = cloud.send_outcome(429, {"retry-after": "12"}, None)
    assert (later.retry, later.retry_after) == (True, 12.0)
    assert bridge.send_outcome(201, {}, {"key": {"id": "B1"}}).provider_id == "B1"
    assert bridge.send_outcome(502, {}, "bad gateway").retry
    gone = bridge.send_outcome(400, {}, {"response": {"message": ["exists: false"]}})
    assert (gone.retry, gone.error) == (False, "exists: false (HTTP 400)")


@pytest.mark.parametrize("answer", [b"[" * 5000 + b"]" * 5000, b"not json", b'{"a": NaN'])
async def test_a_provider_answer_that_is_no_json_is_none_not_a_failure(
        backend: Backend, answer: bytes) -> None:
    # (a real HTTP peer; 5,000 brackets deep raised RecursionError in the sender)
    backend.on("/messages", lambda body: (200, answer))
    async with httpx.AsyncClient() as client:
        status, _, parsed = await providers._call(client, "POST", backend.url("/messages"),
                                                  {}, {"to": "1"}, 10.0)
    assert (status, parsed) == (200, None)


async def test_a_provider_answer_past_the_limit_is_unreachable_not_kept_in_memory(
        backend: Backend) -> None:
    backend.on("/messages", lambda body: (200, b"[" + b"1," * providers.MAX_ANSWER + b"1]"))
    async with httpx.AsyncClient() as client:
        with pytest.raises(providers._Unreachable, match="answer over"):
            await providers._call(client, "POST", backend.url("/messages"), {}, {}, 30.0)
