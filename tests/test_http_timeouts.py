"""Every phase of an HTTP exchange is bounded: an idle kept-alive connection, a
request head trickled on it, a body sent a byte a second. A long poll, which
waits for its answer, is not cut."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, Harness, make_config

HEAD = 4.0
BODY = 6.0
KEEP_ALIVE = 2.0


@pytest.fixture
def switchboard_config() -> Config:
    return make_config({"server": {"handshake_timeout": HEAD},
                        "http": {"body_timeout": BODY, "keep_alive_timeout": KEEP_ALIVE}})


class Raw:
    """One HTTP connection over an in-memory stream to the server."""

    def __init__(self, switchboard: Harness) -> None:
        self.stream, server_side = trio.testing.memory_stream_pair()
        switchboard.server.start_connection(server_side)
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> bytes:
        """One whole response (head and a Content-Length body)."""
        while b"\r\n\r\n" not in self.buffer:
            await self._read()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            await self._read()
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    async def _read(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("closed by the server")
        self.buffer += data

    async def closed_after(self) -> float:
        """Seconds (mock time) until the server closes the connection."""
        started = trio.current_time()
        with trio.fail_after(600):
            while await self.stream.receive_some(65536):
                pass
        return trio.current_time() - started


GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: switchboard.test\r\n\r\n"


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
        switchboard: Harness) -> None:
    client = Raw(switchboard)
    await client.send(GET_HEALTH)
    assert (await client.response()).startswith(b"HTTP/1.1 200")
    assert await client.closed_after() == pytest.approx(KEEP_ALIVE, abs=0.1)


async def test_a_json_route_tells_the_client_how_long_an_idle_connection_is_kept(
        switchboard: Harness) -> None:
    # (so that a client stops reusing it before the server closes it, instead
    # of sending a request just as it closes)
    client = Raw(switchboard)
    body = b'{"tenant": "t1", "room": "r", "event": "e", "data": 1}'
    await client.send(b"POST /api/v1/emit HTTP/1.1\r\nHost: switchboard.test\r\n"
                      b"Authorization: Bearer " + TEST_API_KEY.encode() + b"\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = (await client.response()).partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert head[0].startswith(b"http/1.1 202")
    assert b"connection: keep-alive" in head
    assert b"keep-alive: timeout=%d" % KEEP_ALIVE in head
    assert await client.closed_after() == pytest.approx(KEEP_ALIVE, abs=0.1)


async def test_a_kept_alive_connection_serves_requests_within_the_timeout(
        switchboard: Harness) -> None:
    client = Raw(switchboard)
    for _ in range(3):
        await client.send(GET_HEALTH)
        assert (await client.response()).startswith(b"HTTP/1.1 200")
        await trio.sleep(KEEP_ALIVE - 0.5)
    await client.send(GET_HEALTH)
    assert (await client.response()).startswith(b"HTTP/1.1 200")


async def test_a_second_head_trickled_on_a_kept_alive_connection_is_cut(
        switchboard: Harness) -> None:
    client = Raw(switchboard)
    await client.send(GET_HEALTH)
    await client.response()
    started = trio.current_time()
    with pytest.raises((EOFError, trio.BrokenResourceError)):
        for byte in GET_HEALTH[:-1]:
            await client.send(bytes([byte]))
            await trio.sleep(1)
            await client.stream.send_all(b"")
            if await _closed(client):
                raise EOFError
    # the first byte came within the keep-alive; the head then had HEAD seconds
    assert trio.current_time() - started <= 1 + HEAD + 1


async def _closed(client: Raw) -> bool:
    with trio.move_on_after(0.01):
        return await client.stream.receive_some(65536) == b""
    return False


async def polling_sid(switchboard: Harness) -> str:
    client = Raw(switchboard)
    await client.send(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\n\r\n")
    opened = await client.response()
    return opened.split(b'"sid":"')[1].split(b'"')[0].decode()


@pytest.mark.parametrize("route", ["notifications", "polling", "emit"])
async def test_a_body_sent_a_byte_a_second_is_cut_after_the_body_timeout(
        switchboard: Harness, route: str) -> None:
    """On a plugin route and the polling path (hypercorn), and on the publish
    fast path (the front door's own)."""
    path = {"notifications": "/api/v1/notifications", "emit": "/api/v1/emit"}.get(route) or (
        f"/socket.io/?EIO=4&transport=polling&sid={await polling_sid(switchboard)}")
    client = Raw(switchboard)
    await client.send(f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n"
                      f"Authorization: Bearer {TEST_API_KEY}\r\n\r\n".encode())
    started = trio.current_time()
    with pytest.raises((EOFError, trio.BrokenResourceError)):
        for _ in range(100):
            await client.send(b"x")
            await trio.sleep(1)
            if await _closed(client):
                raise EOFError
    assert trio.current_time() - started == pytest.approx(BODY, abs=1.1)


async def test_a_long_poll_waits_for_its_answer_past_every_timeout(
        switchboard: Harness) -> None:
    sid = await polling_sid(switchboard)
    await trio.sleep(0.5)
    client = Raw(switchboard)
    await client.send(f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                      "Host: a\r\n\r\n".encode())
    started = trio.current_time()
    poll = await client.response()  # answered by the first ping, after the interval
    assert poll.endswith(b"\r\n\r\n2")
    waited = trio.current_time() - started
    assert waited > BODY + HEAD + KEEP_ALIVE
    assert waited == pytest.approx(switchboard.config.heartbeat.interval - 0.5, abs=0.1)


async def test_an_app_that_raises_before_answering_gets_a_500_and_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    from switchboard.core.transport.exchange import timed_asgi

    async def broken(scope: object, receive: object, send: object) -> None:
        raise ValueError("broken before answering")

    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await timed_asgi(broken)({"type": "http", "method": "GET", "path": "/x", "state": {}},
                             receive, send)
    assert sent[0]["status"] == 500
    assert b"internal_error" in sent[1]["body"]  # type: ignore[operator]
    assert [r.getMessage() for r in caplog.records if r.exc_info] == [
        "GET /x failed: ValueError('broken before answering')"]


@pytest.mark.parametrize("request_head", [
    b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET /health HTTP/1.0\r\nHost: a\r\n\r\n",
])
async def test_a_connection_the_client_asked_to_close_is_closed_after_its_answer(
        switchboard: Harness, request_head: bytes) -> None:
    """At once: not after a grace for writing the answer out (the answer is out
    when the connection closes), which kept it open a second more."""
    client = Raw(switchboard)
    await client.send(request_head)
    assert b" 200 " in (await client.response()).split(b"\r\n")[0]
    assert await client.closed_after() == 0.0  # (mock time: no deadline passed)


async def test_a_head_with_bare_lf_line_endings_is_answered_400(switchboard: Harness) -> None:
    client = Raw(switchboard)
    await client.send(b"GET /health HTTP/1.1\nHost: a\n\n")
    assert (await client.response()).startswith(b"HTTP/1.1 400 ")


async def test_a_request_answered_before_its_body_came_closes_the_connection(
        switchboard: Harness) -> None:
    """A route may refuse a request without reading its body (no API key): the
    answer says ``Connection: close`` and the connection ends with it, where a
    kept-alive client would otherwise wait for ever for its next answer."""
    client = Raw(switchboard)
    await client.send(b"POST /api/v1/notifications HTTP/1.1\r\nHost: switchboard.test\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n")
    response = await client.response()
    assert response.startswith(b"HTTP/1.1 401")
    assert b"\r\nconnection: close\r\n" in response.lower()
    await client.send(b"{}" + GET_HEALTH)
    assert await client.closed_after() <= 1.0
    # a new connection is served as usual
    again = Raw(switchboard)
    await again.send(GET_HEALTH)
    assert (await again.response()).startswith(b"HTTP/1.1 200")
