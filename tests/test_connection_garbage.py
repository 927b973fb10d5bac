"""A closed connection is freed by reference counting: nothing the server held
for it (its session, channel, inbox, outbox) is left in a reference cycle.
Such a cycle keeps a long-lived connection's memory until one of the cyclic
collector's passes over old objects, which are rare at the server's
thresholds (``server.gc_thresholds``), and makes those passes longer."""

from __future__ import annotations

import gc
import json
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
import trio
import trio.testing
from switchboard.testing import Harness
from trio_websocket import WebSocketConnection, open_websocket_url

#: The server's objects of a connection, by class name.
SERVER_SIDE = {"Session", "WebSocketConnection", "EngineSocket", "WsChannel", "Inbox",
               "Outbox", "Handshake", "TokenBucket", "ViolationCounter"}


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """What the cyclic collector finds from here on, kept in ``gc.garbage``."""
    gc.collect()
    gc.garbage.clear()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def receive(ws: WebSocketConnection) -> str:
    with trio.fail_after(10):
        message = await ws.get_message()
    assert isinstance(message, str)
    return message


async def plain_websocket(live: Harness, user: str) -> None:
    async with open_websocket_url(live.ws_url(live.token(user, "t1", "agent"))) as ws:
        await receive(ws)
        await ws.send_message('{"type":"room:join","data":{"room":"lead:1"},"id":1}')
        while json.loads(await receive(ws)).get("id") != 1:
            pass


async def socketio(live: Harness, user: str) -> None:
    host, port = live.server.addresses[0]
    url = f"ws://{host}:{port}/socket.io/?EIO=4&transport=websocket"
    async with open_websocket_url(url) as ws:
        await receive(ws)  # engine.io's open packet
        await ws.send_message("40" + json.dumps({"token": live.token(user, "t1", "agent")}))
        assert (await receive(ws)).startswith("40")
        await ws.send_message('421["room:join",{"room":"lead:1"}]')
        while not (await receive(ws)).startswith("431"):
            pass


@pytest.mark.parametrize("client", [plain_websocket, socketio])
async def test_a_closed_connection_leaves_nothing_in_a_reference_cycle(
        switchboard_live: Harness, saved_garbage: list[object],
        client: Callable[[Harness, str], Awaitable[None]]) -> None:
    for i in range(5):
        await client(switchboard_live, f"u{i}")
    with trio.fail_after(10):  # each connection's end has run (hooks may use threads)
        while switchboard_live.app.hub.stats()["connections"]:
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
    gc.collect()
    left = sorted({type(o).__name__ for o in saved_garbage} & SERVER_SIDE)
    assert left == []


def tasks_under(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
    yield task
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            yield from tasks_under(child)


async def test_a_session_opened_by_long_polling_keeps_nothing_of_its_handshake_request(
        switchboard_live: Harness) -> None:
    """socket.io-client starts on long-polling (its default): the session's task
    is started while the web framework handles that first GET. It must not
    keep that request (quart's request context, its headers, hypercorn's
    stream) for the session's life, as a task's inherited context would: some
    10 KB per session, for the whole connection."""
    from quart.ctx import RequestContext

    async with httpx.AsyncClient() as http:
        with trio.fail_after(10):
            opened = (await http.get(switchboard_live.http_url(
                "/socket.io/?EIO=4&transport=polling"))).text
    sid = json.loads(opened[1:])["sid"]
    engine = switchboard_live.server.engineio.engines[sid]
    runs = [task for task in tasks_under(trio.lowlevel.current_root_task())
            if task.coro.cr_frame is not None
            and task.coro.cr_frame.f_locals.get("fn") == engine.run]
    assert len(runs) == 1
    assert not any(isinstance(value, RequestContext) for value in runs[0].context.values())
