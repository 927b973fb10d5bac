"""Helpers of the handover tests: a server on SQLite then PostgreSQL with the
handover settings a test asks for, conversations, and connected clients."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from databases import database_url
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, ErrorReply, Harness, TestClient, make_config

#: What handover tests run with unless they say otherwise: no escalation, so
#: that nothing but the test moves a request.
QUIET: dict[str, Any] = {"escalate_after": 0.0}
#: An API key of tenant t2 only.
T2_KEY = "t2-api-key-0123456789"


@pytest.fixture
def handover_settings() -> Mapping[str, Any]:
    """``[plugins.handover]`` of the test's server; override it in a module."""
    return QUIET


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, then a fresh database of the real PostgreSQL."""
    with database_url(request.param, tmp_path, tables=True) as url:
        yield url


@pytest.fixture
def switchboard_config(database: str, handover_settings: Mapping[str, Any]) -> Config:
    return make_config({"store": {"url": database},
                        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"},
                                     {"key": T2_KEY, "tenant": "t2", "name": "t2"}],
                        "plugins": {"handover": dict(handover_settings)}})


async def conversation(switchboard: Harness, conv_id: str = "c1", tenant: str = "t1",
                       participants: tuple[tuple[str, str], ...] = (("carl", "customer"),
                                                                    ("helpbot", "bot"))
                       ) -> None:
    response = await switchboard.http().post(
        "/api/v1/conversations", headers=switchboard.api_headers(),
        json={"tenant": tenant, "id": conv_id,
              "participants": [{"userId": u, "role": r} for u, r in participants]})
    assert response.status_code == 201, await response.get_json()


async def agent(switchboard: Harness, user: str, *, queue: str | None = None,
                tenant: str = "t1", role: str = "agent") -> TestClient:
    """An agent connected (in ``tenant:{id}:agents``), in ``queue:{queue}`` if given."""
    client = await switchboard.connect(user=user, tenant=tenant, role=role)
    if queue is not None:
        assert await client.request("room:join", {"room": f"queue:{queue}"}) == {
            "room": f"queue:{queue}"}
    return client


async def customer(switchboard: Harness, user: str = "carl", conv_id: str = "c1",
                   tenant: str = "t1") -> TestClient:
    client = await switchboard.connect(user=user, tenant=tenant, role="customer")
    ack = await client.request("conversation:join", {"conversationId": conv_id})
    assert ack["success"], ack
    return client


async def error_of(client: TestClient, event: str, data: Any) -> ErrorReply:
    """The error a request is refused with (fails if it is accepted)."""
    with pytest.raises(ErrorReply) as refused:
        await client.request(event, data)
    return refused.value


async def history_texts(switchboard: Harness, conv_id: str = "c1",
                        tenant: str = "t1") -> list[tuple[str, str]]:
    """(senderRole, text) of the conversation's messages, oldest first."""
    page = await switchboard.app.service("chat").history(tenant, conv_id)
    return [(m.sender_role, m.content.get("text", "")) for m in page.messages]
