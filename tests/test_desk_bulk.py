"""Opening tickets in bulk (``POST /api/v1/tickets/bulk``), and ticket creation
over a real socket, where the server serves it without the web framework:
the same answers, the same announcements, in order, on both protocols."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from databases import database_url
from desk import ACME_KEY, call, desk_config, put_queue
from socketio_fixtures import EnginePolling
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, Harness
from trio_websocket import open_websocket_url


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path) as url:
        yield desk_config(url)


def ticket(n: int, **fields: Any) -> dict[str, Any]:
    return {"tenant": "acme", "subject": f"s{n}", "customerId": f"c{n}", "queueId": "sales",
            **fields}


async def polled_events(polling: EnginePolling, sid: str, wanted: int) -> list[tuple[str, Any]]:
    """The ticket events a Socket.IO (long-polling) session receives, in order."""
    events: list[tuple[str, Any]] = []
    while len(events) < wanted:
        status, body = await polling.get(sid)
        assert status == 200
        for packet in body.split("\x1e"):
            if packet.startswith("42"):
                name, data = json.loads(packet[2:])
                if name.startswith("ticket:"):
                    events.append((name, data))
    return events


async def test_bulk_opens_the_tickets_in_order_and_every_agent_hears_them_in_order(
        switchboard: Harness) -> None:
    await put_queue(switchboard, "sales", ["ana"])
    ana = await switchboard.connect("ana", "acme", "agent")  # plain WebSocket
    # she takes tickets once she is online (her own agent:online says so)
    assert (await ana.expect("agent:online"))["userId"] == "ana"
    polling = EnginePolling(switchboard)  # Socket.IO
    sid = await polling.handshake(switchboard.token("bob", "acme", "agent"))
    assert await polling.post(sid, "40") == (200, "ok")
    status, body = await polling.get(sid)
    assert status == 200 and body.startswith("40{")

    answer = await call(switchboard, "POST", "/api/v1/tickets/bulk",
                        {"tickets": [ticket(n) for n in range(3)]}, status=201)
    opened = answer["tickets"]
    assert [t["subject"] for t in opened] == ["s0", "s1", "s2"]
    assert [t["number"] for t in opened] == [1, 2, 3]
    assert all(t["assigneeId"] == "ana" and t["status"] == "in_progress" for t in opened)

    expected = [(kind, t["id"]) for t in opened
                for kind in ("ticket:created", "ticket:assigned")]
    heard = []
    for _ in expected:
        frame = await ana._wait(lambda f: f.get("type", "").startswith("ticket:"), 10)
        heard.append((frame["type"], frame["data"]["ticket"]["id"]))
    assert heard == expected
    polled = await polled_events(polling, sid, len(expected))
    assert [(name, data["ticket"]["id"]) for name, data in polled] == expected
    assert polled[1][1]["reason"] == "auto_assign"


async def test_bulk_checks_every_ticket_before_it_opens_any(switchboard: Harness) -> None:
    await put_queue(switchboard, "sales", ["ana"])
    bad_queue = await call(switchboard, "POST", "/api/v1/tickets/bulk", {
        "tickets": [ticket(0), ticket(1, queueId="nope")]}, status=404)
    assert bad_queue["code"] == "not_found" and bad_queue["field"] == "tickets[1].queueId"
    bad_field = await call(switchboard, "POST", "/api/v1/tickets/bulk", {
        "tickets": [ticket(0), ticket(1), {"tenant": "acme", "customerId": "c"}]},
        status=400)
    assert bad_field["code"] == "invalid_payload"
    assert bad_field["field"].startswith("tickets[2].subject")
    forbidden = await call(switchboard, "POST", "/api/v1/tickets/bulk", {
        "tickets": [ticket(0), ticket(1, tenant="globex")]}, status=403, key=ACME_KEY)
    assert forbidden["code"] == "forbidden"
    for body in ({"tickets": []}, {"tickets": [ticket(0)] * 501}, {"tickets": "x"}, []):
        refused = await call(switchboard, "POST", "/api/v1/tickets/bulk", body, status=400)
        assert refused["code"] == "invalid_payload"
    # none of them opened a ticket
    listed = await call(switchboard, "GET", "/api/v1/tickets?tenant=acme", status=200)
    assert listed["items"] == []


# -- over a real socket -------------------------------------------------------------


def post(path: str, body: Any, *, key: str = TEST_API_KEY) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, Any]:
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive_some(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    buffer[:] = rest[length:]
    return int(lines[0].split()[1]), json.loads(rest[:length] or b"null")


async def test_tickets_created_over_a_kept_alive_connection_then_another_route(
        switchboard_live: Harness) -> None:
    live = switchboard_live
    await put_queue(live, "sales", ["ana"])
    host, port = live.server.addresses[0]
    async with open_websocket_url(live.ws_url(live.token("ana", "acme", "agent"))) as ws:
        with trio.fail_after(20):
            # she takes tickets once she is online (her own agent:online says so)
            while True:
                frame = json.loads(await ws.get_message())
                if frame.get("type") == "agent:online" and frame["data"]["userId"] == "ana":
                    break
            stream = await trio.open_tcp_stream(host, port)
            buffer = bytearray()
            # pipelined: two tickets, then three in bulk
            await stream.send_all(post("/api/v1/tickets", ticket(0))
                                  + post("/api/v1/tickets", ticket(1))
                                  + post("/api/v1/tickets/bulk",
                                         {"tickets": [ticket(n) for n in range(2, 5)]}))
            first = [await read_response(stream, buffer) for _ in range(2)]
            assert [status for status, _ in first] == [201, 201]
            assert [t["assigneeId"] for _, t in first] == ["ana", "ana"]
            status, bulk = await read_response(stream, buffer)
            assert status == 201
            opened = [t for _, t in first] + bulk["tickets"]
            assert [t["number"] for t in opened] == [1, 2, 3, 4, 5]
            heard: list[tuple[str, str]] = []
            while len(heard) < 10:
                frame = json.loads(await ws.get_message())
                if frame["type"] in ("ticket:created", "ticket:assigned"):
                    heard.append((frame["type"], frame["data"]["ticket"]["id"]))
            assert heard == [(kind, t["id"]) for t in opened
                             for kind in ("ticket:created", "ticket:assigned")]
            # a body that comes after its head, in pieces
            whole = post("/api/v1/tickets", ticket(5))
            cut = whole.index(b"\r\n\r\n") + 10
            await stream.send_all(whole[:cut])
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(whole[cut:])
            status, sixth = await read_response(stream, buffer)
            assert status == 201 and sixth["number"] == 6
            # the next request on the same connection, for another route
            await stream.send_all(b"GET /api/v1/tickets?tenant=acme HTTP/1.1\r\nHost: x\r\n"
                                  b"Authorization: Bearer " + TEST_API_KEY.encode()
                                  + b"\r\n\r\n")
            status, page = await read_response(stream, buffer)
            assert status == 200 and [t["number"] for t in page["items"]] == [6, 5, 4, 3, 2, 1]
            await stream.aclose()


async def test_errors_over_a_socket_are_those_of_the_http_api(
        switchboard_live: Harness) -> None:
    live = switchboard_live
    await put_queue(live, "sales", ["ana"])
    host, port = live.server.addresses[0]
    cases: list[tuple[str, Any, str]] = [
        ("/api/v1/tickets", b"{nope", TEST_API_KEY),
        ("/api/v1/tickets", ticket(0), "wrong-key-0123456789"),
        ("/api/v1/tickets", ticket(0, tenant="globex"), ACME_KEY),
        ("/api/v1/tickets", ticket(0, subject=""), TEST_API_KEY),
        ("/api/v1/tickets", {"tenant": "acme", "customerId": "c"}, TEST_API_KEY),
        ("/api/v1/tickets", ticket(0, queueId="nope"), TEST_API_KEY),
        ("/api/v1/tickets", [1, 2], TEST_API_KEY),
        ("/api/v1/tickets", ticket(0, tenant="bad tenant"), TEST_API_KEY),
        ("/api/v1/tickets/bulk", {"tickets": [ticket(0), ticket(1, priority="x")]},
         TEST_API_KEY),
    ]
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream(host, port)
        buffer = bytearray()
        for path, body, key in cases:
            await stream.send_all(post(path, body, key=key))
            fast = await read_response(stream, buffer)
            # the same request through the web framework
            response = await live.http().post(
                path, data=body if isinstance(body, bytes) else json.dumps(body),
                headers={"Authorization": f"Bearer {key}",
                         "Content-Type": "application/json"})
            assert fast == (response.status_code, await response.get_json()), (path, body)
            assert fast[0] in (400, 401, 403, 404)
        await stream.aclose()
    listed = await call(live, "GET", "/api/v1/tickets?tenant=acme", status=200)
    assert listed["items"] == []
