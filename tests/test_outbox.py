"""The per-connection outbox (bounded in bytes, drained in one piece) and the
channel's writer, a task only while there is something to write; on a socket,
the frames of a tick written directly, one write per connection."""

from __future__ import annotations

import trio
import trio.testing
from switchboard.core.outbox import Outbox
from switchboard.core.transport.wschannel import WsChannel


class RecordingStream(trio.abc.Stream):
    """Keeps each ``send_all`` apart (one write each); the peer never sends."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        return b""  # pragma: no cover

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def test_take_now_returns_everything_queued_joined() -> None:
    box = Outbox(1000)
    assert box.put(b"a") and box.put(b"bc")
    assert box.take_now() == b"abc"
    assert box.size == 0 and not box.pending
    assert box.take_now() == b""


def test_a_put_past_the_bound_is_refused_and_queues_nothing() -> None:
    box = Outbox(4)
    assert box.put(b"abc")
    assert not box.put(b"de")
    assert box.size == 3


async def test_linger_gathers_frames_that_arrive_soon_after_the_first(
        autojump_clock: trio.testing.MockClock) -> None:
    stream = RecordingStream()
    channel = WsChannel(stream, outbox_limit=1000, max_message=1000, linger=0.005)
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
        channel.send(b"first ")
        await trio.sleep(0.002)
        channel.send(b"second")
    assert stream.writes == [b"first second"]


async def test_without_linger_the_first_frame_goes_alone(
        autojump_clock: trio.testing.MockClock) -> None:
    stream = RecordingStream()
    channel = WsChannel(stream, outbox_limit=1000, max_message=1000)
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
        channel.send(b"first ")
        await trio.sleep(0.002)
        channel.send(b"second")
    assert stream.writes == [b"first ", b"second"]


async def test_frames_queued_during_a_write_go_out_together_and_then_no_task_is_left(
        autojump_clock: trio.testing.MockClock) -> None:
    stream = RecordingStream()
    channel = WsChannel(stream, outbox_limit=1000, max_message=1000)
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
        channel.send(b"a")
        await trio.testing.wait_all_tasks_blocked()  # the writer is in its write
        for frame in (b"b", b"c"):
            channel.send(frame)
        await trio.sleep(1)
        assert stream.writes == [b"a", b"bc"]
        assert not nursery.child_tasks  # an idle connection keeps no writer task
        channel.send(b"d")  # a frame starts a writer again
        await trio.sleep(1)
        assert stream.writes == [b"a", b"bc", b"d"]


async def test_frames_queued_before_the_writer_may_start_go_out_once_it_may(
        autojump_clock: trio.testing.MockClock) -> None:
    stream = RecordingStream()
    channel = WsChannel(stream, outbox_limit=1000, max_message=1000)
    channel.send(b"hello")
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
    assert stream.writes == [b"hello"]


async def test_closing_writes_what_is_queued_then_the_close_frame_then_ends_the_channel(
        autojump_clock: trio.testing.MockClock) -> None:
    stream = RecordingStream()
    channel = WsChannel(stream, outbox_limit=1000, max_message=1000)
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
        nursery.start_soon(trio.sleep_forever)  # the reader, say: the close ends it too
        channel.send(b"last")
        channel.close(1000)
        channel.send(b"too late")
    assert nursery.cancel_scope.cancelled_caught
    assert stream.writes[0].startswith(b"last\x88")  # then the close frame, one write
    assert b"too late" not in b"".join(stream.writes)


async def _read_exactly(stream: trio.SocketStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = await stream.receive_some(65536)
        assert chunk, "the peer closed early"
        got += chunk
    return bytes(got)


async def test_on_a_socket_a_burst_goes_out_in_one_write_without_a_task_per_connection(
        ) -> None:
    ours, theirs = trio.socket.socketpair()
    peer = trio.SocketStream(theirs)
    channel = WsChannel(trio.SocketStream(ours), outbox_limit=1000, max_message=1000)
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
        for frame in (b"a", b"b", b"c"):  # one task, one tick: a burst
            channel.send(frame)
        assert not nursery.child_tasks  # no writer task: written after this task yields
        assert await _read_exactly(peer, 3) == b"abc"
        assert not nursery.child_tasks
        channel.send(b"d")
        assert await _read_exactly(peer, 1) == b"d"
    ours.close()
    theirs.close()


async def test_what_a_socket_does_not_take_at_once_follows_in_order() -> None:
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
    peer = trio.SocketStream(theirs)
    channel = WsChannel(trio.SocketStream(ours), outbox_limit=10**7, max_message=1000)
    frames = [bytes([65 + i % 26]) * 1000 for i in range(3000)]  # 3 MB: more than the buffer
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
        for frame in frames:
            channel.send(frame)
        assert await _read_exactly(peer, 3_000_000) == b"".join(frames)
        channel.send(b"after")
        assert await _read_exactly(peer, 5) == b"after"
        await trio.testing.wait_all_tasks_blocked()
        assert not nursery.child_tasks  # the writer that took the rest is gone
    ours.close()
    theirs.close()


async def test_on_a_socket_closing_writes_the_queued_frames_then_the_close_frame(
        autojump_clock: trio.testing.MockClock) -> None:
    ours, theirs = trio.socket.socketpair()
    peer = trio.SocketStream(theirs)
    channel = WsChannel(trio.SocketStream(ours), outbox_limit=1000, max_message=1000)
    async with trio.open_nursery() as nursery:
        channel.attach(nursery)
        nursery.start_soon(trio.sleep_forever)  # the reader, say: the close ends it too
        channel.send(b"last")
        channel.close(1000)
        assert (await _read_exactly(peer, 8)).startswith(b"last\x88")
    assert nursery.cancel_scope.cancelled_caught
    ours.close()
    theirs.close()
