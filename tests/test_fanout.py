"""Fan-out: one publication reaches every member of a room exactly once, encoded
once and written as the same bytes to all; ``exclude`` skips the sender."""

from __future__ import annotations

from typing import Any

from switchboard.core.session import Codec, Session
from switchboard.testing import Harness, TestClient

MEMBERS = 12


class CountingCodec:
    """Wraps a codec and records what it encodes."""

    def __init__(self, inner: Codec) -> None:
        self.inner = inner
        self.encoded: list[str] = []

    def encode_event(self, event: str, data: Any, *args: Any, **kwargs: Any) -> bytes:
        self.encoded.append(event)
        return self.inner.encode_event(event, data, *args, **kwargs)


async def room_of(switchboard: Harness, n: int, room: str = "lead:1") -> list[TestClient]:
    clients = []
    for i in range(n):
        client = await switchboard.connect(user=f"agent{i}", role="agent")
        await client.request("room:join", {"room": room})
        clients.append(client)
    return clients


def session_of(switchboard: Harness, client: TestClient) -> Session:
    return switchboard.server.hub.sessions[client.session["sid"]]


class RecordingTransport:
    """A session's transport that also keeps the frames queued to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.written.append(frame)
        self.inner.send(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def record_writes(session: Session) -> list[bytes]:
    """Capture the frames fan-out queues for ``session`` (they are still sent)."""
    recording = RecordingTransport(session.transport)
    session.transport = recording
    return recording.written


async def test_publication_reaches_each_member_exactly_once(switchboard: Harness) -> None:
    clients = await room_of(switchboard, MEMBERS)
    await switchboard.app.publish("t1", "lead:1", "lead:moved", {"stage": "won"})
    for client in clients:
        assert await client.expect("lead:moved") == {"stage": "won"}
    await clients[0].settle(1)
    for client in clients:
        assert client.received("lead:moved") == []


async def test_each_device_of_a_user_in_the_room_gets_its_own_copy(switchboard: Harness) -> None:
    phone = await switchboard.connect(user="ann", role="agent")
    laptop = await switchboard.connect(user="ann", role="agent")
    for device in (phone, laptop):
        await device.request("room:join", {"room": "lead:1"})
    await switchboard.app.publish("t1", "lead:1", "lead:moved", 1)
    assert await phone.expect("lead:moved") == 1
    assert await laptop.expect("lead:moved") == 1
    await phone.settle(1)
    assert phone.received("lead:moved") == laptop.received("lead:moved") == []


async def test_publications_arrive_in_order_at_every_member(switchboard: Harness) -> None:
    clients = await room_of(switchboard, 4)
    for n in range(50):
        await switchboard.app.publish("t1", "lead:1", "tick", n)
    for client in clients:
        assert [await client.expect("tick") for _ in range(50)] == list(range(50))


async def test_frame_is_encoded_once_and_the_same_bytes_go_to_every_member(
        switchboard: Harness) -> None:
    clients = await room_of(switchboard, MEMBERS)
    sessions = [session_of(switchboard, c) for c in clients]
    codec = CountingCodec(sessions[0].codec)
    writes = []
    for session in sessions:
        session.codec = codec
        writes.append(record_writes(session))
    await switchboard.app.publish("t1", "lead:1", "lead:moved", {"stage": "won"})
    assert codec.encoded == ["lead:moved"]
    frames = [w[0] for w in writes]
    assert all(len(w) == 1 for w in writes)
    assert all(frame is frames[0] for frame in frames)
    for client in clients:
        assert await client.expect("lead:moved") == {"stage": "won"}


async def test_frame_is_encoded_once_per_codec(switchboard: Harness) -> None:
    clients = await room_of(switchboard, 6)
    sessions = [session_of(switchboard, c) for c in clients]
    first, second = CountingCodec(sessions[0].codec), CountingCodec(sessions[0].codec)
    for i, session in enumerate(sessions):
        session.codec = first if i % 2 else second
    await switchboard.app.publish("t1", "lead:1", "lead:moved", None)
    assert first.encoded == second.encoded == ["lead:moved"]
    for client in clients:
        assert await client.expect("lead:moved") is None


async def test_exclude_skips_the_sender(switchboard: Harness) -> None:
    sender, *others = await room_of(switchboard, 4)
    await switchboard.app.publish("t1", "lead:1", "typing", {"user": "agent0"},
                                  exclude=session_of(switchboard, sender))
    for client in others:
        assert await client.expect("typing") == {"user": "agent0"}
    await sender.settle(1)
    assert sender.received("typing") == []


async def test_exclude_skips_only_that_device_of_the_user(switchboard: Harness) -> None:
    phone = await switchboard.connect(user="ann", role="agent")
    laptop = await switchboard.connect(user="ann", role="agent")
    await switchboard.app.publish("t1", "user:ann", "read", {"message": 9},
                                  exclude=session_of(switchboard, phone))
    assert await laptop.expect("read") == {"message": 9}
    await phone.settle(1)
    assert phone.received("read") == []


async def test_publication_to_an_empty_room_reaches_no_one(switchboard: Harness) -> None:
    clients = await room_of(switchboard, 3)
    await switchboard.app.publish("t1", "lead:2", "lead:moved", 1)
    await clients[0].settle(1)
    for client in clients:
        assert client.received("lead:moved") == []
        await client.request("room:leave", {"room": "lead:1"})
