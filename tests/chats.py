"""Helpers of the chat tests: a conversation on both backends, joined members."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import database_url
from switchboard.core.config import Config
from switchboard.testing import Harness, TestClient, make_config


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    """The server of the ``switchboard`` fixture on a fresh SQLite file, then on a
    fresh database of the real PostgreSQL (import it into a test module to use it)."""
    with database_url(request.param, tmp_path, tables=True) as url:
        yield make_config({"store": {"url": url}})


async def create_conversation(switchboard: Harness, conv_id: str = "c1", tenant: str = "t1",
                              participants: tuple[str, ...] = ("carl", "ann")) -> None:
    response = await switchboard.http().post(
        "/api/v1/conversations", headers=switchboard.api_headers(),
        json={"tenant": tenant, "id": conv_id,
              "participants": [{"userId": p} for p in participants]})
    assert response.status_code == 201, await response.get_json()


async def joined(switchboard: Harness, user: str, role: str = "customer",
                 conv_id: str = "c1", tenant: str = "t1") -> TestClient:
    client = await switchboard.connect(user=user, role=role, tenant=tenant)
    ack = await client.request("conversation:join", {"conversationId": conv_id})
    assert ack == {"success": True, "conversationId": conv_id}
    return client


def text(body: str) -> dict[str, Any]:
    return {"type": "text", "content": {"text": body}}
