"""The front door: one port for WebSockets and HTTP.

Every accepted connection starts here. The request head is read; a WebSocket
upgrade to the WebSocket path goes to the fast path in :mod:`.ws` (our own
frame writer with write coalescing), everything else to hypercorn, which
serves the quart-trio HTTP app on the same bytes. See
docs/architecture.md for the measurements behind this split.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

log = logging.getLogger("switchboard.http")
MAX_HEAD = 16384
#: A method or header name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_VERSIONS = ("HTTP/1.0", "HTTP/1.1")


class HeadError(Exception):
    """A request head that cannot be served; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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

    @property
    def target(self) -> str:
        """The request target as sent (path and query)."""
        return self.raw[:self.raw.index(b"\r\n")].split(b" ")[1].decode("latin-1")

    def header_pairs(self) -> list[tuple[str, str]]:
        """Every header line as ``(lower-case name, value)``, repeated ones
        included (``headers`` keeps the last of a name)."""
        lines = self.raw[:self.raw.index(b"\r\n\r\n")].decode("latin-1").split("\r\n")[1:]
        pairs = []
        for line in lines:
            name, _, value = line.partition(":")
            pairs.append((name.lower(), value.strip(" \t")))
        return pairs

    @property
    def content_length(self) -> int | None:
        """The body's length, ``None`` without a Content-Length (checked by
        :func:`parse_head`: ASCII digits only)."""
        value = self.headers.get("content-length")
        return None if value is None else int(value)


async def read_head(stream: trio.abc.Stream, buffered: bytes = b"") -> RequestHead:
    """Read up to the end of the request head (after ``buffered``, bytes already
    read); what was read past it stays in ``raw``. Raises :class:`HeadError`
    for a head that is too large or malformed, and when the peer closes
    before the head is complete (status 0: nothing to answer)."""
    buf = bytearray(buffered)
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise HeadError("request head too large", 431)
        if b"\n\n" in buf:
            raise HeadError("request head with bare LF line endings (CRLF required)")
        chunk = await stream.receive_some(MAX_HEAD)
        if not chunk:
            raise HeadError("connection closed before the request head", 0)
        buf += chunk
    return parse_head(bytes(buf))


