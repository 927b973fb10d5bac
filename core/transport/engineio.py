"""Socket.IO v5 over Engine.IO v4: the websocket and long-polling transports.

An :class:`EngineSocket` is one Engine.IO session (``sid``). It starts on
long-polling (HTTP GET/POST served through the quart app) or directly on a
WebSocket (our fast path), and can be upgraded from polling to WebSocket
(probe, upgrade, noop). Each Socket.IO namespace the client connects becomes a
core :class:`~..session.Session` whose transport is a
:class:`NamespaceTransport`; the core never learns which protocol it speaks.

Per Engine.IO session, under the server's connection nursery: ``run`` (the
heartbeat and token-expiry timer) and, while on WebSocket, the reader and the
writer of the socket.
"""

from __future__ import annotations

import base64
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import trio
from quart import Blueprint, Response, request
from werkzeug.exceptions import MethodNotAllowed

from ..apidocs import documented
from ..args import Args, wire_arguments
from ..auth import AuthError
from ..broker import BrokerUnavailable
from ..errors import ClientError, CloseCode
from ..events import Deferred, event_data
from ..handshake import Handshake, from_request, peer_address
from ..http import error_response
from ..origins import origin_allowed
from ..profiles import Profile, ProfiledCodec
from ..protocol import engineio as eio
from ..protocol import socketio as sio
from ..protocol.wsframe import OP_BINARY, close_frame, encode_frame, text_frame
from ..recovery import Recovery, SavedSession
from ..session import Session
from ..supervise import log_failure
from ..timers import Timer
from .answers import OrderedAnswers
from .draining import Draining
from .front import RequestHead, UpgradeRefused, json_response, websocket_accept
from .inbox import Inbox
from .ws import send_quietly
from .wschannel import MessageTooBig, WsChannel, written_here

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..app import App

log = logging.getLogger("switchboard.socketio")

#: Close reasons after which a session may be recovered (not a deliberate leave).
_RECOVERABLE = {"transport_close", "transport_error", "heartbeat_timeout", "shutdown"}
_CLOSING = eio.EngineState.CLOSING
_CLOSED = eio.EngineState.CLOSED
#: Queued behind a session's packets when the server stops (see ``.draining``).
_SHUTDOWN = sio.Packet(sio.PacketType.DISCONNECT, "")
#: How long a closed polling session waits for the poll that takes its close packet.
CLOSE_POLL_GRACE = 2.0
#: Seconds a dropped session's saving for recovery may take (on a broker).
SAVE_TIMEOUT = 2.0


class SioCodec(ProfiledCodec):
    """Encodes events of one namespace for one Engine.IO transport kind."""

    __slots__ = ("namespace", "websocket")
    protocol_name = "Socket.IO"

    def __init__(self, namespace: str, websocket: bool, profile: Profile | None = None) -> None:
        super().__init__(profile)
        self.namespace = namespace
        self.websocket = websocket

    def encode_raw(self, event: str, data: Any, offset: str | None = None) -> bytes:
        args = [event, *wire_arguments(data)]
        if offset is not None:
            args.append(offset)
        text = sio.text_packet(sio.PacketType.EVENT, self.namespace, args)
        if text is None:  # attachments: the whole packet encoder
            return self.wire(sio.encode(sio.Packet(sio.PacketType.EVENT, self.namespace, args)))
        return text_frame("4" + text) if self.websocket else ("4" + text).encode()

    def ack(self, ident: int, value: Any) -> bytes:
        """The ACK of event ``ident`` answered with ``value`` (an Args: several
        arguments)."""
        args = wire_arguments(value)
        text = sio.text_packet(sio.PacketType.ACK, self.namespace, args, ident)
        if text is None:
            return self.wire(sio.encode(sio.Packet(sio.PacketType.ACK, self.namespace, args,
                                                   ident)))
        return text_frame("4" + text) if self.websocket else ("4" + text).encode()

    def wire(self, messages: list[str | bytes]) -> bytes:
        """Engine.IO messages (Socket.IO packet parts) as bytes for this transport."""
        if self.websocket:
            return b"".join(text_frame("4" + m) if isinstance(m, str) else
                            encode_frame(m, OP_BINARY) for m in messages)
        return eio.encode_payload([eio.polling_record("4" + m if isinstance(m, str) else m)
                                   for m in messages])


class NamespaceTransport:
    """The core's view of one Socket.IO namespace connection."""

    __slots__ = ("engine", "namespace", "send")
    protocol = "socket.io"

    def __init__(self, engine: EngineSocket, namespace: str) -> None:
        self.engine = engine
        self.namespace = namespace
        #: Queue bytes encoded for the session's transport (the engine's own
        #: method: one call per delivery of a fan-out).
        self.send: Callable[[bytes], None] = engine.put_frame

    def close(self, code: CloseCode, reason: str) -> None:
        if code in (CloseCode.GOING_AWAY, CloseCode.SLOW_CONSUMER, CloseCode.HEARTBEAT_TIMEOUT):
            self.engine.close(_REASONS.get(code, reason), code,
                              kind=eio.CloseKind.ERROR if code == CloseCode.HEARTBEAT_TIMEOUT
                              else eio.CloseKind.SERVER)
        else:
            self.engine.disconnect_namespace(self.namespace, _REASONS.get(code, reason))

    async def call(self, event: str, data: Any, *, timeout: float) -> Args:
        return await self.engine.call(self.namespace, event, data, timeout=timeout)


