"""Socket.IO namespaces on an Engine.IO session.

Each namespace a client connects (a ``CONNECT`` packet, authenticated with
the session's handshake and the packet's ``auth``) becomes a core
:class:`~..session.Session` whose transport is a :class:`NamespaceTransport`;
the core never learns which protocol it speaks. :class:`Namespaces` is the
Socket.IO half of an :class:`~.engineio.EngineSocket`: it decodes the
session's messages into packets, authenticates connects (and restores a
recovered session), hands events to the app in arrival order, answers acks
and errors, calls the client (server-to-client acks), and saves a dropped
session for recovery. How the packets travel (WebSocket or long-polling,
heartbeats, upgrades, closing) is the engine's.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..args import Args, wire_arguments
from ..auth import AuthError
from ..broker import BrokerUnavailable
from ..errors import ClientError, CloseCode
from ..events import Deferred, event_data
from ..protocol import engineio as eio
from ..protocol import socketio as sio
from ..recovery import SavedSession
from ..session import Session
from ..supervise import log_failure
from .answers import OrderedAnswers
from .draining import Draining
from .inbox import Inbox
from .wschannel import written_here

if TYPE_CHECKING:
    from ..app import App
    from ..handshake import Handshake
    from .engineio_server import EngineIOServer
    from .siocodec import SioCodec

log = logging.getLogger("switchboard.socketio")

#: Close reasons after which a session may be recovered (not a deliberate leave).
_RECOVERABLE = {"transport_close", "transport_error", "heartbeat_timeout", "shutdown"}
#: Queued behind a session's packets when the server stops (see ``.draining``).
_SHUTDOWN = sio.Packet(sio.PacketType.DISCONNECT, "")
#: Seconds a dropped session's saving for recovery may take (on a broker).
SAVE_TIMEOUT = 2.0


class NamespaceTransport:
    """The core's view of one Socket.IO namespace connection."""

    __slots__ = ("engine", "namespace", "send")
    protocol = "socket.io"

    def __init__(self, engine: Namespaces, namespace: str) -> None:
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


class Namespaces(Draining):
    """Mixed into :class:`~.engineio.EngineSocket`: its Socket.IO namespaces.

    The engine provides what is declared below (its server and app, its sid
    and handshake, its nursery once it runs, whether it is ending, how it
    queues bytes, encodes for its transport, reports a malformed packet and
    closes).
    """

    if TYPE_CHECKING:
        server: EngineIOServer
        app: App
        sid: str
        handshake: Handshake
        close_reason: str

        @property
        def ending(self) -> bool: ...

        def put_frame(self, frame: bytes) -> None: ...

        def _codec(self, namespace: str) -> SioCodec: ...

        def _protocol_error(self, message: str) -> None: ...

        def identity_changed(self) -> None: ...

        def close(self, reason: str, code: int = 1000, *, drop_queued: bool = False,
                  kind: eio.CloseKind = eio.CloseKind.SERVER, now: bool = False) -> None: ...

    def __init__(self) -> None:
        #: The connected namespaces' sessions, by namespace.
        self.sessions: dict[str, Session] = {}
        #: Their recovery ids (``pid``), when recovery is on.
        self.pids: dict[str, str] = {}
        self.decoder = sio.Decoder()
        #: Counted among the server's sessions with no namespace connected yet
        #: (until its first connect: ``EngineIOServer.settled``).
        self.unconnected = False
        self._calls: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._next_call = 0
        #: Events and disconnects for the handler task, in arrival order (made
        #: with the first of them; the task runs only while there are some).
        self._inbox: Inbox[sio.Packet] | None = None
        self._answers: OrderedAnswers | None = None
        #: The server is stopping: new events are refused, answers still go out.
        self._draining = False

    def send_sio(self, packet: sio.Packet) -> None:
        self.put_frame(self._codec(packet.namespace).wire(sio.encode(packet)))

    # -- incoming ----------------------------------------------------------

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
        self.server.settled(self)  # (the first namespace: no longer unconnected)
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

    # -- shutdown (see .draining) -----------------------------------------

    def _shutdown_inbox(self) -> tuple[Inbox[sio.Packet] | None, Any]:
        return self._inbox, _SHUTDOWN

    def _start_draining(self) -> bool:
        if self._draining or self.ending:
            return False
        self._draining = True
        return True

    # -- recovery ------------------------------------------------------------

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
