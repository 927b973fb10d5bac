"""The front door: one port for WebSockets and HTTP.

Every accepted connection starts here. The request head is read; a WebSocket
upgrade to the WebSocket path goes to the fast path in :mod:`.ws` (our own
frame writer with write coalescing), everything else to hypercorn, which
serves the quart-trio HTTP app on the same bytes. See the README's
architecture section for the measurements behind this split.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import attrs
import trio

MAX_HEAD = 16384


class HeadError(Exception):
    pass


@attrs.frozen
class RequestHead:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    version: str = "HTTP/1.1"

    @property
    def body_start(self) -> int:
        """Offset in ``raw`` of the first byte after the head."""
        return self.raw.index(b"\r\n\r\n") + 4

    @property
    def is_websocket(self) -> bool:
        return (self.headers.get("upgrade", "").lower() == "websocket"
                and "upgrade" in self.headers.get("connection", "").lower())


async def read_head(stream: trio.abc.Stream, buffered: bytes = b"") -> RequestHead:
    """Read up to the end of the request head (after ``buffered``, bytes already
    read); what was read past it stays in ``raw``."""
    buf = bytearray(buffered)
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise HeadError("request head too large")
        chunk = await stream.receive_some(MAX_HEAD)
        if not chunk:
            raise HeadError("connection closed before the request head")
        buf += chunk
    head = bytes(buf)
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HeadError("malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return RequestHead(parts[0], urlsplit(parts[1]).path, headers, head, parts[2])


class _LoopbackSocket:
    """Address source for hypercorn when the stream is not a socket (tests)."""

    family = socket.AF_INET

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 0)


class PrefixedStream(trio.abc.Stream):
    """A stream whose first bytes were already read (the request head)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.socket = getattr(stream, "socket", None) or _LoopbackSocket()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._stream, "send_eof", None)
        if send_eof is None:
            raise AttributeError("send_eof")
        await send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


Handler = Callable[[trio.abc.Stream, RequestHead], Awaitable[None]]


async def route(stream: trio.abc.Stream, *, timeout: float, ws_paths: dict[str, Handler],
                http: Handler, http_paths: dict[tuple[str, str], Handler] | None = None) -> None:
    """Read the head of one connection and hand it to the right server."""
    try:
        with trio.fail_after(timeout):
            head = await read_head(stream)
    except (HeadError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()
        return
    if head.is_websocket:
        handler = ws_paths.get(head.path)
    else:
        handler = (http_paths or {}).get((head.method, head.path))
    serving = (handler or http)(stream, head)
    del head  # a long-lived connection must not keep its request head alive here
    await serving
