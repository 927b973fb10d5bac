"""Client frames as they come off the wire: split, joined, fragmented, malformed.

The reader parses the usual frame (a whole masked text or binary message, a
ping, a pong) itself and hands every other kind to wsproto from that frame on;
both paths must give the same messages, in order.
"""

from __future__ import annotations

import json
import os

import trio
from switchboard.testing import Harness, TestClient


def frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True, masked: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ping_envelope(probe: object) -> bytes:
    return json.dumps({"type": "ping", "data": {"probe": probe}}).encode()


async def pongs(client: TestClient, count: int) -> list[object]:
    return [(await client.expect("pong", timeout=5))["probe"] for _ in range(count)]


async def test_a_frame_split_across_reads_and_frames_sharing_one(switchboard: Harness) -> None:
    client = await switchboard.connect()
    first, second, third = (frame(ping_envelope(n)) for n in (1, 2, 3))
    await client._send_raw(first[:1])
    await trio.sleep(0.01)
    await client._send_raw(first[1:5])
    await trio.sleep(0.01)
    await client._send_raw(first[5:] + second + third[:3])
    await trio.sleep(0.01)
    await client._send_raw(third[3:])
    assert await pongs(client, 3) == [1, 2, 3]


async def test_a_long_message_with_a_16_bit_length(switchboard: Harness) -> None:
    client = await switchboard.connect()
    probe = "x" * 1000
    await client._send_raw(frame(ping_envelope(probe)))
    assert await pongs(client, 1) == [probe]


async def test_a_fragmented_message_then_simple_ones(switchboard: Harness) -> None:
    client = await switchboard.connect()
    whole = ping_envelope("fragmented")
    await client._send_raw(frame(ping_envelope(0)))
    await client._send_raw(frame(whole[:10], fin=False) + frame(whole[10:], opcode=0x0))
    await client._send_raw(frame(ping_envelope(2)))
    assert await pongs(client, 3) == [0, "fragmented", 2]


async def test_pongs_and_pings_between_messages_are_not_messages(switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client._send_raw(frame(b"", opcode=0xA) + frame(ping_envelope(1))
                           + frame(b"hi", opcode=0x9) + frame(ping_envelope(2)))
    assert await pongs(client, 2) == [1, 2]


async def test_text_that_is_not_utf8_closes_with_protocol_error(switchboard: Harness) -> None:
    client = await switchboard.connect()
    other = await switchboard.connect(user="u2")
    await client._send_raw(frame(b'{"type":"ping","data":"\xff\xfe"}'))
    code, _ = await client.expect_closed(timeout=10)
    assert code == 1002
    await other.emit("ping", {"probe": "still here"})
    assert await pongs(other, 1) == ["still here"]


async def test_an_unmasked_frame_closes_with_protocol_error(switchboard: Harness) -> None:
    client = await switchboard.connect()
    await client._send_raw(frame(ping_envelope(1), masked=False))
    code, _ = await client.expect_closed(timeout=10)
    assert code == 1002


async def test_a_frame_announcing_more_than_the_limit_closes_before_it_arrives(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    too_big = frame(b"x" * (switchboard.config.server.max_payload + 1))
    await client._send_raw(too_big[:14])  # only the header: nothing is buffered waiting
    code, _ = await client.expect_closed(timeout=10)
    assert code == 1009


async def test_a_close_without_a_status_code_is_answered_1000(switchboard: Harness) -> None:
    # RFC 6455 forbids sending 1005 ("no status"); a browser's ws.close() sends
    # a close frame with no code, and must see a clean 1000 back.
    client = await switchboard.connect()
    await client._send_raw(frame(b"", opcode=0x8))
    code, _ = await client.expect_closed(timeout=10)
    assert code == 1000


async def test_a_message_in_too_many_fragments_closes_1009(switchboard: Harness) -> None:
    client = await switchboard.connect()
    other = await switchboard.connect(user="u2")
    await client._send_raw(frame(b"{", fin=False) + frame(b"", opcode=0x0, fin=False) * 1100)
    code, _ = await client.expect_closed(timeout=10)
    assert code == 1009
    await other.emit("ping", {"probe": "still here"})
    assert await pongs(other, 1) == ["still here"]


async def test_a_message_in_many_small_fragments_within_the_limit_arrives(
        switchboard: Harness) -> None:
    client = await switchboard.connect()
    whole = ping_envelope("in pieces")
    pieces = [whole[i:i + 1] for i in range(len(whole))]
    frames = [frame(pieces[0], fin=False)]
    frames += [frame(p, opcode=0x0, fin=False) for p in pieces[1:-1]]
    frames.append(frame(pieces[-1], opcode=0x0))
    await client._send_raw(b"".join(frames))
    assert await pongs(client, 1) == ["in pieces"]
