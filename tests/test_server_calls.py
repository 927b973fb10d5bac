"""The server asks a client something and waits for its answer (emit with ack)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from switchboard.core import Session, hookimpl, incoming
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


class AskPlugin:
    """``ask:me`` asks the client a question and acks the client's answer."""

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [incoming("ask:me", None, self.ask)]

    async def ask(self, session: Session, data: Any) -> Any:
        return {"client_said": await session.call("question", data, timeout=5)}


@pytest.fixture
def switchboard_plugins() -> dict[str, object]:
    return {"ask": AskPlugin}


async def test_a_handler_can_ask_the_client_and_use_its_answer(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann")
    await client.emit("ask:me", {"q": "color?"}, id=1)
    ident, data = await client.expect_request("question")
    assert data == {"q": "color?"}
    await client.ack(ident, "blue")
    ack = await client._wait(lambda f: f.get("id") == 1, 5)
    assert ack == {"type": "ack", "id": 1, "data": {"client_said": "blue"}}


async def test_events_are_handled_in_the_order_they_were_sent(switchboard: Harness) -> None:
    client = await switchboard.connect(user="ann")
    rooms = [f"lead:{i}" for i in range(40)]  # within the default burst
    for i, room in enumerate(rooms):
        await client.emit("room:join", {"room": room}, id=i)
    acks = [await client._wait(lambda f, i=i: f.get("id") == i, 5) for i in range(40)]
    assert [a["data"]["room"] for a in acks] == rooms
