"""The pipeline plugin's checks fed arbitrary JSON (hypothesis): every bad
value is refused with ``invalid_payload`` naming a field, nothing else is
ever raised, and what passes is what the store can keep."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from switchboard.core import ClientError, structure_payload
from switchboard.core.config import ConfigError, load_config
from switchboard.core.pluginmanager import Plugins
from switchboard.plugins.pipeline import payloads
from switchboard.plugins.pipeline.storage import decode_cursor, encode_cursor

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
           | st.integers(min_value=10**300, max_value=10**400))  # past any float
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=12)
KEYS = ["leadId", "pipelineId", "stageId", "afterId", "beforeId", "version", "changes",
        "title", "contact", "value", "ownerId", "customerId", "tags", "fields", "id",
        "tenant", "actor", "cursor", "limit", "before", "name", "stages"]
shaped = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)

CLASSES = [payloads.BoardRef, payloads.LeadRef, payloads.ListLeads, payloads.CreateLead,
           payloads.UpdateLead, payloads.MoveLead, payloads.AssignLead, payloads.DeleteLead,
           payloads.ActivityRequest, payloads.HttpUpdate, payloads.HttpMove,
           payloads.HttpAssign, payloads.CreatePipeline]
CHECKS = [payloads.check_title, payloads.check_contact, payloads.check_value,
          payloads.check_tags, payloads.check_fields, payloads.check_changes,
          payloads.check_lead_id, lambda v: payloads.check_user_id(v, "ownerId")]


def refused_properly(error: ClientError) -> None:
    assert error.code == "invalid_payload" and error.message


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(deadline=None)
@given(data=json_values | shaped)
def test_payloads_are_structured_or_refused_naming_a_field(cls: type, data: Any) -> None:
    try:
        structure_payload(data, cls)
    except ClientError as error:
        refused_properly(error)


@pytest.mark.parametrize("check", CHECKS, ids=range(len(CHECKS)))
@settings(deadline=None)
@given(value=json_values | shaped)
def test_lead_fields_are_checked_or_refused_naming_a_field(check: Any, value: Any) -> None:
    try:
        checked = check(value)
    except ClientError as error:
        refused_properly(error)
        assert error.field
        return
    text = json.dumps(checked, allow_nan=False)  # storable JSON: no NaN, no infinity
    assert "\\u0000" not in text


@settings(deadline=None)
@given(st.text(max_size=80))
def test_a_cursor_is_one_this_server_gave_or_refused(cursor: str) -> None:
    try:
        rank, lead_id = decode_cursor(cursor)
    except ClientError as error:
        assert error.field == "cursor"
        return
    assert isinstance(rank, str) and isinstance(lead_id, str)


@pytest.mark.parametrize("inside", [b"[" * 5000, b'["a", NaN]', b"[" * 200 + b"]" * 200])
def test_a_cursor_of_json_this_server_never_writes_is_refused(inside: bytes) -> None:
    # (5,000 brackets deep: a RecursionError, a 500 on the HTTP route)
    with pytest.raises(ClientError) as info:
        decode_cursor(base64.urlsafe_b64encode(inside).decode())
    assert info.value.field == "cursor"


@given(st.text(max_size=20), st.text(max_size=20))
def test_cursors_round_trip(rank: str, lead_id: str) -> None:
    assert decode_cursor(encode_cursor(rank, lead_id)) == (rank, lead_id)


@pytest.mark.parametrize("value", ["-0.001", "2", '"soon"', "true"])
def test_a_batch_interval_out_of_range_is_refused_naming_the_setting(
        tmp_path: Path, value: str) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text(f"[plugins.pipeline]\nbatch_interval = {value}\n")
    with pytest.raises(ConfigError) as info:
        Plugins(load_config(path, {}))
    assert info.value.key == "plugins.pipeline.batch_interval"


def test_batch_interval_is_a_setting_zero_turns_it_off(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text("[plugins.pipeline]\nbatch_interval = 0\n")
    assert Plugins(load_config(path, {})).settings["pipeline"].batch_interval == 0
    assert Plugins(load_config(None, {})).settings["pipeline"].batch_interval == 0.004
