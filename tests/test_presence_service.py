"""The presence plugin as other plugins use it (``app.service("presence")``), and
its last-seen times kept on SQLite and PostgreSQL."""

from __future__ import annotations

import trio
from chats import switchboard_config  # noqa: F401  (the fixture: SQLite, then PostgreSQL)
from switchboard.core import PresenceInfo, PresenceService
from switchboard.testing import Harness

GRACE = 10  # seconds, the default grace period


def presence_of(switchboard: Harness) -> PresenceService:
    service: PresenceService = switchboard.app.service("presence")
    return service


async def test_online_lists_the_connected_users_with_role_and_devices(
        switchboard: Harness) -> None:
    await switchboard.connect(user="ann", tenant="acme", role="agent")
    await switchboard.connect(user="ann", tenant="acme", role="agent")
    carl = await switchboard.connect(user="carl", tenant="acme", role="customer")
    await switchboard.connect(user="ann", tenant="globex", role="agent")
    await carl.request("presence:update", {"status": "away"})
    online = presence_of(switchboard).online("acme")
    assert [(p.user_id, p.role, p.status, p.devices) for p in online] == [
        ("ann", "agent", "online", 2), ("carl", "customer", "away", 1)]


async def test_a_user_who_left_is_offline_with_the_time_last_seen_kept(
        switchboard: Harness) -> None:
    presence = presence_of(switchboard)
    assert await presence.presence_of("acme", "carl") is None
    carl = await switchboard.connect(user="carl", tenant="acme", role="customer")
    await carl.close()
    await trio.sleep(GRACE + 1)
    first = await presence.presence_of("acme", "carl")
    assert first is not None and (first.status, first.devices) == ("offline", 0)
    assert first.last_seen is not None
    assert presence.online("acme") == []
    # a second visit overwrites the time kept (one row per user, on either database)
    await trio.sleep(60)
    carl = await switchboard.connect(user="carl", tenant="acme", role="customer")
    online = await presence.presence_of("acme", "carl")
    assert online == PresenceInfo("carl", "online", 1, None, "customer")
    await carl.close()
    await trio.sleep(GRACE + 1)
    second = await presence.presence_of("acme", "carl")
    assert second is not None and second.last_seen is not None
    assert second.last_seen > first.last_seen
    response = await switchboard.http().get("/api/v1/presence/acme/carl",
                                            headers=switchboard.api_headers())
    assert (await response.get_json())["lastSeen"] == second.last_seen


async def test_ids_no_user_can_have_are_never_seen(switchboard: Harness) -> None:
    presence = presence_of(switchboard)
    assert await presence.presence_of("acme", "c\x00rl") is None
    assert await presence.presence_of("acme", "c" * 201) is None
    response = await switchboard.http().get("/api/v1/presence/acme/c%00rl",
                                            headers=switchboard.api_headers())
    assert response.status_code == 404
