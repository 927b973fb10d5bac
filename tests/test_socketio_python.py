"""The Socket.IO server judged by the python-socketio client (PyPI), the blocking
``socketio.Client`` run in worker threads, against the server on a real port.

python-socketio's client hands recovery offsets to handlers as an extra
argument, so connection state recovery stays off here (as it is by default).
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import Any

import pytest
import socketio
import trio
from socketio_fixtures import TIMEOUT, EchoPlugin, publish, socketio_config, wait_until
from switchboard.core.config import Config
from switchboard.testing import Harness


@pytest.fixture
def switchboard_config() -> Config:
    # python-socketio's polling client can lose its close packet on disconnect
    # (its write loop stops once the state says disconnecting, before sending
    # it) and then waits for its pending poll: a short ping interval ends that
    # poll well within TIMEOUT, as the ping would on any server.
    return socketio_config({"heartbeat": {"interval": 3.0, "timeout": 5.0}})


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object]:
    return {"echo": EchoPlugin}


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call in a worker thread, bounded in time."""
    with trio.fail_after(TIMEOUT):
        return await trio.to_thread.run_sync(partial(fn, *args, **kwargs),
                                             abandon_on_cancel=True)


class PyClient:
    """A ``socketio.Client`` whose events (any namespace) land in a queue."""

    def __init__(self, live: Harness, *, answers: Mapping[str, Any] | None = None) -> None:
        self.live = live
        self.sio = socketio.Client(reconnection=False)
        self.events: queue.Queue[tuple[str, str, tuple[Any, ...]]] = queue.Queue()
        self._kept: list[tuple[str, str, tuple[Any, ...]]] = []
        for name in ("connect", "connect_error", "disconnect"):
            self.sio.on(name, partial(self._record, name), namespace="*")
        for name, answer in (answers or {}).items():
            self.sio.on(name, partial(self._answer, name, answer), namespace="*")
        self.sio.on("*", self._record, namespace="*")

    def _record(self, event: str, namespace: str, *args: Any) -> None:
        self.events.put((event, namespace, args))

    def _answer(self, event: str, answer: Any, namespace: str, *args: Any) -> Any:
        self.events.put((event, namespace, args))
        return answer

    async def connect(self, token: str | None = None, *, namespaces: list[str] | None = None,
                      transports: list[str] | None = None,
                      headers: Mapping[str, str] | None = None) -> None:
        auth = {"token": token} if token is not None else None
        await in_thread(self.sio.connect, self.live.http_url(), auth=auth,
                        headers=dict(headers or {}), transports=transports,
                        namespaces=namespaces or ["/"], wait_timeout=TIMEOUT)

    async def call(self, event: str, data: Any = None, *, namespace: str = "/") -> Any:
        return await in_thread(self.sio.call, event, data, namespace=namespace,
                               timeout=TIMEOUT)

    async def next(self, event: str, namespace: str = "/") -> tuple[Any, ...]:
        """The arguments of the next ``event`` in ``namespace`` (others are kept)."""
        for i, (name, ns, args) in enumerate(self._kept):
            if (name, ns) == (event, namespace):
                del self._kept[i]
                return args
        with trio.fail_after(TIMEOUT):
            while True:
                got = await trio.to_thread.run_sync(
                    partial(self.events.get, timeout=TIMEOUT), abandon_on_cancel=True)
                if got[:2] == (event, namespace):
                    return got[2]
                self._kept.append(got)

    def received(self, event: str) -> list[tuple[Any, ...]]:
        pending = list(self._kept)
        while not self.events.empty():
            pending.append(self.events.get_nowait())
        self._kept = pending
        return [args for name, _, args in pending if name == event]

    async def close(self) -> None:
        await in_thread(self.sio.disconnect)
        # and wait for its threads (its read loop joins its write loop): one
        # left running would log "packet queue is empty" into a later test
        await in_thread(self.sio.eio.wait)


