"""The plain WebSocket transport: JSON envelopes over RFC 6455.

wsproto does the handshake and parses client frames; server frames are
encoded by :mod:`..protocol.wsframe` and queued as bytes in the connection's
:class:`~..outbox.Outbox`, which the writer task drains with one write per
wake-up. Each connection is a small task tree under its own nursery: the
reader (this coroutine), the writer and the heartbeat.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from ..auth import AuthError
from ..errors import ClientError, CloseCode
from ..outbox import Outbox
from ..profiles import Profile
from ..protocol import envelope
from ..protocol.wsframe import OP_PING, close_frame, encode_frame, ping_frame, text_frame
from ..session import Session

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("switchboard.ws")
OP_PONG = 0xA
RECEIVE_SIZE = 65536
#: How long to wait for the peer's close frame after sending ours.
CLOSE_WAIT = 2.0


class EnvelopeCodec:
    """Encodes server events as WebSocket text frames of JSON envelopes."""

    __slots__ = ("profile",)

    def __init__(self, profile: Profile | None = None) -> None:
        self.profile = profile

    def encode_event(self, event: str, data: Any, offset: str | None = None) -> bytes:
        if self.profile is not None:
            translated = self.profile.translate_out(event, data)
            if translated is None:
                return b""
            event, data = translated
        return text_frame(envelope.encode_event(event, data))

    def encode_raw(self, event: str, data: Any) -> bytes:
        return text_frame(envelope.encode_event(event, data))


def bearer_token(headers: list[tuple[bytes, bytes]], target: str) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    tokens = parse_qs(urlsplit(target).query).get("token")
    return tokens[0] if tokens else None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def reject_bytes(ws: WSConnection, status: int, error: dict[str, Any]) -> bytes:
    """An HTTP answer refusing a WebSocket handshake with a JSON body."""
    body = json.dumps(error).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    return ws.send(RejectConnection(status_code=status, headers=headers, has_body=True)) + \
        ws.send(RejectData(data=body))


class WebSocketConnection:
    """One plain-WebSocket client; implements the core's ``Transport``."""

    protocol = "ws"

    def __init__(self, app: App, stream: trio.abc.Stream, ws: Connection) -> None:
        self.app = app
        self.stream = stream
        self.ws = ws
        self.outbox = Outbox(app.config.server.outbox_max_bytes)
        self.session: Session | None = None
        self.close_reason: str | None = None
        self._close_sent = False
        self._peer_closed = trio.Event()
        self._alive = True
        self._wake_heartbeat: trio.CancelScope | None = None
        #: Once closing, what is left (and the close frame) must be written by
        #: then; a peer that does not read is cut instead of blocking forever.
        self._write_scope = trio.CancelScope()
        self._calls: dict[str, tuple[trio.Event, list[Any]]] = {}
        self._next_call = 0

    # -- Transport ---------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if not self.outbox.put(frame) and not self._close_sent:
            self.app.metrics.slow_consumers.inc()
            log.warning("slow consumer %s: %d bytes queued, disconnecting",
                        self.session.id if self.session else "?", self.outbox.size)
            self.close_reason = "slow_consumer"
            self._close_sent = True
            self.outbox.put_last(close_frame(CloseCode.SLOW_CONSUMER, "slow consumer"))
            self._write_scope.deadline = trio.current_time() + CLOSE_WAIT

    def close(self, code: CloseCode, reason: str) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        if self.close_reason is None:
            self.close_reason = _REASONS.get(code, reason)
        self.outbox.put(close_frame(code, reason))
        self.outbox.finish()
        self._write_scope.deadline = trio.current_time() + CLOSE_WAIT

    async def call(self, event: str, data: Any, *, timeout: float) -> Any:
        """Send ``event`` with an id ``s<n>``; wait for the client's ``ack`` of it."""
        self._next_call += 1
        ident = f"s{self._next_call}"
        done = trio.Event()
        result: list[Any] = []
        self._calls[ident] = (done, result)
        try:
            self.send(text_frame(envelope.encode_request(event, data, ident)))
            with trio.fail_after(timeout):
                await done.wait()
        finally:
            self._calls.pop(ident, None)
        return result[0]

    def identity_changed(self) -> None:
        """Re-arm the token-expiry timer after a re-authentication."""
        if self._wake_heartbeat is not None:
            self._wake_heartbeat.cancel()

    # -- the task tree -----------------------------------------------------

    async def run(self, session: Session) -> None:
        self.session = session
        cfg = self.app.config
        ident = session.identity
        self.outbox.put(text_frame(envelope.encode_event("session", {
            "sid": session.id,
            "heartbeat_interval": cfg.heartbeat.interval,
            "heartbeat_timeout": cfg.heartbeat.timeout,
            "user_id": ident.user_id,
            "tenant_id": ident.tenant_id,
            "role": ident.role,
            "expires_at": ident.expires_at,
        })))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                nursery.start_soon(self._heartbeat)
                await self.app.open_session(session)
                await self._reader()
                # The peer is gone or has closed: let the writer flush, then stop.
                self.close(CloseCode.GOING_AWAY, "closing")
        finally:
            await self.app.close_session(session, self.close_reason or "client")
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()

    async def _writer(self, scope: trio.CancelScope) -> None:
        try:
            with self._write_scope:
                while data := await self.outbox.take():
                    await self.stream.send_all(data)
                    del data  # do not keep the last write (a whole burst) while idle
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close_reason = self.close_reason or "client"
        else:
            if self._write_scope.cancelled_caught:
                log.info("%s does not read: connection cut",
                         self.session.id if self.session else "?")
                scope.cancel()
                return
            with trio.move_on_after(CLOSE_WAIT):
                await self._peer_closed.wait()
        scope.cancel()

    async def _heartbeat(self) -> None:
        hb = self.app.config.heartbeat
        assert self.session is not None
        next_ping = trio.current_time() + hb.interval
        pong_deadline = float("inf")
        while True:
            expiry = self.app.expiry_deadline(self.session.identity)
            with trio.CancelScope(deadline=min(next_ping, pong_deadline, expiry)) as wake:
                self._wake_heartbeat = wake
                await trio.sleep_forever()
            now = trio.current_time()
            if now >= self.app.expiry_deadline(self.session.identity):
                self.close_reason = "token_expired"
                self.close(CloseCode.UNAUTHORIZED, "token expired")
                return
            if now >= pong_deadline:
                if not self._alive:
                    log.info("heartbeat timeout %s", self.session.id)
                    self.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                    return
                pong_deadline = float("inf")
            if now >= next_ping:
                self._alive = False
                self.outbox.put(ping_frame(struct.pack("!d", time.time())))
                next_ping = now + hb.interval
                pong_deadline = now + hb.timeout

    async def _reader(self) -> None:
        max_payload = self.app.config.server.max_payload
        parts: list[str] = []
        size = 0
        while True:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._peer_closed.set()
                return
            self._alive = True
            try:
                self.ws.receive_data(bytes(data))
                events = list(self.ws.events())
            except RemoteProtocolError as exc:
                self.close(CloseCode.PROTOCOL_ERROR, str(exc)[:100])
                return
            for event in events:
                if isinstance(event, TextMessage):
                    size += len(event.data)
                    if size > max_payload:
                        self._error(ClientError("payload_too_large",
                                                f"message over {max_payload} bytes"))
                        self.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                        return
                    parts.append(event.data)
                    if event.message_finished:
                        text = "".join(parts)
                        parts, size = [], 0
                        await self._handle_text(text)
                elif isinstance(event, BytesMessage):
                    self._error(ClientError("unsupported_data", "binary frames are not accepted"))
                    self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
                    return
                elif isinstance(event, Ping):
                    self.outbox.put(encode_frame(bytes(event.payload), OP_PONG))
                elif isinstance(event, Pong):
                    pass
                elif isinstance(event, CloseConnection):
                    self._peer_closed.set()
                    if not self._close_sent:
                        self.close_reason = self.close_reason or "client"
                        self._close_sent = True
                        self.outbox.put(close_frame(event.code or 1000, ""))
                        self.outbox.finish()
                    return

    async def _handle_text(self, text: str) -> None:
        assert self.session is not None
        try:
            frame = envelope.decode(text)
        except ClientError as exc:
            self._error(exc)
            self._charge("invalid_frame")
            return
        if frame.type == "ping":
            if self._charge("ping", frame.id):
                self.outbox.put(text_frame(envelope.encode_event("pong", frame.data)))
            return
        if frame.type == "ack" and isinstance(frame.id, str) and frame.id in self._calls:
            done, result = self._calls.pop(frame.id)
            result.append(frame.data)
            done.set()
            return
        try:
            result = await self.app.dispatch(self.session, frame.type, frame.data)
        except ClientError as exc:
            self._error(exc, frame.id)
            return
        if frame.type == "auth":
            self.identity_changed()
        if frame.id is not None:
            self.outbox.put(text_frame(envelope.encode_ack(frame.id, result)))

    def _charge(self, name: str, ident: int | str | None = None) -> bool:
        """Rate-limit frames that are not dispatched (pings, malformed frames)."""
        assert self.session is not None
        try:
            self.app.check_rate(self.session, name)
        except ClientError as exc:
            self._error(exc, ident)
            return False
        return True

    def _error(self, error: ClientError, ident: int | str | None = None) -> None:
        self.app.metrics.client_errors.labels(error.code).inc()
        log.info("client error %s on %s: %s", error.code,
                 self.session.id if self.session else "?", error.message)
        self.send(text_frame(envelope.encode_error(error, ident)))


