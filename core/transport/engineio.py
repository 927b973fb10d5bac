"""Engine.IO v4 sessions: the websocket and long-polling transports.

An :class:`EngineSocket` is one Engine.IO session (``sid``). It starts on
long-polling (HTTP GET/POST served through the quart app, see
``.engineio_server``) or directly on a WebSocket (our fast path), and can be
upgraded from polling to WebSocket (probe, upgrade, noop). What it carries
are Socket.IO packets: its namespaces are :class:`~.sionamespaces.Namespaces`.

Per Engine.IO session, under the server's connection nursery: ``run`` (the
heartbeat and token-expiry timer are on the server's timers) and, while on
WebSocket, the reader and the writer of the socket.
"""

from __future__ import annotations

import base64
import logging
import math
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..errors import CloseCode
from ..handshake import Handshake
from ..protocol import engineio as eio
from ..protocol.wsframe import text_frame
from ..timers import Timer
from .siocodec import SioCodec
from .sionamespaces import Namespaces
from .wschannel import MessageTooBig, WsChannel

if TYPE_CHECKING:
    from .engineio_server import EngineIOServer

log = logging.getLogger("switchboard.socketio")

_CLOSING = eio.EngineState.CLOSING
_CLOSED = eio.EngineState.CLOSED
#: How long a closed polling session waits for the poll that takes its close packet.
CLOSE_POLL_GRACE = 2.0


class EngineSocket(Namespaces):
    """One Engine.IO session (``sid``): its transport, heartbeat and upgrade;
    its Socket.IO namespaces are :class:`~.sionamespaces.Namespaces`'."""

    def __init__(self, server: EngineIOServer, sid: str, *, handshake: Handshake) -> None:
        super().__init__()
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
        self.close_reason = "transport_close"
        #: The next heartbeat on the server's timers (ping, pong deadline, token
        #: expiry, connect timeout); None before ``run`` and once ending.
        self._heartbeat: Timer | None = None
        self._next_ping = math.inf
        self._connect_by = math.inf
        #: While a ping waits for its pong: when the pong is due.
        self._pong_deadline: float | None = None
        #: The earliest expiry of its namespaces' tokens (Trio's clock), kept as
        #: they connect and re-authenticate (not found again at every ping).
        self._expiry = math.inf
        self._nursery: trio.Nursery | None = None

    @property
    def transport_name(self) -> str:
        """The transport packets go out on now: ``polling`` or ``websocket``."""
        return "polling" if self.channel is None else "websocket"

    @property
    def ending(self) -> bool:
        """Closing or closed: nothing more is sent or handled."""
        state = self.state
        return state is _CLOSING or state is _CLOSED

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
        self.server.settled(self)
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
                heartbeat = self._heartbeat
                if heartbeat is None or heartbeat.deadline > self._next_ping:
                    self._arm_heartbeat()
                # (else the timer set for the pong's deadline, or sooner, stays:
                # when it comes, it finds the pong and sets the next ping)
        elif kind == eio.PacketType.CLOSE:
            self.close("transport_close", kind=eio.CloseKind.CLIENT)
        elif kind in (eio.PacketType.NOOP, eio.PacketType.PING, eio.PacketType.UPGRADE):
            pass
        else:
            raise eio.EngineIOError(f"unexpected packet type {kind.name.lower()}")

    def _protocol_error(self, message: str) -> None:
        self.app.metrics.client_error("parse_error")
        log.warning("%s: malformed Socket.IO packet: %s", self.sid, message)
        self.close("parse_error", CloseCode.PROTOCOL_ERROR, kind=eio.CloseKind.ERROR)
    # -- lifetime ----------------------------------------------------------

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
    def _arm_heartbeat(self) -> None:
        """(Re)schedule the heartbeat at the next ping (or pong deadline), token
        expiry or connect timeout, whichever comes first."""
        timers = self.app.timers
        timers.cancel(self._heartbeat)
        self._heartbeat = None
        if self.ending:
            return
        deadline = min(self._next_ping if self._pong_deadline is None else self._pong_deadline,
                       self._expiry, self._connect_by)
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
        if now >= self._expiry:
            for namespace, session in list(self.sessions.items()):
                if now >= self.app.expiry_deadline(session.identity):
                    log.info("%s: token of session %s expired", self.sid, session.id)
                    self.disconnect_namespace(namespace, "token_expired")
            self._expiry = self._earliest_expiry()
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
        """A namespace connected or re-authenticated: its token's expiry counts."""
        self._expiry = self._earliest_expiry()
        if self._heartbeat is not None:
            self._arm_heartbeat()

    def _earliest_expiry(self) -> float:
        return min((self.app.expiry_deadline(s.identity) for s in self.sessions.values()),
                   default=math.inf)

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

