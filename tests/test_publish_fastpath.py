"""POST /api/v1/emit over real sockets: the publish fast path and its hand-over
to the HTTP framework for everything else on the same connection."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator

import httpx
import trio
from switchboard.core.transport.wschannel import written_here
from switchboard.testing import TEST_API_KEY, Harness
from trio_websocket import WebSocketConnection, open_websocket_url
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import Message, Request, TextMessage

EMIT = {"event": "ticket:updated", "tenant": "t1", "room": "lead:1", "data": {"n": 1}}


def post(body: bytes, *, key: str = TEST_API_KEY, extra: str = "") -> bytes:
    return (f"POST /api/v1/emit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, dict, str]:
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive_some(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    buffer[:] = rest[length:]
    return int(lines[0].split()[1]), json.loads(rest[:length] or b"{}"), headers.get(
        "connection", "")


@contextlib.asynccontextmanager
async def member_of(live: Harness, room: str) -> AsyncIterator[WebSocketConnection]:
    """A plain WebSocket client of ann's that has joined ``room``."""
    token = live.token("ann", "t1", "agent")
    async with open_websocket_url(live.ws_url(token)) as ws:
        with trio.fail_after(10):
            await ws.get_message()
            await ws.send_message(json.dumps({"type": "room:join", "data": {"room": room},
                                              "id": 1}))
            while json.loads(await ws.get_message()).get("id") != 1:
                pass
        yield ws


async def test_many_emits_on_one_kept_alive_connection_then_another_route(
        switchboard_live: Harness) -> None:
    host, port = switchboard_live.server.addresses[0]
    async with member_of(switchboard_live, "lead:1") as ws:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(host, port)
            buffer = bytearray()
            body = json.dumps(EMIT).encode()
            await stream.send_all(post(body) + post(body))  # pipelined
            for _ in range(2):
                assert (await read_response(stream, buffer))[:2] == (202, {"published": 1})
            await stream.send_all(post(json.dumps([EMIT, EMIT]).encode()))
            assert (await read_response(stream, buffer))[1] == {"published": 2}
            received = 0
            while received < 4:
                if json.loads(await ws.get_message())["type"] == "ticket:updated":
                    received += 1
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, answer, _ = await read_response(stream, buffer)
            assert (status, answer) == (200, {"status": "ok"})
            await stream.aclose()


async def test_errors_are_json_with_a_code(switchboard_live: Harness) -> None:
    host, port = switchboard_live.server.addresses[0]
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, port)
        buffer = bytearray()
        await stream.send_all(post(b"{nope"))
        assert (await read_response(stream, buffer))[:2] == (
            400, {"code": "invalid_json", "message": "request body must be JSON"})
        await stream.send_all(post(b"[" * 4_000))  # nested past the parser's limit
        assert (await read_response(stream, buffer))[:2] == (
            400, {"code": "invalid_json", "message": "request body must be JSON"})
        await stream.send_all(post(json.dumps(EMIT).encode(), key="wrong-key-0123456789"))
        status, answer, _ = await read_response(stream, buffer)
        assert status == 401 and answer["code"] == "unauthorized"
        await stream.send_all(post(json.dumps({**EMIT, "room": "bad room"}).encode()))
        status, answer, _ = await read_response(stream, buffer)
        assert status == 400 and answer["code"] == "invalid_room"
        await stream.send_all(post(json.dumps({"event": "x"}).encode()))
        status, answer, _ = await read_response(stream, buffer)
        assert status == 400 and answer["field"] == "tenant"
        await stream.aclose()


async def test_connection_close_is_honoured(switchboard_live: Harness) -> None:
    host, port = switchboard_live.server.addresses[0]
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, port)
        buffer = bytearray()
        await stream.send_all(post(json.dumps(EMIT).encode(), extra="Connection: close\r\n"))
        status, _, connection = await read_response(stream, buffer)
        assert status == 202 and connection == "close"
        assert await stream.receive_some(100) == b""


