"""Shared pieces of the desk tests: a config on SQLite or PostgreSQL, and
helpers calling the HTTP API as a backend would."""

from __future__ import annotations

from typing import Any

from switchboard.core.config import Config, merge
from switchboard.testing import Harness, make_config

ACME_KEY = "acme-only-key-0123456789"


def desk_config(url: str, desk: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> Config:
    """The desk owning its tickets (``unknown_tickets = "not_found"``) unless
    ``desk`` says otherwise."""
    overrides: dict[str, Any] = {
        "store": {"url": url},
        "api_keys": [{"key": "test-api-key-0123456789", "tenant": "*", "name": "tests"},
                     {"key": ACME_KEY, "tenant": "acme", "name": "acme backend"}],
        "plugins": {"desk": {"unknown_tickets": "not_found", **(desk or {})}},
    }
    return make_config(merge(overrides, extra or {}))


async def call(switchboard: Harness, method: str, path: str, body: Any = None, *,
               status: int | None = None, key: str | None = None) -> Any:
    """Call the HTTP API; check the status when given; return the JSON body."""
    headers = switchboard.api_headers(key) if key else switchboard.api_headers()
    response = await switchboard.http().open(path, method=method, headers=headers,
                                             json=body)
    answer = await response.get_json()
    if status is not None:
        assert response.status_code == status, (response.status_code, answer)
    return answer


async def new_ticket(switchboard: Harness, tenant: str = "acme", **fields: Any
                     ) -> dict[str, Any]:
    body = {"tenant": tenant, "subject": "Printer on fire", "customerId": "cust-1", **fields}
    ticket: dict[str, Any] = await call(switchboard, "POST", "/api/v1/tickets", body,
                                        status=201)
    return ticket


async def put_queue(switchboard: Harness, queue: str, members: list[Any], tenant: str = "acme",
                    strategy: str = "round_robin") -> dict[str, Any]:
    listed = [m if isinstance(m, dict) else {"userId": m} for m in members]
    answer: dict[str, Any] = await call(
        switchboard, "POST", "/api/v1/queues",
        {"tenant": tenant, "id": queue, "name": queue.title(), "strategy": strategy,
         "members": listed}, status=201)
    return answer
