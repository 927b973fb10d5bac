"""A server-side WebSocket after its handshake: messages in, frames out.

Shared by the plain WebSocket protocol and Socket.IO. The reader side parses
client frames (the usual ones itself, any other kind with wsproto), answers
pings, enforces the message size and yields complete text or binary messages.
The writer side drains an :class:`~..outbox.Outbox` of ready frames with one
``send_all`` per wake-up (write coalescing). Once a close frame is queued,
what is left must be written within ``CLOSE_WAIT`` seconds: a peer that does
not read is cut instead of holding the connection (and its memory) forever.
When the server stops, :meth:`WsChannel.close_now` ends an idle connection
without a task: the close frame is written if the socket takes it at once,
and the socket is closed.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from collections.abc import Awaitable, Callable, Iterator

import trio
from wsproto.connection import Connection, ConnectionType
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
#: Frames one message may come in, at most (empty continuation frames cost
#: memory and time too, whatever the message's size).
MAX_FRAGMENTS = 1024
#: Close codes a peer may not send on the wire (RFC 6455 7.4.1): a close
#: frame without a code, or with one of these, is answered 1000.
_NOT_ON_THE_WIRE = frozenset((1005, 1006, 1015))


#: First bytes of the frames parsed without wsproto: FIN, no RSV bits, and the
#: opcode text, binary, ping or pong.
_SIMPLE = frozenset((0x81, 0x82, 0x89, 0x8A))


def _unmask(payload: bytearray, mask: bytearray) -> bytes:
    size = len(payload)
    key = (bytes(mask) * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket to read ``stream`` from directly (a TCP socket on a POSIX
    system), or None to read it with ``receive_some``."""
    if os.name != "posix" or not isinstance(stream, trio.SocketStream):
        return None
    return stream.socket


def _read_now(fd: int) -> bytes | None:
    """What the socket has (``b""``: closed or reset), None if nothing yet.

    (A function of its own: the exception of a read that would block is
    raised and caught here, so the long-lived reader's frame never gets the
    frame object a traceback needs.)
    """
    try:
        return os.read(fd, RECEIVE_SIZE)
    except BlockingIOError:
        return None
    except OSError:  # reset by the peer
        return b""


def _write_now(fd: int, data: bytes) -> int:
    """Write what the socket takes without waiting: the bytes written (0 when it
    would block, or on an error, which the writer task then meets)."""
    try:
        return os.write(fd, data)
    except OSError:  # (BlockingIOError too)
        return 0


#: Channels of this run whose frames wait for the direct write of the current
#: tick (see ``WsChannel._kick``); one task writes them all.
_DIRECT: trio.lowlevel.RunVar[list[WsChannel]] = trio.lowlevel.RunVar("switchboard_direct")


async def _write_direct(channels: list[WsChannel]) -> None:
    """Write the frames the channels queued in the tick that started this task
    (the tasks that queued them have yielded: everything of a burst is queued),
    each channel's in one write; what a socket does not take at once goes to a
    writer task of its connection."""
    _write_direct_now(channels)  # (a system task must not raise: see there)


#: The task inside :func:`written_here` and the channels it has to write (a
#: task's own context: the tasks it starts inherit it, so the task is checked).
_HERE: contextvars.ContextVar[tuple[trio.lowlevel.Task, list[WsChannel]] | None] = \
    contextvars.ContextVar("switchboard_written_here", default=None)


@contextlib.contextmanager
def written_here() -> Iterator[None]:
    """Frames that the calling task queues inside the block (what it
    publishes) are written by this task when the block ends, each channel's
    coalesced, instead of by a task started for the tick's direct write: a
    request answered once its deliveries are out does not start a task that
    would find nothing to do. Frames other tasks queue meanwhile take the
    usual way; so do those of a block inside another (the outer one writes
    what it holds when it ends)."""
    here = _HERE.get()
    if here is not None and here[0] is trio.lowlevel.current_task():
        yield  # (the outer block writes)
        return
    mine: list[WsChannel] = []
    token = _HERE.set((trio.lowlevel.current_task(), mine))
    try:
        yield
    finally:
        _HERE.reset(token)
        if mine:
            _write_direct_now(mine)


def write_queued_now() -> None:
    """Write now, from the calling task, what the channels queued for this tick's
    direct write (the task already started for it then finds nothing to do):
    an HTTP request that published answers after its deliveries are out,
    without waiting for a turn of the scheduler."""
    try:
        pending = _DIRECT.get()
    except LookupError:
        return
    if pending:
        _write_direct_now(pending)


def _write_direct_now(channels: list[WsChannel]) -> None:
    batch = channels[:]
    channels.clear()
    for channel in batch:
        try:
            channel._write_direct()
        except Exception:  # (a failed write ends that connection, not the caller)
            channel.end_reason = channel.end_reason or "transport_error"
            channel._over()