async def test_requests_the_fast_path_does_not_take_are_served_by_the_framework(
        switchboard_live: Harness) -> None:
    async def chunks():  # a chunked body
        yield json.dumps(EMIT).encode()

    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(10):
            response = await http.post(switchboard_live.http_url("/api/v1/emit"),
                                       content=chunks(),
                                       headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert response.status_code == 202 and response.json() == {"published": 1}


async def test_a_publish_is_written_to_the_members_before_it_is_answered(
        switchboard_live: Harness) -> None:
    """When ``POST /api/v1/emit`` answers, the event is in the members' sockets:
    a backend that publishes, then tells its users by another way, is never ahead
    of the event."""
    host, port = switchboard_live.server.addresses[0]
    token = switchboard_live.token("ann", "t1", "agent")
    member = await trio.open_tcp_stream(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    with trio.fail_after(10):
        await member.send_all(ws.send(Request(host="x", target=f"/ws?token={token}")))
        while ws.state is not ConnectionState.OPEN:
            ws.receive_data(await member.receive_some(65536))
            list(ws.events())
        await member.send_all(ws.send(Message(
            data='{"type":"room:join","data":{"room":"lead:1"},"id":1}')))
        joined = False
        while not joined:  # (the member reads nothing more from here on)
            ws.receive_data(await member.receive_some(65536))
            joined = any(isinstance(e, TextMessage) and '"id":1' in e.data
                         for e in ws.events())
        publisher = await trio.open_tcp_stream(host, port)
        buffer = bytearray()
        peek = socket.fromfd(member.socket.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        peek.setblocking(False)
        try:
            for n in range(20):
                emit = {**EMIT, "data": {"n": n}}
                await publisher.send_all(post(json.dumps(emit).encode()))
                assert (await read_response(publisher, buffer))[0] == 202
                # nothing else has run on the server since it answered
                waiting = peek.recv(1 << 20, socket.MSG_PEEK)
                assert f'"data":{{"n":{n}}}'.encode() in waiting
        finally:
            peek.close()


class _Spawned(trio.abc.Instrument):
    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def test_a_publish_request_writes_its_deliveries_without_a_task_for_them(
        switchboard_live: Harness) -> None:
    """The emit request writes what it published itself: no task is started
    per request for the direct write (it would find nothing left to do)."""
    host, port = switchboard_live.server.addresses[0]
    async with member_of(switchboard_live, "lead:1") as ws:
        with trio.fail_after(10):
            publisher = await trio.open_tcp_stream(host, port)
            buffer = bytearray()
            spawned = _Spawned()
            trio.lowlevel.add_instrument(spawned)
            try:
                for n in range(10):
                    await publisher.send_all(post(json.dumps({**EMIT, "data": n}).encode()))
                    assert (await read_response(publisher, buffer))[0] == 202
            finally:
                trio.lowlevel.remove_instrument(spawned)
            received = [json.loads(await ws.get_message())["data"] for _ in range(10)]
    assert received == list(range(10))
    assert "switchboard.websocket.direct" not in spawned.names


async def test_frames_queued_by_a_task_started_inside_written_here_still_go_out(
        switchboard_live: Harness) -> None:
    """Only the task that opened the block writes at its end: a task started
    there (it inherits the block's context) publishes the usual way, inside
    the block and after it has ended, and nothing it publishes is left behind."""
    app = switchboard_live.app
    async with member_of(switchboard_live, "lead:1") as ws:
        with trio.fail_after(10):
            inside, ended = trio.Event(), trio.Event()

            async def child() -> None:
                await app.publish("t1", "lead:2", "ticket:updated", "child, inside")
                inside.set()
                await ended.wait()
                await app.publish("t1", "lead:1", "ticket:updated", "child, after")

            await ws.send_message('{"type":"room:join","data":{"room":"lead:2"},"id":2}')
            while json.loads(await ws.get_message()).get("id") != 2:
                pass
            async with trio.open_nursery() as nursery:
                with written_here():
                    await app.publish("t1", "lead:1", "ticket:updated", "block")
                    nursery.start_soon(child)
                    await inside.wait()
                ended.set()
            got = [json.loads(await ws.get_message())["data"] for _ in range(3)]
    # (the child's first frame joined the socket's queue behind the block's)
    assert got == ["block", "child, inside", "child, after"]
