"""The plain WebSocket transport: JSON envelopes over RFC 6455.

wsproto does the handshake; :class:`~.wschannel.WsChannel` parses client
frames and writes server frames (encoded once by :mod:`..protocol.wsframe`)
from the connection's outbox, one write per wake-up. An idle connection is
one task, its reader, in a nursery of its own where a writer starts when
frames are queued and the handler of its events with the first event; its
heartbeat is a deadline on the server's shared timers (:mod:`..timers`).
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..auth import AuthError, Identity
from ..errors import ClientError, CloseCode
from ..events import Deferred
from ..handshake import Handshake, from_request, peer_address
from ..origins import origin_allowed
from ..profiles import ProfiledCodec
from ..protocol import envelope
from ..protocol.wsframe import OP_PING, ping_frame, text_frame
from ..session import Session
from ..supervise import log_failure
from ..timers import Timer
from .answers import OrderedAnswers
from .draining import Draining
from .front import (
    RequestHead,
    UpgradeRefused,
    close_stream,
    error_response,
    json_response,
    websocket_accept,
)
from .inbox import Inbox
from .wschannel import MessageTooBig, WsChannel

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("switchboard.ws")
#: Queued behind a connection's events when the server stops (see ``.draining``).
_SHUTDOWN = envelope.Frame("")


class EnvelopeCodec(ProfiledCodec):
    """Encodes server events as WebSocket text frames of JSON envelopes."""

    __slots__ = ()
    protocol_name = "plain WebSocket"

    def encode_raw(self, event: str, data: Any, offset: str | None = None) -> bytes:
        return text_frame(envelope.encode_event(event, data))


class WebSocketConnection(Draining):
    """One plain-WebSocket client; implements the core's ``Transport``."""

    protocol = "ws"
    __slots__ = (
        "_answers", "_calls", "_draining", "_expiry", "_heartbeat", "_inbox", "_next_call",
        "_next_ping", "_nursery", "_pong_deadline", "app", "channel", "close_reason", "session",
    )

    def __init__(self, app: App, channel: WsChannel) -> None:
        self.app = app
        self.channel = channel
        self.session: Session | None = None
        self.close_reason: str | None = None
        #: The next heartbeat on the server's timers (None once the connection closes).
        self._heartbeat: Timer | None = None
        self._next_ping = math.inf
        self._pong_deadline = math.inf
        #: When the session's token expires (Trio's clock), kept as it is renewed.
        self._expiry = math.inf
        #: Server-to-client calls waiting for their ack (made with the first).
        self._calls: dict[str, tuple[trio.Event, list[Any]]] | None = None
        self._next_call = 0
        self._nursery: trio.Nursery | None = None
        self._inbox: Inbox[envelope.Frame] | None = None
        self._answers: OrderedAnswers | None = None
        #: The server is stopping: new events are refused, answers still go out.
        self._draining = False

    # -- Transport ---------------------------------------------------------

    def send(self, frame: bytes) -> None:
        channel = self.channel
        if not channel.send(frame) and not channel.closing:
            self.app.metrics.slow_consumers.inc()
            log.warning("slow consumer %s: %d bytes queued, disconnecting",
                        self.session.id if self.session else "?", channel.outbox.size)
            self.close_reason = "slow_consumer"
            channel.close(CloseCode.SLOW_CONSUMER, "slow consumer", drop_queued=True)

    def close(self, code: CloseCode, reason: str) -> None:
        if self.channel.closing:
            return
        if self.close_reason is None:
            self.close_reason = _REASONS.get(code, reason)
        self.channel.close(code, reason)

    # -- shutdown (see .draining) -----------------------------------------

    def _shutdown_inbox(self) -> tuple[Inbox[envelope.Frame] | None, Any]:
        return self._inbox, _SHUTDOWN

    def _start_draining(self) -> bool:
        if self._draining or self.channel.closing:
            return False
        self._draining = True
        return True

    def _close_for_shutdown(self) -> None:
        if self.close_reason is None:
            self.close_reason = "shutdown"
        self.channel.close_now(CloseCode.GOING_AWAY, "server shutting down")

    async def call(self, event: str, data: Any, *, timeout: float) -> Any:
        """Send ``event`` with an id ``s<n>``; wait for the client's ``ack`` of it."""
        self._next_call += 1
        ident = f"s{self._next_call}"
        done = trio.Event()
        result: list[Any] = []
        if self._calls is None:
            self._calls = {}
        calls = self._calls
        calls[ident] = (done, result)
        try:
            self.send(text_frame(envelope.encode_request(event, data, ident)))
            with trio.fail_after(timeout):
                await done.wait()
        finally:
            calls.pop(ident, None)
        return result[0]

    def identity_changed(self) -> None:
        """Re-arm the token-expiry timer after a re-authentication."""
        if self.session is not None:
            self._expiry = self.app.expiry_deadline(self.session.identity)
        if self._heartbeat is not None:
            self._arm_heartbeat()

    # -- the task tree -----------------------------------------------------

    async def run(self, session: Session, connections: set[WebSocketConnection] | None = None,
                  closed: Callable[[], None] | None = None) -> None:
        """Serve the accepted connection as ``session`` until it is over (in
        ``connections`` meanwhile; ``closed()`` called at the end)."""
        self.session = session
        if connections is not None:
            connections.add(self)
        cfg = self.app.config
        ident = session.identity
        self.channel.send(text_frame(envelope.encode_event("session", {
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
                self._nursery = nursery
                self.channel.attach(nursery)
                hb = cfg.heartbeat
                self._next_ping = trio.current_time() + hb.interval
                self._expiry = self.app.expiry_deadline(session.identity)
                self._arm_heartbeat()
                await self.app.open_session(session)
                if self.app.shutting_down:  # (the stop began while it was opening)
                    self.shut_down()
                try:  # (read here: one coroutine frame less per connection)
                    await self.channel.read(self._on_message)
                except MessageTooBig as exc:
                    self._error(ClientError("payload_too_large", str(exc)))
                    self.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                # The peer is gone or has closed: let the writer flush, then stop.
                self.close(CloseCode.GOING_AWAY, "closing")
        except Exception as exc:
            # A bug in this connection's reader, handler, writer or heartbeat:
            # it ends this connection (1011), never the server.
            self.close_reason = "internal_error"
            self.app.metrics.connection_failures.inc()
            log_failure(f"websocket session {session.id}", exc)
            await self.channel.abort(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.app.timers.cancel(self._heartbeat)
            self._heartbeat = None
            if self.channel.end_reason == "not_reading":
                log.info("%s does not read: connection cut", session.id)
            reason = self.close_reason or _peer_reason(self.channel.end_reason)
            try:
                await self.app.close_session(session, reason)
                await close_stream(self.channel.stream)
            finally:
                if connections is not None:
                    connections.discard(self)
                if closed is not None:
                    closed()
                # the references that make cycles with this connection (its
                # session's, its inbox's handler): without them what it held
                # goes with its last reference, instead of waiting for the
                # cyclic collector's rare passes over long-lived objects
                self.session = None
                self._inbox = None

    def _arm_heartbeat(self) -> None:
        """(Re)schedule the heartbeat at the next ping, pong deadline or token
        expiry, whichever comes first (on the server's shared timers)."""
        assert self.session is not None
        timers = self.app.timers
        timers.cancel(self._heartbeat)
        self._heartbeat = None
        if self.channel.closing:
            return
        deadline = min(self._next_ping, self._pong_deadline, self._expiry)
        if deadline < math.inf:
            self._heartbeat = timers.at(deadline, self)

    def due(self) -> None:
        """A heartbeat deadline: expire the token, time out a silent peer, ping."""
        self._heartbeat = None
        session, channel = self.session, self.channel
        if session is None or channel.closing:
            return
        now = trio.current_time()
        if now >= self._expiry:
            self.close_reason = "token_expired"
            self.close(CloseCode.UNAUTHORIZED, "token expired")
            return
        if now >= self._pong_deadline:
            if not channel.alive:
                log.info("heartbeat timeout %s", session.id)
                self.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                return
            self._pong_deadline = math.inf
        if now >= self._next_ping:
            hb = self.app.config.heartbeat
            channel.alive = False
            channel.send(ping_frame(struct.pack("!d", time.time())))
            self._next_ping = now + hb.interval
            self._pong_deadline = now + hb.timeout
        self._arm_heartbeat()

    async def _on_message(self, message: str | bytes) -> bool:
        """One client message; False to stop reading."""
        if isinstance(message, bytes):
            self._error(ClientError("unsupported_data", "binary frames are not accepted"))
            self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
            return False
        await self._handle_text(message)
        return True

    async def _handle_text(self, text: str) -> None:
        assert self.session is not None
        try:
            frame = envelope.decode(text)
        except envelope.FrameError as exc:
            self._error(exc, exc.id)
            self._charge("invalid_frame", exc.id)
            return
        if frame.type == "ping":
            if self._charge("ping", frame.id):
                self.channel.send(text_frame(envelope.encode_pong(frame.data, frame.id)))
            return
        if (frame.type == "ack" and isinstance(frame.id, str) and self._calls
                and frame.id in self._calls):
            done, result = self._calls.pop(frame.id)
            result.append(frame.data)
            done.set()
            return
        if self._draining:
            self._error(ClientError("shutting_down", "the server is shutting down; "
                                    "reconnect and send it again", retry_after=1), frame.id)
            return
        if self._inbox is None:
            # Handlers run in a task of their own while there are events (see
            # .inbox), so one that waits for this client's answer
            # (``session.call``) does not block the reading of that answer.
            assert self._nursery is not None
            self._inbox = Inbox(self._nursery, self._handle_frame)
        await self._inbox.put(frame)

    async def _handle_frame(self, frame: envelope.Frame) -> bool:
        """Handle one event of the inbox; False once the server's stop is reached."""
        if frame is _SHUTDOWN:
            await self.closing_after_answers()
            return False
        await self._dispatch(frame)
        return True

    async def _dispatch(self, frame: envelope.Frame) -> None:
        assert self.session is not None
        try:
            result = await self.app.dispatch(self.session, frame.type, frame.data)
        except ClientError as exc:
            self._error(exc, frame.id)
            return
        if frame.type == "auth":
            self.identity_changed()
        ident = frame.id
        if self._answers is None:
            if not isinstance(result, Deferred):  # (nothing deferred before it: out now)
                if ident is not None:
                    self.send(text_frame(envelope.encode_ack(ident, result)))
                return
            # made with the first deferred answer: a connection that never has
            # one does not keep the queue
            assert self._nursery is not None
            self._answers = OrderedAnswers(self._nursery)
        await self._answers.answer(
            result,
            lambda value: None if ident is None else self.send(
                text_frame(envelope.encode_ack(ident, value))),
            lambda error: self._error(error, ident))

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
        self.app.metrics.client_error(error.code)
        log.info("client error %s on %s: %s", error.code,
                 self.session.id if self.session else "?", error.message)
        self.send(text_frame(envelope.encode_error(error, ident)))


def _peer_reason(end_reason: str | None) -> str:
    """The session's close reason when the peer (not the server) ended it."""
    return "client" if end_reason in (None, "client", "transport_close", "transport_error") \
        else end_reason


_REASONS = {
    CloseCode.GOING_AWAY: "shutdown",
    CloseCode.UNAUTHORIZED: "token_expired",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat_timeout",
    CloseCode.RATE_LIMITED: "rate_limited",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
    CloseCode.PROTOCOL_ERROR: "protocol_error",
    CloseCode.UNSUPPORTED_DATA: "unsupported_data",
    CloseCode.INTERNAL_ERROR: "internal_error",
}


async def serve_websocket(app: App, stream: trio.abc.Stream, head: RequestHead,
                          connections: set[WebSocketConnection], codec: EnvelopeCodec,
                          closed: Callable[[], None] | None = None) -> Awaitable[None] | None:
    """Finish the handshake of the upgrade request ``head``.

    Returns the accepted connection's work for the caller to await (so that
    this coroutine's frame is not kept for the connection's life), None when
    the handshake was refused; ``closed()`` is called once it is all over.
    """
    handed_on = False
    try:
        try:
            accepted = await _handshake(app, stream, head)
        except Exception as exc:  # a bug: this handshake fails alone, with a 500
            app.metrics.connection_failures.inc()
            log_failure("websocket handshake", exc)
            await send_quietly(stream, error_response(500, "internal_error",
                                                      "the handshake failed on the server"))
            return None
        if accepted is None:
            return None
        identity, handshake = accepted
        # None of wsproto's state is kept: the handshake's (an h11 connection, the
        # request and its headers) would stay alive with the socket, and the
        # channel makes a frame-level connection only for frames it does not
        # parse itself.
        channel = WsChannel(stream, outbox_limit=app.config.server.outbox_max_bytes,
                            max_message=app.config.server.max_payload,
                            linger=app.config.server.write_linger)
        connection = WebSocketConnection(app, channel)
        session = app.new_session(identity, connection, codec,
                                  profile=app.config.server.ws_profile, handshake=handshake)
        handed_on = True
        return connection.run(session, connections, closed)
    finally:
        if not handed_on and closed is not None:
            closed()


async def _handshake(app: App, stream: trio.abc.Stream,
                     head: RequestHead) -> tuple[Identity, Handshake] | None:
    """Check and accept the upgrade; ``None`` when it was refused (and answered)."""
    try:
        accept = websocket_accept(head)
    except UpgradeRefused as exc:
        app.metrics.handshake_rejected("bad_request")
        log.info("websocket handshake refused: %s", exc)
        await send_quietly(stream, exc.answer)
        return None
    origin = head.headers.get("origin")
    if not origin_allowed(app.config.server.allowed_origins, origin):
        app.metrics.handshake_rejected("origin")
        await send_quietly(stream, json_response(403, {
            "code": "forbidden_origin", "message": f"origin {origin} is not allowed"}))
        return None
    handshake = from_request("websocket", head.target, head.header_pairs(),
                             remote_addr=peer_address(stream), proxies=app.proxies)
    try:
        identity = await app.authenticate(handshake)
    except AuthError as exc:
        app.metrics.handshake_rejected(exc.code)
        log.info("websocket handshake refused: %s", exc)
        await send_quietly(stream, json_response(exc.status, exc.to_dict()))
        return None
    if not await send_quietly(stream, accept):
        return None
    return identity, handshake


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
