"""A server-side WebSocket after its handshake: messages in, frames out.

Shared by the plain WebSocket protocol and Socket.IO. The reader side parses
client frames with wsproto, answers pings, enforces the message size and
yields complete text or binary messages. The writer side drains an
:class:`~..outbox.Outbox` of ready frames with one ``send_all`` per wake-up
(write coalescing). Once a close frame is queued, what is left must be written
within ``CLOSE_WAIT`` seconds: a peer that does not read is cut instead of
holding the connection (and its memory) forever.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import trio
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import RemoteProtocolError

from ..errors import CloseCode
from ..outbox import Outbox
from ..protocol.wsframe import OP_BINARY, close_frame, encode_frame, text_frame

OP_PONG = 0xA
RECEIVE_SIZE = 65536
#: After our close frame is queued: time to write what is left, then time to
#: wait for the peer's close frame.
CLOSE_WAIT = 2.0


class MessageTooBig(Exception):
    """A client message passed the channel's ``max_message``."""


class WsChannel:
    def __init__(self, stream: trio.abc.Stream, ws: Connection, *, outbox_limit: int,
                 max_message: int, linger: float = 0.0) -> None:
        self.stream = stream
        self.ws = ws
        self.outbox = Outbox(outbox_limit)
        self.max_message = max_message
        #: Seconds the writer waits after a first frame for more (see Outbox.take).
        self.linger = linger
        self.closing = False
        #: Why the channel ended, when the peer ended it (``client``, ``transport_close``...).
        self.end_reason: str | None = None
        self.peer_closed = trio.Event()
        #: Set on every read; a heartbeat clears it when it pings.
        self.alive = True
        self._write_scope = trio.CancelScope()

    def send(self, frame: bytes) -> bool:
        """Queue a ready frame; False if the outbox is full (a slow consumer)."""
        return self.outbox.put(frame)

    def send_text(self, text: str) -> bool:
        return self.outbox.put(text_frame(text))

    def send_binary(self, data: bytes) -> bool:
        return self.outbox.put(encode_frame(data, OP_BINARY))

    def close(self, code: int, reason: str = "", *, drop_queued: bool = False) -> None:
        """Queue a close frame (after what is queued, unless ``drop_queued``)."""
        if self.closing:
            return
        self.closing = True
        frame = close_frame(code, reason)
        if drop_queued:
            self.outbox.put_last(frame)
        else:
            self.outbox.put(frame)
            self.outbox.finish()
        self._write_scope.deadline = trio.current_time() + CLOSE_WAIT

    async def writer(self) -> None:
        """Write queued frames until the close frame is out, then wait for the
        peer's; return early if the peer stops reading or goes away."""
        try:
            with self._write_scope:
                while data := await self.outbox.take(self.linger):
                    await self.stream.send_all(data)
                    del data  # do not keep the last write (a whole burst) while idle
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.end_reason = self.end_reason or "transport_error"
            return
        if self._write_scope.cancelled_caught:
            self.end_reason = self.end_reason or "not_reading"
            return
        with trio.move_on_after(CLOSE_WAIT):
            await self.peer_closed.wait()

    async def messages(self) -> AsyncGenerator[str | bytes, None]:
        """Complete client messages until the peer closes; raise
        :class:`MessageTooBig` for a message over ``max_message``."""
        parts: list[str | bytes] = []
        size = 0
        try:
            while True:
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self.end_reason = self.end_reason or "transport_close"
                    return
                self.alive = True
                try:
                    self.ws.receive_data(bytes(data))
                    events = list(self.ws.events())
                except RemoteProtocolError as exc:
                    self.end_reason = "protocol_error"
                    self.close(CloseCode.PROTOCOL_ERROR, str(exc)[:100])
                    return
                for event in events:
                    if isinstance(event, TextMessage | BytesMessage):
                        size += len(event.data)
                        if size > self.max_message:
                            raise MessageTooBig(f"message over {self.max_message} bytes")
                        parts.append(bytes(event.data) if isinstance(event, BytesMessage)
                                     else event.data)
                        if event.message_finished:
                            message: str | bytes = (
                                "".join(parts) if isinstance(event, TextMessage)  # type: ignore[arg-type]
                                else b"".join(parts)  # type: ignore[arg-type]
                            )
                            parts, size = [], 0
                            yield message
                    elif isinstance(event, Ping):
                        self.outbox.put(encode_frame(bytes(event.payload), OP_PONG))
                    elif isinstance(event, CloseConnection):
                        self.end_reason = self.end_reason or "client"
                        if not self.closing:
                            self.close(event.code or 1000)
                        return
        finally:
            self.peer_closed.set()
