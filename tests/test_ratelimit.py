"""Rate limits: per-connection, per-user and per-event token buckets, and the cut
of abusive clients with 4429. Small buckets, driven by the mock clock."""

from __future__ import annotations

import pytest
import trio
from switchboard.core.config import Config
from switchboard.testing import ErrorReply, Harness, TestClient, make_config

CONNECTION_BURST = 5
USER_BURST = 8
PRESENCE_BURST = 2
MAX_VIOLATIONS = 3
VIOLATION_WINDOW = 10.0


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"limits": {
        "connection": {"rate": 1.0, "burst": CONNECTION_BURST},
        "user": {"rate": 1.0, "burst": USER_BURST},
        "events": {"presence:update": {"rate": 0.5, "burst": PRESENCE_BURST}},
        "max_violations": MAX_VIOLATIONS,
        "violation_window": VIOLATION_WINDOW,
    }})


async def join(client: TestClient, room: str = "lead:1") -> None:
    assert await client.request("room:join", {"room": room}) == {"room": room}


async def limited(client: TestClient, event: str = "room:join",
                  data: object = None) -> ErrorReply:
    with pytest.raises(ErrorReply) as refused:
        await client.request(event, data if data is not None else {"room": "lead:1"})
    assert refused.value.code == "rate_limited"
    return refused.value


async def test_exceeding_the_connection_bucket_answers_rate_limited_with_retry_after(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", role="agent")
    for _ in range(CONNECTION_BURST):
        await join(client)
    refused = await limited(client)
    assert refused.data["event"] == "room:join"
    assert 0 < refused.data["retry_after"] <= 1.0
    assert client.close_code is None


async def test_tokens_refill_as_time_passes(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", role="agent")
    for _ in range(CONNECTION_BURST):
        await join(client)
    refused = await limited(client)
    await trio.sleep(refused.data["retry_after"])
    await join(client)  # one token refilled...
    await limited(client)  # ...and only one
    await trio.sleep(CONNECTION_BURST)
    for _ in range(CONNECTION_BURST):  # a full bucket after burst / rate seconds
        await join(client)
    await limited(client)


async def test_bucket_does_not_fill_past_its_burst(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", role="agent")
    await trio.sleep(600)
    for _ in range(CONNECTION_BURST):
        await join(client)
    await limited(client)


async def test_user_bucket_is_shared_by_the_devices_of_one_user(switchboard: Harness) -> None:
    phone = await switchboard.connect(user="ann", role="agent")
    laptop = await switchboard.connect(user="ann", role="agent")
    for _ in range(CONNECTION_BURST):
        await join(phone)
    for _ in range(USER_BURST - CONNECTION_BURST):
        await join(laptop)
    # The laptop's own connection bucket still has tokens; the user's is empty.
    refused = await limited(laptop)
    assert refused.data["retry_after"] > 0
    await limited(phone)


async def test_user_bucket_is_not_shared_with_other_users(switchboard: Harness) -> None:
    ann = await switchboard.connect(user="ann", role="agent")
    for _ in range(CONNECTION_BURST):
        await join(ann)
    await limited(ann)
    bob = await switchboard.connect(user="bob", role="agent")
    namesake = await switchboard.connect(user="ann", tenant="t2", role="agent")
    for _ in range(CONNECTION_BURST):
        await join(bob)
        await join(namesake)


async def test_per_event_limit_comes_from_the_config(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", role="agent")
    for status in ("busy", "away"):  # PRESENCE_BURST of them
        assert await client.request("presence:update", {"status": status}) == {"status": status}
    refused = await limited(client, "presence:update", {"status": "online"})
    assert refused.data["event"] == "presence:update"
    assert 1.0 < refused.data["retry_after"] <= 2.0  # 0.5 tokens per second
    # Other events of the same connection are not held back by that bucket.
    await join(client)


async def test_too_many_violations_close_the_connection_with_4429(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", role="agent")
    for _ in range(CONNECTION_BURST):
        await join(client)
    for _ in range(MAX_VIOLATIONS):
        await limited(client)
    await client.emit("room:join", {"room": "lead:1"}, id="one-too-many")
    code, _ = await client.expect_closed(timeout=5)
    assert code == 4429


async def test_violations_older_than_the_window_are_forgotten(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann", role="agent")
    for _ in range(CONNECTION_BURST):
        await join(client)
    for _ in range(MAX_VIOLATIONS):
        await limited(client)
    await trio.sleep(VIOLATION_WINDOW + 1)
    for _ in range(CONNECTION_BURST):
        await join(client)
    for _ in range(MAX_VIOLATIONS):
        await limited(client)
    assert client.close_code is None


async def test_a_flooding_client_does_not_affect_another(switchboard: Harness) -> None:
    flooder = await switchboard.connect(user="flood", role="agent")
    calm = await switchboard.connect(user="calm", role="agent")
    for n in range(50):
        if flooder.close_code is not None:
            break
        await flooder.emit("room:join", {"room": f"lead:{n}"}, id=n)
    code, _ = await flooder.expect_closed(timeout=5)
    assert code == 4429
    for _ in range(CONNECTION_BURST):
        await join(calm)
    assert calm.received("error") == []
    assert calm.close_code is None


async def test_flooding_pings_or_garbage_is_rate_limited_and_cut(switchboard: Harness) -> None:
    pinger = await switchboard.connect(user="pinger")
    for _ in range(CONNECTION_BURST):
        await pinger.emit("ping")
    for _ in range(CONNECTION_BURST):
        await pinger.expect("pong")
    await pinger.emit("ping")
    assert (await pinger.expect_error("rate_limited"))["retry_after"] > 0
    garbage = await switchboard.connect(user="garbage")
    for _ in range(CONNECTION_BURST + MAX_VIOLATIONS + 1):
        await garbage.send_text("not json")
    code, _ = await garbage.expect_closed()
    assert code == 4429
