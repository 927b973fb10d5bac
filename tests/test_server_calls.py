"""The server asks a client something and waits for its answer (emit with ack)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from switchboard.core import Session
from switchboard.testing import Harness


def only_session(switchboard: Harness, user: str) -> Session:
    (session,) = [s for s in switchboard.server.hub.sessions.values() if s.user_id == user]
    return session


async def test_server_call_returns_the_clients_answer(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann")
    session = only_session(switchboard, "ann")
    answer: list[Any] = []

    async def ask() -> None:
        answer.append(await session.call("survey:question", {"q": "rate us"}, timeout=5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        ident, data = await client.expect_request("survey:question")
        assert data == {"q": "rate us"}
        await client.ack(ident, {"stars": 5})
    assert answer == [{"stars": 5}]


async def test_server_call_times_out_when_the_client_never_answers(
        switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann")
    session = only_session(switchboard, "ann")
    started = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await session.call("survey:question", {"q": "?"}, timeout=3)
    assert trio.current_time() - started == pytest.approx(3, abs=0.01)
    ident, _ = await client.expect_request("survey:question")
    assert ident.startswith("s")


async def test_an_ack_for_an_unknown_request_is_an_unknown_event(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann")
    await client.ack("s999", {"late": True})
    error = await client.expect_error("unknown_event")
    assert error["event"] == "ack"
