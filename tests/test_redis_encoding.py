"""What goes through Redis comes out as it went in: the broker's encoding
marks bytes and several arguments (``Args``) inside the JSON it stores, and
data that a client or a backend publishes must never be mistaken for those
marks (on one node it is delivered as it is; it must be on several too)."""

from __future__ import annotations

from typing import Any

import trio
from switchboard.core.args import Args
from switchboard.core.broker import Publication
from switchboard.core.redis_encoding import decode_publication, dumps, encode_publication, loads

from tests.redis_nodes import (
    TIMEOUT,
    cluster_config,
    redis_prefix_fixture,  # noqa: F401  (fixture)
    start_nodes,
)

#: JSON a publisher may send that has the shape of the encoding's marks.
LOOKALIKES: list[Any] = [
    {"\x00b": "!!!"},  # not base64
    {"\x00b": "aGk="},  # base64 of b"hi"
    {"\x00a": [1, 2]},
    {"\x00a": 5},
    {"\x00\x00b": "x", "k": {"\x00a": "abc"}, "\x00": None},
    [{"\x00b": ""}, "\x00b", {"\x00\x00\x00a": []}],
    {"a": "\x00", "\x00b": {"\x00b": "aGk="}},
]


def test_data_shaped_like_the_marks_is_decoded_as_it_was() -> None:
    for data in LOOKALIKES:
        assert loads(dumps(data)) == data
        p = Publication("t1", "lobby:1", "x", data, None, False)
        assert decode_publication(encode_publication(p)).data == data


def test_bytes_and_several_arguments_are_decoded_as_such() -> None:
    data = {"file": b"\x00\xff", "\x00b": b"k", "more": [Args(1, b"2", {"\x00a": 3})]}
    decoded = loads(dumps(data))
    assert decoded == data
    assert isinstance(decoded["more"][0], Args) and decoded["more"][0].values[1] == b"2"
    args = loads(dumps(Args("\x00b", {"\x00b": "!!!"})))
    assert isinstance(args, Args) and args.values == ("\x00b", {"\x00b": "!!!"})


async def test_published_lookalikes_reach_every_node_as_they_were_sent(
        redis_prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        nodes = await start_nodes(cluster_config(redis_prefix), nursery, 2)
        clients = [await node.connect(f"u{n}", "t1") for n, node in enumerate(nodes)]
        for client in clients:
            assert await client.request("room:join", {"room": "lobby:1"}) == {"room": "lobby:1"}
        for data in LOOKALIKES:
            response = await nodes[0].http().post(
                "/api/v1/emit", headers=nodes[0].api_headers(),
                json={"tenant": "t1", "room": "lobby:1", "event": "x", "data": data})
            assert response.status_code == 202
        for client in clients:  # the publishing node's own member, and the other's
            assert [await client.expect("x", timeout=TIMEOUT) for _ in LOOKALIKES] == LOOKALIKES
        for node in nodes:
            await node.stop()