class MessageTooBig(Exception):
    """A client message passed the channel's ``max_message``."""


class WsChannel:
    """One accepted WebSocket: its reader (:meth:`read`) and its writer.

    The writer is not a task for the connection's life: the first frame queued
    while none runs starts one (in the nursery given to :meth:`attach`), which
    writes what is queued, coalesced, and ends when the outbox is empty. An
    idle connection has no writer task. Once the close frame is out (or the
    peer stops reading, or the socket breaks) the writer cancels that
    nursery: the connection is over.
    """

    __slots__ = (
        "_close_deadline", "_direct", "_fragments", "_nursery", "_parts", "_peer_closed",
        "_peer_ended", "_reading_done", "_size", "_sock", "_wait_peer_close", "_write_scope",
        "_writer_running", "_writing", "_wsproto_from_here", "alive", "closing", "end_reason",
        "linger", "max_message", "outbox", "stream", "ws",
    )

    def __init__(self, stream: trio.abc.Stream, ws: Connection | None = None, *,
                 outbox_limit: int, max_message: int, linger: float = 0.0) -> None:
        self.stream = stream
        #: wsproto's frame-level connection, made when a client frame needs it
        #: (see :meth:`read`): the usual frames are parsed here.
        self.ws = ws
        self.outbox = Outbox(outbox_limit)
        self.max_message = max_message
        #: Seconds a writer started by a frame waits for more before it writes.
        self.linger = linger
        self.closing = False
        #: Why the channel ended, when the peer ended it (``client``, ``transport_close``...).
        self.end_reason: str | None = None
        #: Set on every read; a heartbeat clears it when it pings.
        self.alive = True
        self._peer_closed: trio.Event | None = None
        self._reading_done = False
        self._nursery: trio.Nursery | None = None
        self._writer_running = False
        #: The socket written directly when a writer task is not needed (a TCP
        #: socket on a POSIX system, without linger), and whether this channel
        #: waits for the direct write of the current tick.
        self._sock = _socket_of(stream) if linger <= 0 else None
        self._direct = False
        self._write_scope: trio.CancelScope | None = None
        #: When what is left must be written by, once the close frame is queued.
        self._close_deadline = math.inf
        #: A write is under way (cut short, it would leave half a frame on the wire).
        self._writing = False
        #: After our close frame, wait (up to ``CLOSE_WAIT``) for the peer's.
        self._wait_peer_close = True
        #: Reading is over: the peer's close frame came, or its frames broke the protocol.
        self._peer_ended = False
        #: Set at the first client frame that is not simple: from then on
        #: wsproto parses everything (see ``read``).
        self._wsproto_from_here: int | None = None
        #: The parts of a fragmented message (wsproto's; made with the first).
        self._parts: list[str | bytes] | None = None
        self._size = 0
        self._fragments = 0

    @property
    def peer_closed(self) -> trio.Event:
        """Set once reading is over (the peer closed, went away or was cut)."""
        if self._peer_closed is None:
            self._peer_closed = trio.Event()
            if self._reading_done:
                self._peer_closed.set()
        return self._peer_closed

    def attach(self, nursery: trio.Nursery) -> None:
        """Write from now on, in tasks of ``nursery``; cancel it when the
        channel is over (see the class)."""
        self._nursery = nursery
        self._kick()

    def send(self, frame: bytes) -> bool:
        """Queue a ready frame; False if the outbox is full (a slow consumer)."""
        ok = self.outbox.put(frame)
        if not self._writer_running:
            self._kick()
        return ok

    def send_text(self, text: str) -> bool:
        return self.send(text_frame(text))

    def send_binary(self, data: bytes) -> bool:
        return self.send(encode_frame(data, OP_BINARY))

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
        self._close_deadline = trio.current_time() + CLOSE_WAIT
        if self._write_scope is not None:
            self._write_scope.deadline = self._close_deadline
        if self._direct:  # the close is the writer task's (it keeps the nursery open)
            self._direct = False
            self._writer_running = False
        self._kick()

    def close_now(self, code: int, reason: str = "") -> None:
        """Close at once, without waiting for the peer (the server is stopping).

        With nothing queued or being written on a socket: the close frame is
        written if the socket takes it now (best effort, no task, no wait),
        the socket is closed and the channel is over (its nursery cancelled).
        Otherwise what is queued still goes out first, then the close frame,
        as :meth:`close` does, but the peer's close frame is not waited for.
        """
        self._wait_peer_close = False
        sock = _socket_of(self.stream)
        if self._writer_running or self.outbox.pending or sock is None or self.closing:
            self.close(code, reason)
            return
        self.closing = True
        self.outbox.finish()
        fd = sock.fileno()
        if fd >= 0:
            with contextlib.suppress(OSError):  # (full, reset: the frame is dropped)
                os.write(fd, close_frame(code, reason))
        sock.close()  # wakes the reader (it ends), and the peer gets its FIN
        self.end_reason = self.end_reason or "shutdown"
        self._over()

    def _kick(self) -> None:
        """Start a writer if there is something to write and none runs.

        On a socket (no linger, not closing, still reading) the frames of this
        tick are written by one task for every such channel once the tasks
        queuing them have yielded, each channel's coalesced in one ``write``
        as a writer task would, without a task per connection; a writer task
        takes what a socket does not take at once."""
        if self._writer_running or self._nursery is None or not self.outbox.pending:
            return
        self._writer_running = True
        if self._sock is not None and not self.closing and not self._reading_done:
            self._direct = True
            here = _HERE.get()
            if here is not None and here[0] is trio.lowlevel.current_task():
                here[1].append(self)  # (written when that task's block ends)
                return
            try:
                pending = _DIRECT.get()
            except LookupError:
                pending = []
                _DIRECT.set(pending)
            if not pending:
                trio.lowlevel.spawn_system_task(_write_direct, pending,
                                                name="switchboard.websocket.direct")
            pending.append(self)
            return
        self._nursery.start_soon(self._write, name="switchboard.websocket.writer")

    def _write_direct(self) -> None:
        """This channel's part of ``_write_direct``."""
        if not self._direct:
            return  # closed meanwhile: its writer task has it
        self._direct = False
        assert self._sock is not None and self._nursery is not None
        fd = self._sock.fileno()  # -1 once closed (a number kept could be reused)
        outbox = self.outbox
        # (closing here: aborted, its close frame written already)
        if (fd < 0 or not outbox.pending or self.closing
                or self._nursery.cancel_scope.cancel_called):
            self._writer_running = False
            return
        data = outbox.take_now()
        sent = _write_now(fd, data)
        if sent == len(data):
            self._writer_running = False
            return
        if sent:
            self._writing = True  # half a frame is out: the writer sends the rest
        outbox.put_first(data[sent:])
        try:
            self._nursery.start_soon(self._write, name="switchboard.websocket.writer")
        except RuntimeError:  # the connection's nursery is over: nothing is written
            self._writer_running = False

    async def _write(self) -> None:
        """Write what is queued; end when the outbox is empty, or, once the close
        frame is out, after the peer's close frame: then the channel is over."""
        outbox = self.outbox
        try:
            with trio.CancelScope(deadline=self._close_deadline) as scope:
                self._write_scope = scope
                if self.linger > 0 and not outbox.closed:
                    await trio.sleep(self.linger)
                while outbox.pending:
                    data = outbox.take_now()
                    self._writing = True
                    await self.stream.send_all(data)
                    self._writing = False
                    del data  # do not keep the last write (a whole burst) while idle
                if not outbox.closed:
                    self._writer_running = False  # idle: the next frame starts a writer
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.end_reason = self.end_reason or "transport_error"
            self._over()
            return
        finally:
            self._write_scope = None
        if scope.cancelled_caught:
            self.end_reason = self.end_reason or "not_reading"
        elif self._wait_peer_close:
            with trio.move_on_after(CLOSE_WAIT):
                await self.peer_closed.wait()
        self._over()

    def _over(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def abort(self, code: int, reason: str) -> None:
        """After the writer is gone (the connection failed): write a close frame
        directly, unless a write was cut short (the frame would be garbled),
        then close the stream."""
        self.closing = True
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            if not self._writing:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                         trio.BusyResourceError):
                    await self.stream.send_all(close_frame(code, reason))
            await trio.aclose_forcefully(self.stream)

    async def read(self, on_message: Callable[[str | bytes], Awaitable[bool]]) -> None:
        """Read complete client messages until the peer closes, awaiting
        ``on_message(message)`` for each (it returns False to stop reading);
        raise :class:`MessageTooBig` for a message over ``max_message``.

        The usual client frame (a whole text or binary message in one masked
        frame, or a ping or pong) is parsed here, and one announcing more than
        ``max_message`` is refused from its header; at the first frame of any
        other kind (a fragment, a close, anything malformed) the rest of the
        connection goes through wsproto, from that frame on.

        On a socket the reader waits for it to be readable and reads it itself:
        an idle connection is this one coroutine waiting, not the stack of a
        high-level ``receive_some``.
        """
        buffer = bytearray()
        sock = _socket_of(self.stream)
        data: bytes | bytearray | None
        #: The last read took less than it could: the socket was emptied, so the
        #: next read waits for it first (no read that would block, no exception).
        emptied = False
        try:
            while True:
                message: str | bytes | None = None  # (the last one not kept while waiting)
                if sock is None:
                    try:
                        data = await self.stream.receive_some(RECEIVE_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                else:
                    # the descriptor is asked for each time (-1 once the socket is
                    # closed): a number kept would be another socket's after a close
                    fd = sock.fileno()
                    if emptied and fd >= 0:
                        try:
                            await trio.lowlevel.wait_readable(fd)
                        except (trio.ClosedResourceError, OSError):
                            fd = -1
                        else:
                            fd = sock.fileno()
                    else:
                        await trio.lowlevel.checkpoint_if_cancelled()
                    data = _read_now(fd) if fd >= 0 else b""
                    if data is None:
                        emptied = True  # (woken with nothing to read: wait again)
                        continue
                    emptied = len(data) < RECEIVE_SIZE
                    if not emptied:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                if not data:
                    self.end_reason = self.end_reason or "transport_close"
                    return
                self.alive = True
                if self._wsproto_from_here is None:
                    buffer += data
                    consumed = 0
                    for message, offset in self._simple_frames(buffer):
                        consumed = offset
                        if message is not None and not await on_message(message):
                            return
                    if self._peer_ended:
                        return
                    if consumed == len(buffer):  # (a new one: del keeps the memory)
                        buffer = bytearray()
                    else:
                        del buffer[:consumed]
                    if self._wsproto_from_here is None:
                        continue
                    data, buffer = bytes(buffer), bytearray()
                for message in self._wsproto_messages(bytes(data)):
                    if not await on_message(message):
                        return
                if self._peer_ended:
                    return
        finally:
            self._reading_done = True
            if self._peer_closed is not None:
                self._peer_closed.set()

    def _simple_frames(self, buffer: bytearray) -> Iterator[tuple[str | bytes | None, int]]:
        """(message or None, offset after the frame) for each simple frame at the
        head of ``buffer``; stops at an incomplete frame, or marks the first
        other frame for wsproto (``_wsproto_from_here``)."""
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            head, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            if head not in _SIMPLE or not second & 0x80 or (length >= 126 and head & 0x08):
                self._wsproto_from_here = pos  # (control frames carry at most 125 bytes)
                return
            if length >= 126:
                width = 2 if length == 126 else 8
                if end - pos < 2 + width:
                    return
                length = int.from_bytes(buffer[pos + 2:pos + 2 + width], "big")
                start = pos + 6 + width
            else:
                start = pos + 6
            if length > self.max_message:
                raise MessageTooBig(f"message over {self.max_message} bytes")
            if end < start + length:
                return
            payload = _unmask(buffer[start:start + length], buffer[start - 4:start])
            pos = start + length
            if head == 0x81:
                try:
                    yield payload.decode("utf-8"), pos
                except UnicodeDecodeError:
                    self.end_reason = "protocol_error"
                    self.close(CloseCode.PROTOCOL_ERROR, "text frame is not UTF-8")
                    self._peer_ended = True
                    return
            elif head == 0x82:
                yield payload, pos
            elif head == 0x89:
                self.send(encode_frame(payload, OP_PONG))
                yield None, pos
            else:  # a pong: the read itself counts as alive
                yield None, pos

    def _wsproto_messages(self, data: bytes) -> list[str | bytes]:
        """The complete messages wsproto parses out of ``data``; sets
        ``_peer_ended`` at a close frame or a protocol error."""
        messages: list[str | bytes] = []
        if self.ws is None:
            self.ws = Connection(ConnectionType.SERVER)
        try:
            self.ws.receive_data(data)
            events = list(self.ws.events())
        except RemoteProtocolError as exc:
            self.end_reason = "protocol_error"
            self.close(CloseCode.PROTOCOL_ERROR, str(exc)[:100])
            self._peer_ended = True
            return messages
        for event in events:
            if isinstance(event, TextMessage | BytesMessage):
                self._size += len(event.data)
                if self._size > self.max_message:
                    raise MessageTooBig(f"message over {self.max_message} bytes")
                self._fragments += 1
                if self._fragments > MAX_FRAGMENTS:
                    raise MessageTooBig(f"message in more than {MAX_FRAGMENTS} frames")
                if self._parts is None:
                    self._parts = []
                if event.data or event.message_finished:
                    self._parts.append(bytes(event.data) if isinstance(event, BytesMessage)
                                       else event.data)
                if event.message_finished:
                    message: str | bytes = (
                        "".join(self._parts) if isinstance(event, TextMessage)  # type: ignore[arg-type]
                        else b"".join(self._parts)  # type: ignore[arg-type]
                    )
                    self._parts, self._size, self._fragments = None, 0, 0
                    messages.append(message)
            elif isinstance(event, Ping):
                self.send(encode_frame(bytes(event.payload), OP_PONG))
            elif isinstance(event, CloseConnection):
                self.end_reason = self.end_reason or "client"
                if not self.closing:
                    code = event.code
                    self.close(1000 if not code or code in _NOT_ON_THE_WIRE else code)
                self._peer_ended = True
                break
        return messages