_REASONS = {
    CloseCode.GOING_AWAY: "shutdown",
    CloseCode.UNAUTHORIZED: "token_expired",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat_timeout",
    CloseCode.RATE_LIMITED: "rate_limited",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
    CloseCode.PROTOCOL_ERROR: "protocol_error",
    CloseCode.UNSUPPORTED_DATA: "unsupported_data",
}


async def serve_websocket(app: App, stream: trio.abc.Stream, head: bytes,
                          connections: set[WebSocketConnection], codec: EnvelopeCodec) -> None:
    """Finish the handshake of an upgrade request whose bytes are ``head``."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(head)
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
    except RemoteProtocolError as exc:
        app.metrics.handshake_rejects.labels("bad_request").inc()
        await send_quietly(stream, (exc.event_hint and ws.send(exc.event_hint)) or b"")
        return
    if request is None:
        return
    origin = _header(request.extra_headers, b"origin")
    allowed = app.config.server.allowed_origins
    if allowed and origin is not None and origin not in allowed:
        app.metrics.handshake_rejects.labels("origin").inc()
        await send_quietly(stream, reject_bytes(ws, 403, {
            "code": "forbidden_origin", "message": f"origin {origin} is not allowed"}))
        return
    try:
        identity = app.authenticate(bearer_token(request.extra_headers, request.target))
    except AuthError as exc:
        app.metrics.handshake_rejects.labels("unauthorized").inc()
        log.info("websocket handshake refused: %s", exc)
        await send_quietly(stream, reject_bytes(ws, 401, {"code": "unauthorized",
                                                          "message": str(exc)}))
        return
    if not await send_quietly(stream, ws.send(AcceptConnection())):
        return
    # Keep only wsproto's frame-level connection: the handshake's state (an h11
    # connection, the request and its headers) would stay alive with the socket.
    assert ws.connection is not None
    connection = WebSocketConnection(app, stream, ws.connection)
    del ws, request
    session = app.new_session(identity, connection, codec, profile=app.config.server.ws_profile)
    connections.add(connection)
    try:
        await connection.run(session)
    finally:
        connections.discard(connection)


async def send_quietly(stream: trio.abc.Stream, data: bytes) -> bool:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    if not data.startswith(b"HTTP/1.1 101"):
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()
    return True


__all__ = ["OP_PING", "EnvelopeCodec", "WebSocketConnection", "serve_websocket"]