@pytest.fixture
async def clients(switchboard_live: Harness) -> AsyncIterator[Callable[..., PyClient]]:
    """Make python-socketio clients; all are disconnected at the end."""
    made: list[PyClient] = []

    def make(**kwargs: Any) -> PyClient:
        client = PyClient(switchboard_live, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


# -- transports ---------------------------------------------------------------------


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_client_connects_on_one_transport_and_gets_acks(
        switchboard_live: Harness, clients: Callable[..., PyClient],
        transports: list[str]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("alice", "acme"), transports=transports)
    assert client.sio.transport() == transports[0]
    assert await client.call("room:join", {"room": "lead:1"}) == {"room": "lead:1"}


async def test_client_starts_on_polling_and_upgrades_to_websocket(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("alice", "acme"),
                         transports=["polling", "websocket"])
    await wait_until(lambda: client.sio.transport() == "websocket")
    assert await client.call("echo", "after upgrade") == "after upgrade"


async def test_bearer_header_on_the_handshake_authenticates(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    token = switchboard_live.token("alice", "acme")
    await client.connect(headers={"Authorization": f"Bearer {token}"},
                         transports=["websocket"])
    assert await client.call("echo", 1) == 1


# -- acks --------------------------------------------------------------------------------


async def test_call_returns_the_handler_result(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("alice", "acme"), transports=["websocket"])
    assert await client.call("echo", {"n": [1, 2.5, None], "s": "é"}) == {
        "n": [1, 2.5, None], "s": "é"}


async def test_refused_call_returns_an_error_object(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("carol", "acme", "customer"),
                         transports=["websocket"])
    answer = await client.call("room:join", {"room": "lead:1"})
    assert answer["error"]["code"] == "forbidden"
    assert answer["error"]["event"] == "room:join"


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_server_call_is_answered_by_the_client_handler(
        switchboard_live: Harness, clients: Callable[..., PyClient],
        transports: list[str]) -> None:
    client = clients(answers={"question": {"answer": 42}})
    await client.connect(switchboard_live.token("alice", "acme"), transports=transports)
    assert await client.call("ask:me", {"q": "life"}) == {"client_said": {"answer": 42}}
    assert await client.next("question") == ({"q": "life"},)


# -- authentication and namespaces ---------------------------------------------------------


async def test_bad_token_makes_connect_raise_connection_error(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    bad = switchboard_live.token("alice", "acme", secret="not-the-server-secret-0123456789ab")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(bad, transports=["websocket"])
    (error,) = await client.next("connect_error")
    assert error["message"] == "Unauthorized"
    assert error["data"]["code"] == "unauthorized"


async def test_custom_namespace_connects_and_handles_calls(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("alice", "acme"), namespaces=["/atendimento"],
                         transports=["websocket"])
    assert await client.call("room:join", {"room": "ticket:7"}, namespace="/atendimento") == {
        "room": "ticket:7"}
    await publish(switchboard_live, {"event": "ticket:updated", "tenant": "acme",
                                     "room": "ticket:7", "data": {"id": 7}})
    assert await client.next("ticket:updated", "/atendimento") == ({"id": 7},)


async def test_unknown_namespace_makes_connect_raise_connection_error(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(switchboard_live.token("alice", "acme"), namespaces=["/nope"],
                             transports=["websocket"])
    (error,) = await client.next("connect_error", "/nope")
    assert error == {"message": "Invalid namespace"}


# -- rooms ---------------------------------------------------------------------------------


async def test_room_member_receives_a_published_event_and_other_tenant_does_not(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    alice, mallory = clients(), clients()
    await alice.connect(switchboard_live.token("alice", "acme"), transports=["polling"])
    await mallory.connect(switchboard_live.token("mallory", "globex"),
                          transports=["websocket"])
    for client in (alice, mallory):
        assert await client.call("room:join", {"room": "lead:1"}) == {"room": "lead:1"}
    await publish(switchboard_live, {"event": "lead:updated", "tenant": "acme",
                                     "room": "lead:1", "data": {"stage": "won"}})
    assert await alice.next("lead:updated") == ({"stage": "won"},)
    await publish(switchboard_live, {"event": "lead:updated", "tenant": "globex",
                                     "room": "lead:1", "data": {"stage": "globex"}})
    assert await mallory.next("lead:updated") == ({"stage": "globex"},)
    assert mallory.received("lead:updated") == []


# -- binary ------------------------------------------------------------------------------------


ALL_BYTES = bytes(range(256)) * 4


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_binary_payload_round_trips(
        switchboard_live: Harness, clients: Callable[..., PyClient],
        transports: list[str]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("alice", "acme"), transports=transports)
    assert await client.call("echo", {"file": ALL_BYTES, "name": "x.bin"}) == {
        "file": ALL_BYTES, "name": "x.bin"}
    assert await client.call("echo:event", [b"\x00", ALL_BYTES]) == {"sent": True}
    assert await client.next("echoed") == ([b"\x00", ALL_BYTES],)


# -- argument lists -----------------------------------------------------------------------


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_several_arguments_reach_a_handler_of_every_argument_and_come_back(
        switchboard_live: Harness, clients: Callable[..., PyClient],
        transports: list[str]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("alice", "acme"), transports=transports)
    # a tuple is several arguments, both ways
    assert tuple(await client.call("echo:args", (1, "two", ALL_BYTES))) == (1, "two", ALL_BYTES)
    assert await client.call("emit:args", ()) == {"sent": 0}
    assert await client.call("echo", ({"n": 1}, "extra")) == {"n": 1}


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_server_emits_and_calls_with_several_arguments(
        switchboard_live: Harness, clients: Callable[..., PyClient],
        transports: list[str]) -> None:
    client = clients(answers={"question": (42, b"\x01", "x")})
    await client.connect(switchboard_live.token("alice", "acme"), transports=transports)
    assert await client.call("emit:args", (1, b"\x00\xff")) == {"sent": 2}
    assert await client.next("multi") == (1, b"\x00\xff")
    assert await client.next("multi:user") == (1, b"\x00\xff")
    assert await client.call("ask:args", (1, "two")) == {"first": 42,
                                                         "all": [42, b"\x01", "x"]}
    assert await client.next("question") == (1, "two")


# -- disconnection -----------------------------------------------------------------------------


async def test_token_expiry_triggers_a_server_disconnect(
        switchboard_live: Harness, clients: Callable[..., PyClient]) -> None:
    client = clients()
    await client.connect(switchboard_live.token("alice", "acme", ttl=2),
                         transports=["websocket"])
    (reason,) = await client.next("disconnect")
    assert reason == client.sio.reason.SERVER_DISCONNECT
    await wait_until(lambda: not client.sio.connected)
