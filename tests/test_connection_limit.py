"""``limits.max_connections_per_user``: a user's connections (all devices, all
nodes; a Socket.IO namespace is one) are bounded; past the bound a new one is
refused with ``too_many_connections``, and a place freed is taken again.

Plain WebSocket on the mock clock; socket.io-client's view through the real
listener (python-socketio's client); two nodes on the real Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import pytest
import socketio
import trio
import trio.testing
from socketio_fixtures import socketio_config
from switchboard.core.config import Config
from switchboard.testing import HandshakeRejected, Harness

from tests.redis_nodes import (
    TIMEOUT,
    cluster_config,
    eventually,
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
)

LIMIT = 2


@pytest.fixture
def switchboard_config() -> Config:
    return socketio_config({"limits": {"max_connections_per_user": LIMIT}})


async def test_a_users_connections_past_the_limit_are_refused_until_one_closes(
        switchboard: Harness) -> None:
    phone = await switchboard.connect("alice", "acme")
    await switchboard.connect("alice", "acme")
    with pytest.raises(HandshakeRejected) as info:
        await switchboard.connect("alice", "acme")
    assert info.value.status == 429
    assert (info.value.body["code"], info.value.body["limit"]) == ("too_many_connections", 2)
    # another user, or the same user id of another tenant, is not counted with her
    await switchboard.connect("bob", "acme")
    await switchboard.connect("alice", "globex")
    # renewing a token is not a new connection
    renewed = await phone.request("auth", {"token": switchboard.token("alice", "acme")})
    assert renewed["left"] == []
    await phone.close()
    await trio.testing.wait_all_tasks_blocked()  # (the server has seen the close)
    await switchboard.connect("alice", "acme")


def sio_connect(live: Harness, user: str) -> tuple[socketio.Client | None, Any]:
    """Connect python-socketio's client; (the client, None) or (None, the
    refusal's data)."""
    client = socketio.Client(reconnection=False)
    refused: list[Any] = []
    client.on("connect_error", refused.append)
    try:
        client.connect(live.http_url(), transports=["websocket"], wait_timeout=TIMEOUT,
                       auth={"token": live.token(user, "acme")})
    except socketio.exceptions.ConnectionError:
        return None, refused[0] if refused else None
    return client, None


async def in_thread(fn: Any, *args: Any) -> Any:
    with trio.fail_after(TIMEOUT * 2):
        return await trio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)


async def test_socketio_clients_past_the_limit_get_a_connect_error_with_the_code(
        switchboard_live: Harness) -> None:
    clients = [(await in_thread(sio_connect, switchboard_live, "alice"))[0]
               for _ in range(LIMIT)]
    assert all(client is not None for client in clients)
    client, refusal = await in_thread(sio_connect, switchboard_live, "alice")
    assert client is None
    # (socket.io-client's connect_error: err.message, and err.data with the code)
    assert (refusal["data"]["code"], refusal["data"]["limit"]) == ("too_many_connections",
                                                                   LIMIT)
    for client in clients:
        await in_thread(client.disconnect)


async def test_the_limit_counts_a_users_connections_on_every_node(
        redis_prefix: str) -> None:
    overrides: Mapping[str, Any] = {"limits": {"max_connections_per_user": LIMIT}}
    async with trio.open_nursery() as nursery:
        a, b = await start_nodes(cluster_config(redis_prefix, overrides=overrides),
                                 nursery, 2)
        await a.connect("alice", "t1", role="customer")
        laptop = await b.connect("alice", "t1", role="customer")
        for node in (a, b):
            with pytest.raises(HandshakeRejected) as info:
                await node.connect("alice", "t1", role="customer")
            assert info.value.body["code"] == "too_many_connections"
        await laptop.close()

        async def admitted() -> bool:
            try:
                await a.connect("alice", "t1", role="customer")
            except HandshakeRejected:
                return False
            return True

        await eventually(admitted)
        for node in (a, b):
            await node.stop()