def parse_head(raw: bytes) -> RequestHead:
    """Parse an HTTP/1.x request head (sans-IO); ``raw`` holds it up to and
    past its blank line. Raises :class:`HeadError` (400) for anything that is
    not a well-formed request this server could answer, so that no malformed
    head reaches a handler or the HTTP framework."""
    end = raw.index(b"\r\n\r\n")
    if end > MAX_HEAD:
        raise HeadError("request head too large", 431)
    lines = raw[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HeadError("malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HeadError("malformed method")
    if version not in _VERSIONS:
        raise HeadError("unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HeadError("malformed header line")
        key, value = name.lower(), value.strip(" \t")
        if any(c in value for c in "\r\n\0"):
            raise HeadError(f"malformed {name} header")
        if key in headers and key in ("content-length", "host", "transfer-encoding"):
            if key != "content-length" or headers[key] != value:
                raise HeadError(f"more than one {name} header")
        headers[key] = value
    length = headers.get("content-length")
    if length is not None and not (length.isascii() and length.isdigit() and len(length) < 19):
        raise HeadError("malformed Content-Length")
    if length is not None and "transfer-encoding" in headers:
        raise HeadError("both Content-Length and Transfer-Encoding")
    host = headers.get("host")
    if host is None and version == "HTTP/1.1":
        raise HeadError("missing Host header")
    if host is not None and not valid_host(host):
        raise HeadError("malformed Host header")
    return RequestHead(method, target_path(target), headers, raw, version)


def target_path(target: str) -> str:
    """The path of a request target (origin form ``/p?q``, absolute form
    ``http://h/p?q``); ``""`` for the other forms. :class:`HeadError` when it
    is malformed."""
    if target.startswith("/"):
        return target.split("?", 1)[0].split("#", 1)[0]
    if target == "*":
        return ""
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018  (parses the port: raises ValueError when it is bad)
    except ValueError:
        raise HeadError("malformed request target") from None
    if parts.scheme.lower() not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise HeadError("malformed request target")
    return parts.path or "/"


def valid_host(value: str) -> bool:
    """Is ``value`` a Host header this server can answer (a DNS name, IPv4 or
    bracketed IPv6 address, with an optional port)?"""
    if value.startswith("["):
        address, sep, rest = value[1:].partition("]")
        if not sep or (rest and not (rest[0] == ":" and _PORT.fullmatch(rest[1:]))):
            return False
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return False
        return True
    name, sep, port = value.partition(":")
    if sep and not _PORT.fullmatch(port):
        return False
    return bool(_HOST_NAME.fullmatch(name)) and len(name) <= 253


def error_response(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer with a JSON error body that closes the connection."""
    body = json.dumps({"code": code, "message": message}).encode()
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def json_response(status: int, body: Mapping[str, Any],
                  headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP/1.1 answer with ``body`` as JSON that closes the connection
    (a refused WebSocket handshake: status and ``{code, message}``)."""
    data = json.dumps(body).encode()
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n{extra}connection: close\r\n\r\n").encode() + data


#: RFC 6455's key suffix for ``Sec-WebSocket-Accept``.
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class UpgradeRefused(HeadError):
    """A WebSocket upgrade request that cannot be accepted (400, or 426 for a
    version other than 13); ``answer`` is the complete HTTP answer to send."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)
        headers = [("sec-websocket-version", "13")] if status == 426 else []
        self.answer = json_response(status, {"code": "bad_request", "message": message},
                                    headers)


def websocket_accept(head: RequestHead) -> bytes:
    """The ``101 Switching Protocols`` answer to the WebSocket upgrade request
    ``head`` (RFC 6455 4.2; no extension or subprotocol is taken), checked as
    wsproto checks one; :class:`UpgradeRefused` when it cannot be accepted.
    Built here from the head already parsed: no second parse per handshake."""
    headers = head.headers
    if head.method != "GET" or head.version != "HTTP/1.1":
        raise UpgradeRefused("a WebSocket upgrade is a GET request in HTTP/1.1")
    try:
        head.target.encode("ascii")
        tokens = [t.strip().lower() for t in headers.get("connection", "").split(",")]
        for name in ("upgrade", "sec-websocket-key", "sec-websocket-version",
                     "sec-websocket-extensions", "sec-websocket-protocol"):
            headers.get(name, "").encode("ascii")
    except UnicodeEncodeError:
        raise UpgradeRefused("malformed WebSocket handshake (not ASCII)") from None
    if "upgrade" not in tokens:
        raise UpgradeRefused("missing header, 'Connection: Upgrade'")
    version = headers.get("sec-websocket-version")
    if version != "13":
        raise UpgradeRefused("missing header, 'Sec-WebSocket-Version: 13'",
                             426 if version else 400)
    key = headers.get("sec-websocket-key")
    if not key:
        raise UpgradeRefused("missing header, 'Sec-WebSocket-Key'")
    if headers.get("upgrade", "").lower() != "websocket":
        raise UpgradeRefused("missing header, 'Upgrade: websocket'")
    if "host" not in headers:
        raise UpgradeRefused("missing header, 'Host'")
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _WS_GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
            b"connection: Upgrade\r\nsec-websocket-accept: " + accept + b"\r\n\r\n")


async def refuse(stream: trio.abc.Stream, error: HeadError) -> None:
    """Answer a bad request head (if there is anything to answer) and close."""
    log.info("bad request head: %s", error)
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        if error.status:
            code = {404: "not_found", 431: "head_too_large"}.get(error.status, "bad_request")
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(error_response(error.status, code, str(error)))
        await trio.aclose_forcefully(stream)


class _LoopbackSocket:
    """Address source for hypercorn when the stream is not a socket (tests)."""

    family = socket.AF_INET

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 0)


class PrefixedStream(trio.abc.Stream):
    """A stream whose first bytes were already read (the request head)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes, *,
                 on_data: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self._prefix = prefix
        #: Called whenever bytes arrive from the peer.
        self._on_data = on_data
        self._send_lock = trio.Lock()
        self.socket = getattr(stream, "socket", None) or _LoopbackSocket()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        data = bytes(await self._stream.receive_some(max_bytes))
        if data and self._on_data is not None:
            self._on_data()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._stream, "send_eof", None)
        if send_eof is None:
            raise AttributeError("send_eof")
        # hypercorn may close (send_eof) while one of its tasks is still sending:
        # one at a time, or trio raises BusyResourceError in one of them. It
        # closes from the app's task, which the app's end cancels just then
        # (the request is over): shielded, the close goes on to the socket's
        # close (else the connection stayed open until the exchange's deadline).
        with trio.CancelScope(shield=True):
            async with self._send_lock:
                await send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


#: Serves a connection whose head has been read; what it returns, when not
#: None, is the rest of its work, awaited by the caller in its place.
Handler = Callable[[trio.abc.Stream, RequestHead], Awaitable[Any]]


async def route(stream: trio.abc.Stream, *, timeout: float, ws_paths: dict[str, Handler],
                http: Handler, http_paths: dict[tuple[str, str], Handler] | None = None
                ) -> tuple[Awaitable[Any] | None, bool]:
    """Read the head of one connection; return the right server's work on it
    for the caller to await (None when the connection was refused here), and
    whether that work starts with a WebSocket handshake (the upgrade's
    handler, not ``http``, then hands back the rest of the connection's work)."""
    try:
        with trio.fail_after(timeout):
            head = await read_head(stream)
    except HeadError as exc:
        await refuse(stream, exc)
        return None, False
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
        await close_stream(stream)
        return None, False
    if head.is_websocket:
        handler = ws_paths.get(head.path)
        if handler is None:  # (hypercorn has nothing to upgrade either)
            await refuse(stream, HeadError(f"no WebSocket endpoint at {head.path}", 404))
            return None, False
        return handler(stream, head), handler != http
    handler = (http_paths or {}).get((head.method, head.path))
    return (handler or http)(stream, head), False


#: ``tcpi_state`` (the first byte of Linux's ``struct tcp_info``) once the peer
#: has sent its FIN: it closed (a client that gave up waiting).
_TCP_CLOSE_WAIT = 8


def peer_gone(stream: trio.abc.Stream) -> bool:
    """Whether the client of a TCP stream has closed its side already (Linux;
    False where that cannot be told): one that gave up while it waited for
    its turn is not worth a handshake."""
    sock = getattr(stream, "socket", None) if isinstance(stream, trio.SocketStream) else None
    tcp_info = getattr(socket, "TCP_INFO", None)
    if sock is None or tcp_info is None:
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)
    except OSError:
        return False
    return bool(state) and state[0] == _TCP_CLOSE_WAIT


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close ``stream`` now, whatever it is doing (a socket: at once, without
    waiting; another stream as ``trio.aclose_forcefully`` does, at most 1 s)."""
    sock = getattr(stream, "socket", None) if isinstance(stream, trio.SocketStream) else None
    if sock is not None:
        sock.close()  # (again, if it is closed already: nothing happens)
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await trio.aclose_forcefully(stream)