_REASONS = {
    CloseCode.GOING_AWAY: "shutdown",
    CloseCode.UNAUTHORIZED: "token_expired",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat_timeout",
    CloseCode.RATE_LIMITED: "rate_limited",
    CloseCode.SLOW_CONSUMER: "slow_consumer",
}


class EngineSocket(Draining):
    def __init__(self, server: EngineIOServer, sid: str, *, handshake: Handshake) -> None:
        self.server = server
        self.app = server.app
        self.sid = sid
        #: The session's first request (headers, query, peer): each namespace
        #: CONNECT is authenticated with it and its ``auth`` object.
        self.handshake = handshake
        #: Where the session stands; see :class:`~..protocol.engineio.EngineState`.
        self.state = eio.EngineState.OPENING
        #: The WebSocket of the session, once it is on one (from the start or upgraded).
        self.channel: WsChannel | None = None
        #: A WebSocket probing an upgrade (state ``UPGRADING``).
        self._probe: WsChannel | None = None
        self._records: list[bytes] = []
        self._records_size = 0
        #: Polling only: where the GET waiting for packets parks.
        self._poll_lot: trio.lowlevel.ParkingLot | None = None
        #: Set when the state reaches CLOSING (or CLOSED at once).
        self._closing = trio.Event()
        #: Set when it reaches CLOSED; made only to wait for a polling client's
        #: last poll (a WebSocket session never needs it).
        self._gone: trio.Event | None = None
        self.sessions: dict[str, Session] = {}
        self.pids: dict[str, str] = {}
        self.decoder = sio.Decoder()
        self.close_reason = "transport_close"
        #: The next heartbeat on the server's timers (ping, pong deadline, token
        #: expiry, connect timeout); None before ``run`` and once ending.
        self._heartbeat: Timer | None = None
        self._next_ping = math.inf
        self._connect_by = math.inf
        #: While a ping waits for its pong: when the pong is due.
        self._pong_deadline: float | None = None
        self._calls: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._next_call = 0
        #: Events and disconnects for the handler task, in arrival order (made
        #: with the first of them; the task runs only while there are some).
        self._inbox: Inbox[sio.Packet] | None = None
        self._nursery: trio.Nursery | None = None
        self._answers: OrderedAnswers | None = None
        #: The server is stopping: new events are refused, answers still go out.
        self._draining = False

    @property
    def transport_name(self) -> str:
        """The transport packets go out on now: ``polling`` or ``websocket``."""
        return "polling" if self.channel is None else "websocket"

    @property
    def ending(self) -> bool:
        """Closing or closed: nothing more is sent or handled."""
        return self.state in (eio.EngineState.CLOSING, eio.EngineState.CLOSED)

    @property
    def poll_waiting(self) -> bool:
        """A polling GET is waiting for packets."""
        return self._poll_lot is not None and len(self._poll_lot) > 0

    def _advance(self, event: eio.EngineEvent) -> bool:
        """Move to the state after ``event``; False (and no change) when it cannot
        happen now."""
        state = eio.next_state(self.state, event)
        if state is None:
            return False
        self.state = state
        if state is eio.EngineState.CLOSING:
            self._closing.set()
        elif state is eio.EngineState.CLOSED:
            self._closing.set()
            if self._gone is not None:
                self._gone.set()
        return True

    def opened(self) -> None:
        """The open packet is out, on the session's first transport."""
        self._advance(eio.EngineEvent.OPENED_POLLING if self.channel is None
                      else eio.EngineEvent.OPENED_WEBSOCKET)

    def begin_upgrade(self) -> None:
        """A WebSocket with this sid is being accepted to probe an upgrade."""
        self._advance(eio.EngineEvent.PROBE_STARTED)

    def end_upgrade(self) -> None:
        """The probing WebSocket is gone before it upgraded the session."""
        self._probe = None
        self._advance(eio.EngineEvent.PROBE_ENDED)

    def _forget(self) -> None:
        """Make the sid unknown (state CLOSED)."""
        if self._advance(eio.EngineEvent.GONE):
            if self.server.engines.get(self.sid) is self:
                del self.server.engines[self.sid]
            self.server.on_closed()

    # -- outgoing ----------------------------------------------------------

    def put_frame(self, frame: bytes) -> None:
        """Queue bytes already encoded for the current transport."""
        state = self.state
        if state is _CLOSING or state is _CLOSED:
            return
        channel = self.channel
        if channel is not None:
            if not channel.send(frame):
                self._slow_consumer()
            return
        if self._records_size + len(frame) > self.app.config.server.outbox_max_bytes:
            self._slow_consumer()
            return
        self._records.append(frame)
        self._records_size += len(frame)
        if self._poll_lot:
            self._poll_lot.unpark_all()

    def send_packet(self, text: str) -> None:
        """Queue one Engine.IO text packet (``2``, ``40{...}``...)."""
        self.put_frame(text_frame(text) if self.channel is not None else text.encode())

    def send_sio(self, packet: sio.Packet) -> None:
        self.put_frame(self._codec(packet.namespace).wire(sio.encode(packet)))

    def _codec(self, namespace: str) -> SioCodec:
        return self.server.codec(namespace, self.channel is not None)

    def _slow_consumer(self) -> None:
        self.app.metrics.slow_consumers.inc()
        log.warning("slow consumer %s: disconnecting", self.sid)
        self.close("slow_consumer", CloseCode.SLOW_CONSUMER, drop_queued=True)

    # -- long-polling ------------------------------------------------------

    async def poll(self) -> bytes:
        """Answer one polling GET: wait for packets and return them as a payload."""
        while not self._records and self.state in (eio.EngineState.POLLING,
                                                   eio.EngineState.UPGRADING):
            if self._poll_lot is None:
                self._poll_lot = trio.lowlevel.ParkingLot()
            await self._poll_lot.park()
        if not self._records:
            # upgraded while waiting (the probe's noop was taken by another poll)
            return b"6" if self.state is eio.EngineState.WEBSOCKET else b"1"
        records, self._records, self._records_size = self._records, [], 0
        if self.state is eio.EngineState.CLOSING:
            self._forget()  # this poll carries the close packet: the sid is done
        return eio.encode_payload(records)

    async def receive_payload(self, body: str) -> None:
        for packet in eio.decode_payload(body):
            await self.on_packet(packet)

    # -- incoming ----------------------------------------------------------

    async def on_packet(self, packet: eio.Packet) -> None:
        if self.ending:
            return  # (a POST read while the session closed)
        kind = packet.type
        if kind == eio.PacketType.MESSAGE:
            await self._on_message(packet.data)
        elif kind == eio.PacketType.PONG:
            if self._pong_deadline is not None:
                self._pong_deadline = None
                self._next_ping = trio.current_time() + self.app.config.heartbeat.interval
                self._arm_heartbeat()
        elif kind == eio.PacketType.CLOSE:
            self.close("transport_close", kind=eio.CloseKind.CLIENT)
        elif kind in (eio.PacketType.NOOP, eio.PacketType.PING, eio.PacketType.UPGRADE):
            pass
        else:
            raise eio.EngineIOError(f"unexpected packet type {kind.name.lower()}")

    async def _on_message(self, data: str | bytes) -> None:
        try:
            packet = self.decoder.feed(data)
        except sio.SocketIOError as exc:
            self._protocol_error(str(exc))
            return
        if packet is None:
            return
        if packet.type in (sio.PacketType.ACK, sio.PacketType.BINARY_ACK):
            # At once, not through the inbox: the handler waiting for this answer
            # (``call``) may be the one holding the inbox.
            assert packet.id is not None
            waiter = self._calls.pop(packet.id, None)
            if waiter is not None:
                waiter[1].extend(packet.data)
                waiter[0].set()
            return
        if self._draining and packet.type in (sio.PacketType.EVENT,
                                              sio.PacketType.BINARY_EVENT):
            self._answer_error(packet, packet.data[0], ClientError(
                "shutting_down", "the server is shutting down; reconnect and send it again",
                retry_after=1))
            return
        if self._inbox is None:
            if packet.type == sio.PacketType.CONNECT or self._nursery is None:
                # Nothing is queued before it: handle it here, in order.
                await self._handle_safely(packet)
                return
            self._inbox = Inbox(self._nursery, self._handle_queued)
        await self._inbox.put(packet)

    async def _handle_queued(self, packet: sio.Packet) -> bool:
        """Handle connects, events and disconnects one at a time, in arrival order,
        while the transport keeps reading (acks, pongs); False once the server's
        stop is reached."""
        if packet is _SHUTDOWN:
            await self.closing_after_answers()
            return False
        await self._handle_safely(packet)
        return True

    async def _handle_safely(self, packet: sio.Packet) -> None:
        try:
            await self._handle(packet)
        except Exception as exc:
            # A bug, or data our encoder cannot take (nested too deeply for it):
            # end this client's session, not the server.
            self.app.metrics.connection_failures.inc()
            log_failure(f"socket.io session {self.sid}: a {packet.type.name} packet", exc)
            self.close("internal_error", CloseCode.INTERNAL_ERROR)

    async def _handle(self, packet: sio.Packet) -> None:
        kind = packet.type
        if kind == sio.PacketType.CONNECT:
            await self._connect(packet)
            return
        session = self.sessions.get(packet.namespace)
        if session is None:
            log.info("%s: packet for namespace %s, which is not connected", self.sid,
                     packet.namespace)
            return
        if kind == sio.PacketType.DISCONNECT:
            del self.sessions[packet.namespace]
            self._untrack(packet.namespace)
            await self.app.close_session(session, "client")
        elif kind in (sio.PacketType.EVENT, sio.PacketType.BINARY_EVENT):
            await self._event(session, packet)

    def _protocol_error(self, message: str) -> None:
        self.app.metrics.client_error("parse_error")
        log.warning("%s: malformed Socket.IO packet: %s", self.sid, message)
        self.close("parse_error", CloseCode.PROTOCOL_ERROR, kind=eio.CloseKind.ERROR)

    async def _event(self, session: Session, packet: sio.Packet) -> None:
        name, *args = packet.data
        # a profile's rule for the name takes its first argument, like any handler
        # of one payload; a handler declared with args=True takes them all
        profile = session.profile
        spec = None if profile is not None and name in profile.inbound \
            else self.app.events.get(name)
        try:
            result = await self.app.dispatch(session, name, event_data(spec, args))
        except ClientError as exc:
            self._answer_error(packet, name, exc)
            return
        if name == "auth":
            self.identity_changed()
        if self._answers is None:
            if not isinstance(result, Deferred):  # (nothing deferred before it: out now)
                if packet.id is not None:
                    self.send_sio(sio.Packet(sio.PacketType.ACK, packet.namespace,
                                             wire_arguments(result), packet.id))
                return
            # made with the first deferred answer: a session that never has one
            # does not keep the queue
            assert self._nursery is not None
            self._answers = OrderedAnswers(self._nursery)
        ident = packet.id
        await self._answers.answer(
            result,
            lambda value: None if ident is None else self.put_frame(
                self._codec(packet.namespace).ack(ident, value)),
            lambda error: self._answer_error(packet, name, error))

    def _answer_error(self, packet: sio.Packet, name: str, exc: ClientError) -> None:
        self.app.metrics.client_error(exc.code)
        log.info("client error %s on %s: %s", exc.code, self.sid, exc.message)
        error = {**exc.to_dict(), "event": name}
        if packet.id is not None:
            self.send_sio(sio.Packet(sio.PacketType.ACK, packet.namespace,
                                     [{"error": error}], packet.id))
        else:
            self.send_sio(sio.Packet(sio.PacketType.EVENT, packet.namespace, ["error", error]))

    async def _connect(self, packet: sio.Packet) -> None:
        namespace = packet.namespace
        if self.ending:
            return  # no session may outlive its engine
        if namespace not in self.server.namespaces:
            self.send_sio(sio.Packet(sio.PacketType.CONNECT_ERROR, namespace,
                                     {"message": "Invalid namespace"}))
            return
        if namespace in self.sessions:
            return
        auth: dict[str, Any] = packet.data or {}
        handshake = self.handshake.for_namespace(namespace, packet.data)
        try:
            identity = await self.app.authenticate(handshake)
        except AuthError as exc:
            self.app.metrics.handshake_rejected(exc.code)
            log.info("%s: connect to %s refused: %s", self.sid, namespace, exc)
            self.send_sio(sio.Packet(sio.PacketType.CONNECT_ERROR, namespace, {
                "message": "Unauthorized" if exc.code == "unauthorized" else exc.message,
                "data": exc.to_dict(),
            }))
            return
        if self.ending or namespace in self.sessions:
            return  # (closed, or connected twice, while a backend was asked)
        recovery = self.server.recovery
        saved: SavedSession | None = None
        missed: list[Any] = []
        pid, offset = auth.get("pid"), auth.get("offset")
        if recovery is not None and isinstance(pid, str) and isinstance(offset, str):
            try:
                candidate = await recovery.restore(pid)
                if (candidate is not None
                        and candidate.identity.user_id == identity.user_id
                        and candidate.identity.tenant_id == identity.tenant_id):
                    rooms = candidate.rooms | self.app.hub.canonical_rooms(identity)
                    replay = await recovery.missed(offset, rooms, identity.tenant_id,
                                                   candidate.session_id)
                    if replay is not None:
                        saved, missed = candidate, replay
            except BrokerUnavailable as exc:  # a new session: the client re-syncs
                log.info("%s: no recovery: %s", self.sid, exc)
        transport = NamespaceTransport(self, namespace)
        session = self.app.new_session(identity, transport, self._codec(namespace),
                                       session_id=saved.session_id if saved else None,
                                       profile=self.server.config.profiles.get(namespace, ""),
                                       handshake=handshake)
        self.sessions[namespace] = session
        self.identity_changed()  # the token-expiry timer must see the new session
        answer: dict[str, Any] = {"sid": session.id}
        if recovery is not None:
            self.pids[namespace] = pid if saved and isinstance(pid, str) \
                else secrets.token_urlsafe(12)
            answer["pid"] = self.pids[namespace]
            recovery.track(self.pids[namespace], session)
        # The answer (and what is replayed) goes out in a write of its own,
        # before what the plugins send as the session opens: a client that
        # reads one frame per read and waits for the answer before listening
        # for events (the protocol's test suite does) must not have those in
        # the same read.
        with written_here():
            self.send_sio(sio.Packet(sio.PacketType.CONNECT, namespace, answer))
            for event_offset, publication in missed:
                session.transport.send(session.codec.encode_event(
                    publication.event, publication.data, event_offset))
        if saved is not None:
            log.info("%s: session %s recovered, %d events replayed", self.sid, session.id,
                     len(missed))
        await self.app.open_session(session, rooms=saved.rooms if saved else ())

    def disconnect_namespace(self, namespace: str, reason: str) -> None:
        session = self.sessions.pop(namespace, None)
        if session is None:
            return
        self.send_sio(sio.Packet(sio.PacketType.DISCONNECT, namespace))
        self._untrack(namespace)
        if self._nursery is not None:
            self._nursery.start_soon(self.app.close_session, session, reason)

    # -- server-to-client acks ---------------------------------------------

    async def call(self, namespace: str, event: str, data: Any, *, timeout: float) -> Args:
        """Emit ``event`` (``data`` an ``Args``: several arguments) with an ack id
        and wait for the client's answer: every argument of its ack."""
        self._next_call += 1
        ident = self._next_call
        done = trio.Event()
        result: list[Any] = []
        self._calls[ident] = (done, result)
        try:
            self.send_sio(sio.Packet(sio.PacketType.EVENT, namespace,
                                     [event, *wire_arguments(data)], ident))
            with trio.fail_after(timeout):
                await done.wait()
        finally:
            self._calls.pop(ident, None)
        return Args(*result)

    # -- lifetime ----------------------------------------------------------

    # -- shutdown (see .draining) -----------------------------------------

    def _shutdown_inbox(self) -> tuple[Inbox[sio.Packet] | None, Any]:
        return self._inbox, _SHUTDOWN

    def _start_draining(self) -> bool:
        if self._draining or self.ending:
            return False
        self._draining = True
        return True

    def _close_for_shutdown(self) -> None:
        self.close("shutdown", CloseCode.GOING_AWAY, now=True)

    def close(self, reason: str, code: int = 1000, *, drop_queued: bool = False,
              kind: eio.CloseKind = eio.CloseKind.SERVER, now: bool = False) -> None:
        """Close the session (``kind`` says who ended it: see
        :class:`~..protocol.engineio.CloseKind`); ``now``: the server is
        stopping, a WebSocket is closed without waiting for the peer (see
        :meth:`~.wschannel.WsChannel.close_now`)."""
        if not self._advance(eio.EngineEvent.CLOSE):
            return
        self.close_reason = reason
        if self._probe is not None:  # an upgrade under way ends with the session
            self._probe.close(1000)
        if self.channel is not None:
            if now:
                self.channel.close_now(code, reason.replace("_", " "))
            else:
                self.channel.close(code, reason.replace("_", " "), drop_queued=drop_queued)
            return
        if drop_queued or kind is not eio.CloseKind.SERVER:
            self._records, self._records_size = [], 0
        self._records.append(eio.waiting_poll_answer(kind))
        if self._poll_lot is not None:
            self._poll_lot.unpark_all()
        if eio.forgotten_at_once(kind):
            self._forget()

    async def run(self, channel: WsChannel | None = None, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's own task until it is closed: its heartbeat and token
        expiry are on the server's timers; a session that starts on a WebSocket
        reads its ``channel`` here (its writer runs in this nursery)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                now = trio.current_time()
                self._next_ping = now + self.app.config.heartbeat.interval
                self._connect_by = now + self.server.config.connect_timeout
                self._arm_heartbeat()
                task_status.started()
                if channel is not None:
                    # this task reads the WebSocket; its writer runs in this nursery
                    # and cancels it once the channel is over
                    channel.attach(nursery)
                if self.app.shutting_down:  # (the stop began while it was opening)
                    self.shut_down()
                if channel is not None:
                    await self._read_channel(channel, upgrade=False)
                # (set already when the server's stop closed it: no checkpoint then)
                if not self._closing.is_set():
                    await self._closing.wait()
                if channel is not None and not channel.peer_closed.is_set():
                    await channel.peer_closed.wait()  # let the close frame out
                nursery.cancel_scope.cancel()
        finally:
            if self._inbox is not None:
                self._inbox.close()  # (a POST read as the session ends)
            self.app.timers.cancel(self._heartbeat)
            self._heartbeat = None
            with trio.CancelScope(shield=True):
                for namespace, session in list(self.sessions.items()):
                    await self._save_for_recovery(namespace, session)
                    await self.app.close_session(session, self.close_reason)
                self.sessions.clear()
            try:
                if self.channel is None and self.state is eio.EngineState.CLOSING:
                    # A polling client learns of the close from its next poll: keep
                    # the sid known until then (the poll may be on its way).
                    with trio.move_on_after(CLOSE_POLL_GRACE):
                        self._gone = trio.Event()
                        await self._gone.wait()
            finally:
                self._forget()
                # its inbox's handler is a method of this socket: without the
                # cycle, what the socket held goes with its last reference
                # instead of waiting for the cyclic collector's rare passes
                self._inbox = None

    def _untrack(self, namespace: str) -> None:
        recovery = self.server.recovery
        pid = self.pids.pop(namespace, None)
        if recovery is not None and pid is not None:
            recovery.untrack(pid)

    async def _save_for_recovery(self, namespace: str, session: Session) -> None:
        recovery = self.server.recovery
        pid = self.pids.get(namespace)
        if recovery is None or pid is None:
            return
        if self.close_reason not in _RECOVERABLE:
            self._untrack(namespace)
            return
        canonical = {f"user:{session.user_id}", f"tenant:{session.tenant_id}",
                     f"tenant:{session.tenant_id}:agents"}
        saved = SavedSession(session.id, session.identity,
                             frozenset(session.rooms - canonical), trio.current_time())
        with trio.move_on_after(SAVE_TIMEOUT):  # (a broker that does not answer)
            try:
                await recovery.save(pid, saved)
            except BrokerUnavailable as exc:
                log.info("%s: session %s not saved for recovery: %s", self.sid, session.id,
                         exc)

    def _arm_heartbeat(self) -> None:
        """(Re)schedule the heartbeat at the next ping (or pong deadline), token
        expiry or connect timeout, whichever comes first."""
        timers = self.app.timers
        timers.cancel(self._heartbeat)
        self._heartbeat = None
        if self.ending:
            return
        expiry = min((self.app.expiry_deadline(s.identity) for s in self.sessions.values()),
                     default=math.inf)
        deadline = min(self._next_ping if self._pong_deadline is None else self._pong_deadline,
                       expiry, self._connect_by)
        if deadline < math.inf:
            self._heartbeat = timers.at(deadline, self)

    def due(self) -> None:
        """Ping every interval, expect the pong within the timeout; expire tokens;
        close the session if no namespace is connected at the connect timeout."""
        self._heartbeat = None
        if self.ending:
            return
        now = trio.current_time()
        if now >= self._connect_by:
            self._connect_by = math.inf
            if not self.sessions:
                log.info("%s: no namespace connected within %ss: closed", self.sid,
                         self.server.config.connect_timeout)
                self.app.metrics.handshake_rejected("connect_timeout")
                self.close("connect_timeout")
                return
        for namespace, session in list(self.sessions.items()):
            if now >= self.app.expiry_deadline(session.identity):
                log.info("%s: token of session %s expired", self.sid, session.id)
                self.disconnect_namespace(namespace, "token_expired")
        if self._pong_deadline is not None:
            if now >= self._pong_deadline:
                log.info("%s: ping timeout", self.sid)
                self.close("heartbeat_timeout", CloseCode.HEARTBEAT_TIMEOUT,
                           kind=eio.CloseKind.ERROR)
                return
        elif now >= self._next_ping:
            self.send_packet(str(int(eio.PacketType.PING)))
            self._pong_deadline = now + self.app.config.heartbeat.timeout
        self._arm_heartbeat()

    def identity_changed(self) -> None:
        if self._heartbeat is not None:
            self._arm_heartbeat()

    # -- websocket ---------------------------------------------------------

    async def serve_channel(self, channel: WsChannel, *, upgrade: bool) -> None:
        """Run a WebSocket for this session: with ``upgrade`` (the session is
        UPGRADING), the probe and the upgrade first; then its packets."""
        async with trio.open_nursery() as nursery:
            channel.attach(nursery)
            await self._read_channel(channel, upgrade=upgrade)

    async def _read_channel(self, channel: WsChannel, *, upgrade: bool) -> None:
        """Read ``channel`` until it ends (its writer runs meanwhile)."""
        if upgrade:
            self._probe = channel
        try:
            await channel.read(partial(self._on_ws_message, channel))
        except MessageTooBig as exc:
            log.info("%s: %s", self.sid, exc)
            channel.end_reason = "message_too_big"
            if self.channel is channel:
                self.close("message_too_big", CloseCode.MESSAGE_TOO_BIG)
            else:
                channel.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
        finally:
            if self.channel is channel:
                if not self.ending:
                    reason = channel.end_reason or "transport_close"
                    self.close("transport_close" if reason == "client" else reason)
            else:
                if self._probe is channel:  # the probe went away: polling goes on
                    self.end_upgrade()
                channel.close(1000)

    async def _on_ws_message(self, channel: WsChannel, message: str | bytes) -> bool:
        """Handle one WebSocket message; False to stop reading."""
        if (message.__class__ is str and message[:1] == "4" and self.channel is channel
                and self.state is eio.EngineState.WEBSOCKET):
            # a Socket.IO packet on the session's WebSocket (nearly every message)
            await self._on_message(message[1:])
            return not self.ending
        if isinstance(message, bytes):
            packet = eio.Packet(eio.PacketType.MESSAGE, message)
        else:
            try:
                packet = eio.decode_text(message)
            except eio.EngineIOError as exc:
                self._protocol_error(str(exc))
                return False
        if self.channel is not channel:
            self._upgrade_step(channel, packet)
            return True
        try:
            await self.on_packet(packet)
        except eio.EngineIOError as exc:
            self._protocol_error(str(exc))
            return False
        return not self.ending

    def _upgrade_step(self, channel: WsChannel, packet: eio.Packet) -> None:
        if self.state is not eio.EngineState.UPGRADING or self._probe is not channel:
            return  # closed meanwhile: the probe's close frame is on its way
        if packet.type == eio.PacketType.PING and packet.data == "probe":
            channel.send_text("3probe")
            self.put_frame(b"6")  # ends the pending poll so the client can pause polling
        elif packet.type == eio.PacketType.UPGRADE:
            self._switch_to(channel)

    def _switch_to(self, channel: WsChannel) -> None:
        """Move pending polling records to the WebSocket and switch the codecs."""
        for record in eio.SEPARATOR.encode().join(self._records).split(eio.SEPARATOR.encode()):
            if record in (b"", b"6"):  # nothing queued splits into one empty record
                continue
            if record.startswith(b"b"):
                channel.send_binary(base64.b64decode(record[1:]))
            else:
                channel.send(text_frame(record))
        self._records, self._records_size = [], 0
        self.channel = channel
        self._probe = None
        self._advance(eio.EngineEvent.UPGRADED)
        for namespace, session in self.sessions.items():
            session.codec = self._codec(namespace)
        if self._poll_lot is not None:
            self._poll_lot.unpark_all()


class EngineIOServer:
    """The Engine.IO endpoint: session registry, polling routes, WebSocket entry."""

    def __init__(self, app: App, spawn: Callable[..., Any],
                 on_closed: Callable[[], None]) -> None:
        self.app = app
        self.on_closed = on_closed
        self.config = app.config.socketio
        self.namespaces = frozenset(self.config.namespaces)
        self.engines: dict[str, EngineSocket] = {}
        self._spawn = spawn
        self._codecs: dict[tuple[str, bool], SioCodec] = {}
        self.recovery: Recovery | None = None
        if self.config.recovery_window > 0:
            self.recovery = app.hub.recovery = app.hub.broker.recovery(
                self.config.recovery_window, self.config.recovery_max_events)

    def codec(self, namespace: str, websocket: bool) -> SioCodec:
        key = (namespace, websocket)
        codec = self._codecs.get(key)
        if codec is None:
            profile_name = self.config.profiles.get(namespace)
            profile = self.app.plugins.profiles[profile_name] if profile_name else None
            codec = self._codecs[key] = SioCodec(namespace, websocket, profile)
        return codec

    def _open_packet(self, sid: str, upgrades: list[str]) -> str:
        hb = self.app.config.heartbeat
        return eio.open_packet(sid, upgrades=upgrades, ping_interval=hb.interval,
                               ping_timeout=hb.timeout, max_payload=self.config.max_payload)

    def _new_engine(self, handshake: Handshake, sid: str | None = None) -> EngineSocket:
        sid = sid or new_sid()
        engine = EngineSocket(self, sid, handshake=handshake)
        self.engines[sid] = engine
        return engine

    def close_all(self) -> None:
        """Server shutdown: every session sends what it owes, then closes."""
        for engine in list(self.engines.values()):
            engine.shut_down()

    # -- websocket ---------------------------------------------------------

    async def serve_websocket(self, stream: trio.abc.Stream,
                              head: RequestHead) -> Awaitable[None] | None:
        """Accept a WebSocket (a new session's, or one probing an upgrade);
        return its work for the caller to await, None when it was refused."""
        target = head.target
        query = parse_qs(urlsplit(target).query)
        try:
            accept = websocket_accept(head)
        except UpgradeRefused:
            await send_quietly(stream, b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return None
        origin = head.headers.get("origin")
        sid = query.get("sid", [None])[0]
        engine = self.engines.get(sid) if sid else None
        if not origin_allowed(self.app.config.server.allowed_origins, origin):
            self.app.metrics.handshake_rejected("origin")
            error: eio.ErrorCode | None = eio.ErrorCode.FORBIDDEN
        else:
            error = _check_query(query, "websocket")
        if error is None and sid:
            error = eio.websocket_refusal(engine.state if engine is not None else None)
        if error is not None:
            body = {"code": int(error), "message": eio.ERROR_MESSAGES[error]}
            status = 403 if error == eio.ErrorCode.FORBIDDEN else 400
            await send_quietly(stream, json_response(status, body))
            return None
        if engine is not None and not eio.takes_websocket(engine.state):
            # (already upgraded, probing, opening or closing: the reference
            # server accepts this WebSocket and closes it at once)
            await send_quietly(stream, accept + close_frame(
                CloseCode.PROTOCOL_ERROR, "the session cannot take a WebSocket now"))
            return None
        if engine is not None:
            # from here a second WebSocket for this sid is closed at once
            engine.begin_upgrade()
            if not await send_quietly(stream, accept):
                engine.end_upgrade()
                return None
        else:
            # a new session: its open packet goes out with the handshake's
            # answer, in one write
            sid = new_sid()
            if not await send_quietly(stream, accept + text_frame(self._open_packet(sid, []))):
                return None
        # none of wsproto's state is kept (the channel makes a frame-level
        # connection only for frames it does not parse itself)
        channel = WsChannel(stream,
                            outbox_limit=self.app.config.server.outbox_max_bytes,
                            max_message=self.config.max_payload,
                            linger=self.app.config.server.write_linger)
        handshake = from_request("socket.io", target, head.header_pairs(),
                                 remote_addr=peer_address(stream))
        # The connection's work is handed back to be awaited by the caller, which
        # closes the stream after it: this frame (and the handshake's state)
        # does not live as long as the connection.
        if engine is not None:
            return engine.serve_channel(channel, upgrade=True)
        engine = self._new_engine(handshake, sid)
        engine.channel = channel
        engine.opened()
        return engine.run(channel)

    # -- long-polling ------------------------------------------------------

    def blueprint(self) -> Blueprint:
        bp = Blueprint("engineio", __name__)
        bp.add_url_rule(self.config.path, "engineio", self._polling,
                        methods=["GET", "POST", "OPTIONS"])
        bp.app_errorhandler(MethodNotAllowed)(self._method_not_allowed)
        return bp

    async def _method_not_allowed(self, exc: MethodNotAllowed) -> Response:
        """Other methods on the Engine.IO path get its JSON error, with 400 (the
        reference server's answer), not the router's 405."""
        if request.path != self.config.path:
            return error_response(405, "method_not_allowed",
                                  exc.description or "method_not_allowed")
        return await self._polling()

    def _cors(self, response: Response) -> Response:
        """The CORS headers of an allowed browser origin (requests from another
        origin are refused before they get here)."""
        origin = request.headers.get("Origin")
        if origin is not None and origin_allowed(self.app.config.server.allowed_origins,
                                                 origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    def _error(self, code: eio.ErrorCode, status: int = 400) -> Response:
        response = Response(
            f'{{"code":{int(code)},"message":"{eio.ERROR_MESSAGES[code]}"}}',
            status=status, content_type="application/json")
        return self._cors(response)

    @documented(
        "Engine.IO v4 long-polling (Socket.IO's HTTP transport)",
        description="GET without `sid` opens an Engine.IO session (the open packet); with "
                    "`sid`, GET waits for the server's packets and POST sends the client's "
                    "(Engine.IO packets separated by `\\x1e`). `socket.io-client` does "
                    "this; authentication is Socket.IO's, in the namespace CONNECT.",
        query={"EIO": {"enum": ["4"]}, "transport": {"enum": ["polling"]}, "sid": str,
               "t": str},
        required_query=("EIO", "transport"),
        body={"type": "string"}, body_media_type="text/plain",
        responses={200: ("Engine.IO packets", "text/plain"),
                   400: "a bad request (Engine.IO's `{code, message}`)",
                   403: "an Origin not in `server.allowed_origins`"})
    async def _polling(self) -> Response:
        if not origin_allowed(self.app.config.server.allowed_origins,
                              request.headers.get("Origin")):
            # refused here, not only by the browser: no session for it
            self.app.metrics.handshake_rejected("origin")
            return self._error(eio.ErrorCode.FORBIDDEN, 403)
        if request.method == "OPTIONS":
            response = self._cors(Response("", status=204))
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            requested = request.headers.get("Access-Control-Request-Headers")
            if requested:
                response.headers["Access-Control-Allow-Headers"] = requested
            return response
        query = {k: request.args.getlist(k) for k in request.args}
        error = _check_query(query, "polling")
        if error is not None:
            return self._error(error)
        sid = request.args.get("sid")
        if sid is None:
            if request.method != "GET":
                return self._error(eio.ErrorCode.BAD_HANDSHAKE_METHOD)
            handshake = from_request("socket.io", request.full_path, request.headers.items(),
                                     remote_addr=request.remote_addr)
            engine = self._new_engine(handshake)
            self._spawn(engine.run)
            opening = self._text(self._open_packet(engine.sid, ["websocket"]).encode())
            engine.opened()
            return opening
        found = self.engines.get(sid)
        error = eio.polling_refusal(found.state if found is not None else None,
                                    found.transport_name if found is not None else "polling")
        if error is not None:
            return self._error(error)
        assert found is not None
        if request.method == "GET":
            if found.poll_waiting:
                # two polls at once: the client is broken (the waiting one gets the close)
                found.close("transport_error", kind=eio.CloseKind.ERROR)
                return self._error(eio.ErrorCode.BAD_REQUEST)
            return self._text(await found.poll())
        if request.method == "POST":
            return await self._post(found)
        return self._error(eio.ErrorCode.BAD_REQUEST)

    async def _post(self, engine: EngineSocket) -> Response:
        length = request.content_length
        if length is not None and length > self.config.max_payload:
            engine.close("message_too_big", kind=eio.CloseKind.ERROR)
            return self._cors(Response('{"code":3,"message":"Payload too large"}', status=413,
                                       content_type="application/json"))
        body = await request.get_data(as_text=False)
        if isinstance(body, str):
            body = body.encode()
        if len(body) > self.config.max_payload:
            engine.close("message_too_big", kind=eio.CloseKind.ERROR)
            return self._cors(Response('{"code":3,"message":"Payload too large"}', status=413,
                                       content_type="application/json"))
        try:
            await engine.receive_payload(body.decode("utf-8"))
        except (eio.EngineIOError, UnicodeDecodeError) as exc:
            engine._protocol_error(str(exc))
            return self._error(eio.ErrorCode.BAD_REQUEST)
        return self._cors(Response("ok", content_type="text/html"))

    def _text(self, body: bytes) -> Response:
        return self._cors(Response(body, content_type="text/plain; charset=UTF-8"))


def new_sid() -> str:
    """A new Engine.IO session id."""
    return secrets.token_urlsafe(15)


def _check_query(query: dict[str, list[str]], transport: str) -> eio.ErrorCode | None:
    if query.get("EIO", [""])[0] != "4":
        return eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION
    if query.get("transport", [""])[0] != transport:
        return eio.ErrorCode.UNKNOWN_TRANSPORT
    return None
