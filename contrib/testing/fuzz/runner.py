"""The runner: a case's exchange with the server, and the checks after it."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

from .cases import (
    BYSTANDER,
    CANARY,
    IKEY,
    INTRUDER,
    KEY,
    PROFILED,
    SID,
    TENANT,
    TENANT_FENCE,
    TICKET,
    TIMEOUT,
    TOKEN,
    WIDGET,
    Case,
)
from .families import ws_frame
from .outcomes import Failure, Outcome, failure_type, innermost, last_frames
from .targets import InProcessTarget, Target
from .wire import engineio_json, http_statuses, json_problem, server_frames


async def _read_all(stream: trio.abc.Stream, bound: float = TIMEOUT) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (data, True) if it did not
    close within ``bound`` seconds."""
    data = bytearray()
    with trio.move_on_after(bound):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return bytes(data), False
            if not chunk:
                return bytes(data), False
            data += chunk
    return bytes(data), True


async def _read_head(stream: trio.abc.Stream, data: bytearray) -> bool:
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return False
        data += chunk
    return True


async def _send(stream: trio.abc.Stream, chunks: Iterable[bytes]) -> bool:
    try:
        for chunk in chunks:
            await stream.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def _send_eof(stream: trio.SocketStream) -> None:
    try:
        await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def http(host: str, port: int, request: bytes) -> tuple[int | None, bytes]:
    """One request on a new connection: the status and the body of the answer.

    Read until the answer is complete, not until the server closes: hypercorn
    drops the answer to a request whose client has half-closed, so the
    request is not followed by EOF (and a remote server of an older version
    kept a ``Connection: close`` connection open a second more).
    """
    stream = await trio.open_tcp_stream(host, port)
    data = bytearray()
    try:
        with trio.move_on_after(TIMEOUT):
            while not _complete(data):
                try:
                    chunk = await stream.receive_some(65536) if data else None
                    if chunk is None:
                        await stream.send_all(request)
                        chunk = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not chunk:
                    break
                data += chunk
    finally:
        await stream.aclose()
    statuses, _ = http_statuses(bytes(data))
    return (statuses[0] if statuses else None), bytes(data).partition(b"\r\n\r\n")[2]


def _complete(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds a whole HTTP response (with its body)."""
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep:
        return False
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    if length:
        return len(body) >= int(length.group(1))
    if re.search(rb"\r\ntransfer-encoding:\s*chunked", head, re.IGNORECASE):
        return body.endswith(b"0\r\n\r\n")
    return False


def _post(target: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: text/plain;charset=UTF-8\r\n{extra}Connection: close\r\n\r\n"
            ).encode() + body


def _ws_upgrade(target: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


class _SetupFailed(Exception):
    pass


@attrs.define
class _Exchange:
    """What one case got back."""

    statuses: list[int] = attrs.Factory(list)
    #: The status of the first answer on the case's own connection.
    first: int | None = None
    texts: list[tuple[str, str]] = attrs.Factory(list)  # (where, JSON text)
    answer: list[str] = attrs.Factory(list)
    #: The case's own user.
    user: str = ""
    #: What came back on the case's connection, as it came (HTTP cases).
    raw: bytes = b""


#: What the fuzz tenant has stored that the tenant fence's cases name, as its
#: API answers it (the ticket is not here: its timers may change it).
_STATE = {"/api/v1/leads/1": "lead 1", "/api/v1/conversations/c1": "conversation c1",
          "/api/v1/conversations/c1/messages": "messages in c1"}


def _around(text: str, needle: str, width: int = 60) -> str:
    """``text`` near the first ``needle`` in it, for a failure's summary."""
    at = max(text.find(needle), 0)
    return repr(text[max(at - width, 0):at + len(needle) + width])


def _changed(before: bytes, after: bytes, width: int = 80) -> str:
    """Where ``after`` first differs from ``before``, both, for a failure's summary."""
    at = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
              min(len(before), len(after)))
    start = max(at - width // 2, 0)
    return f"{before[start:at + width]!r} became {after[start:at + width]!r}"


class FrontDoor:
    """Runs cases against a target and checks the server after each."""

    def __init__(self, target: Target, nursery: trio.Nursery) -> None:
        self.target = target
        self._nursery = nursery
        self._bystander: WebSocketConnection | None = None
        self._cases = itertools.count(1)
        self._probes = itertools.count(1)
        #: The fuzzer's ticket (see :meth:`_seed`); a UUID that names none
        #: until it is made, or where the desk is not enabled.
        self._ticket = "00000000-0000-4000-8000-000000000000"
        #: What the bystander received in the last check, the probe aside.
        self._seen: list[str] = []

    async def start(self) -> None:
        if isinstance(self.target, InProcessTarget) and self.target.server is None:
            await self.target.start()
        await self._ready()

    async def stop(self) -> None:
        if self._bystander is not None:
            with trio.move_on_after(TIMEOUT):
                await self._bystander.aclose()
        if isinstance(self.target, InProcessTarget):
            await self.target.stop()

    async def _ready(self) -> None:
        if self.target.dead:
            if self._bystander is not None:
                with trio.move_on_after(TIMEOUT):
                    await self._bystander.aclose()
                self._bystander = None
            await self.target.restart()
        if self._bystander is None or self._bystander.closed is not None:
            url = (f"ws://{self.target.host}:{self.target.port}/ws?token="
                   f"{self.target.token(BYSTANDER)}")
            with trio.fail_after(TIMEOUT):
                self._bystander = await connect_websocket_url(self._nursery, url)
                session = json.loads(await self._bystander.get_message())
            if session.get("type") != "session":
                raise RuntimeError(f"the bystander got {session!r} first, not its session")
            await self._seed(self._bystander)

    async def _seed(self, bystander: WebSocketConnection) -> None:
        """Put the bystander where the cases' events go: room lead:1 and
        conversation c1 (made here, with the bystander as a participant); and
        make what the plugin events act on: a ticket whose customer is the
        bystander (an agent of the tenant: the desk's events reach it), queue
        ``support`` (without members), lead 1 and WhatsApp session ``main``
        (never started), where the desk, the pipeline and WhatsApp are
        enabled. Each holds
        :data:`CANARY`, and so does a message of the bystander's in c1."""
        key = f"X-API-Key: {self.target.api_key}\r\n"
        body = json.dumps({"tenant": TENANT, "id": "c1", "title": CANARY,
                           "participants": [{"userId": BYSTANDER}]}).encode()
        with trio.fail_after(TIMEOUT):
            status, answer = await http(self.target.host, self.target.port, _post(
                "/api/v1/conversations", body, key))
            if status not in (201, 409):
                raise RuntimeError(f"POST /api/v1/conversations answered {status} {answer!r}")
            status, answer = await http(self.target.host, self.target.port, _post(
                "/api/v1/conversations/c1/messages", json.dumps(
                    {"tenant": TENANT, "senderId": BYSTANDER, "content": {"text": CANARY},
                     "clientId": "fuzz-seed"}).encode(), key))
            if status not in (200, 201):
                raise RuntimeError(f"POST /api/v1/conversations/c1/messages answered "
                                   f"{status} {answer!r}")
            status, answer = await http(self.target.host, self.target.port, _post(
                "/api/v1/tickets", json.dumps({"tenant": TENANT, "subject": CANARY,
                                               "customerId": BYSTANDER}).encode(), key))
            if status == 201:
                self._ticket = json.loads(answer)["id"]
            elif status != 404:
                raise RuntimeError(f"POST /api/v1/tickets answered {status} {answer!r}")
            status, answer = await http(self.target.host, self.target.port, _post(
                "/api/v1/queues", json.dumps({"tenant": TENANT, "id": "support"}).encode(), key))
            if status not in (201, 404):
                raise RuntimeError(f"POST /api/v1/queues answered {status} {answer!r}")
            secret = {name: CANARY for name in ("accessToken", "appSecret", "verifyToken")}
            status, answer = await http(self.target.host, self.target.port, _post(
                "/api/v1/whatsapp/sessions", json.dumps(
                    {"tenant": TENANT, "id": "main", "provider": "cloud",
                     "cloud": {"phoneNumberId": "5511999990000", **secret}}).encode(), key))
            if status not in (201, 404, 409):
                raise RuntimeError(f"POST /api/v1/whatsapp/sessions answered {status} "
                                   f"{answer!r}")
            status, answer = await http(self.target.host, self.target.port, _post(
                "/api/v1/leads", json.dumps({"tenant": TENANT, "id": "1",
                                             "title": CANARY}).encode(), key))
            if status not in (201, 404, 409):
                raise RuntimeError(f"POST /api/v1/leads answered {status} {answer!r}")
            await bystander.send_message(json.dumps(
                {"type": "room:join", "data": {"room": "lead:1"}, "id": 1}))
            await bystander.send_message(json.dumps(
                {"type": "conversation:join", "data": {"conversationId": "c1"}, "id": 2}))
            acked: set[int] = set()
            while acked != {1, 2}:
                frame = json.loads(await bystander.get_message())
                if frame.get("id") in (1, 2):
                    if frame.get("type") != "ack":
                        raise RuntimeError(f"the bystander could not join: {frame!r}")
                    acked.add(frame["id"])

    # -- blocking entry points, for Hypothesis running in a worker thread --

    def run_blocking(self, case: Case) -> Outcome:
        outcome: Outcome = trio.from_thread.run(self.run, case)
        return outcome

    def check(self, case: Case) -> None:
        """Run ``case``; raise :class:`FrontDoorFailure` naming it if anything failed."""
        outcome = self.run_blocking(case)
        if outcome.failures:
            signature = " + ".join(sorted({f.signature for f in outcome.failures}))
            raise failure_type(signature)(outcome.report())

    # -- one case --

    async def run(self, case: Case) -> Outcome:
        try:
            await self._ready()
        except (OSError, trio.TooSlowError, HandshakeError, ConnectionClosed) as exc:
            raise RuntimeError(f"the server at {self.target.host}:{self.target.port} "
                               f"stopped answering: {exc!r}") from exc
        started = time.perf_counter()
        mark = self.target.log_mark()
        fence = case.family == TENANT_FENCE
        user = case.user or {INTRUDER: INTRUDER, TENANT: "outsider" if fence else "case"}[
            case.tenant] + str(next(self._cases))
        token = self.target.token(user, tenant=case.tenant,
                                  role="customer" if case.role == "guest" else case.role)
        env = {TOKEN: token.encode(), KEY: self.target.api_key.encode(),
               IKEY: (self.target.intruder_key or "none").encode(),
               WIDGET: (self.target.guest_widget or "none").encode(),
               TICKET: self._ticket.encode()}
        exchange = _Exchange(user=user)
        before = await self._tenant_state() if fence else {}
        try:
            await self._exchange(case, env, exchange)
        except _SetupFailed as exc:
            exchange.answer.append(f"set-up failed: {exc}")
        except OSError as exc:
            exchange.answer.append(f"connect failed: {exc.strerror or exc}")
        outcome = Outcome(case, ", ".join(exchange.answer) or "nothing")
        outcome.failures += await self._checks(case, exchange)
        if fence and not self.target.dead:
            outcome.failures += self._leaks(case, exchange, before, await self._tenant_state())
        outcome.failures += self.target.log_problems(mark)
        outcome.seconds = time.perf_counter() - started
        return outcome

    async def _exchange(self, case: Case, env: dict[bytes, bytes], out: _Exchange) -> None:
        host, port = self.target.host, self.target.port
        setup = case.setup
        sid = b""
        if setup.startswith(("eio-polling", "eio-upgrade")):
            sid = await self._polling_session(env, connect=setup != "eio-polling", out=out)
            env = {**env, SID: sid}
        chunks = [_render(chunk, env) for chunk in case.chunks]
        stream = await trio.open_tcp_stream(host, port)
        try:
            received = bytearray()
            if setup == "ws":
                await self._ws_handshake(stream, f"/ws?token={env[TOKEN].decode()}", received)
            elif setup == "ws-guest":
                await self._ws_handshake(stream, f"/ws?widget={env[WIDGET].decode()}", received)
            elif setup.startswith("eio-ws"):
                await self._ws_handshake(stream, "/socket.io/?EIO=4&transport=websocket&token="
                                         + env[TOKEN].decode(), received)
                await self._wait_frame(stream, received, "0")
                if setup in ("eio-ws+connect", "eio-ws+profiles"):
                    await stream.send_all(ws_frame(b"40", mask=b"\x00\x00\x00\x00"))
                    await self._wait_frame(stream, received, "40")
                if setup == "eio-ws+profiles":
                    for namespace in PROFILED:
                        await stream.send_all(ws_frame(f"40{namespace},".encode(),
                                                       mask=b"\x00\x00\x00\x00"))
                        # (refused where the target does not bind it: "44/...")
                        await self._wait_frame(stream, received, f"40{namespace},",
                                               f"44{namespace},")
            elif setup == "eio-upgrade":
                await self._ws_handshake(stream, "/socket.io/?EIO=4&transport=websocket&sid="
                                         + sid.decode(), received)
            sent = await _send(stream, chunks)
            if case.tenant != TENANT or case.role == "guest":
                await self.target.quiet()  # (the intruder's joins are done)
                await self._publish_canaries(out, to_user=case.tenant != TENANT)
            # All the server answers without more input, then EOF and the rest.
            closed = await self._read_until_quiet(stream, received)
            timed_out = False
            if not closed:
                await _send_eof(stream)
                data, timed_out = await _read_all(stream)
                received += data
        finally:
            await stream.aclose()
        if setup == "raw" or setup.startswith("eio-polling"):
            out.raw = bytes(received)
            statuses, rest = http_statuses(bytes(received))
            out.statuses += statuses
            out.first = next((s for s in statuses if s >= 200), None)
            out.answer.append("/".join(map(str, statuses)) or "no answer")
            self._frames(rest, "the case's WebSocket", out, engineio=b"/socket.io/" in case.data)
        else:
            self._frames(bytes(received), "the case's WebSocket", out,
                         engineio=not setup.startswith("ws"))
        if not sent:
            out.answer.append("reset while sending")
        if timed_out:
            out.answer.append(f"not closed after EOF within {TIMEOUT:g} s")
        if setup.startswith("eio-polling") or setup == "eio-upgrade":
            await self._poll(sid, out)

    async def _read_until_quiet(self, stream: trio.abc.Stream, received: bytearray) -> bool:
        """Read until the server closes (True) or has nothing more to say
        without more input (False), within :data:`TIMEOUT`."""
        with trio.move_on_after(TIMEOUT):
            while (chunk := await self._receive_or_quiet(stream)) is not None:
                if not chunk:
                    return True
                received += chunk
        return False

    async def _receive_or_quiet(self, stream: trio.abc.Stream) -> bytes | None:
        """The next bytes (b"" at EOF), or None once the server is quiet."""
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:
            async def receive() -> None:
                try:
                    got.append(bytes(await stream.receive_some(65536)))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    got.append(b"")
                nursery.cancel_scope.cancel()

            async def quiet() -> None:
                await self.target.quiet()
                nursery.cancel_scope.cancel()

            nursery.start_soon(receive)
            nursery.start_soon(quiet)
        return got[0] if got else None

    def _frames(self, data: bytes, where: str, out: _Exchange, *, engineio: bool) -> None:
        close = None
        for opcode, payload in server_frames(data):
            if opcode == 0x1:
                text = payload.decode("utf-8", "replace")
                carried = engineio_json(text) if engineio else text
                if carried is not None:
                    out.texts.append((where, carried))
            elif opcode == 0x8:
                close = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else "-"
        if data:
            out.answer.append(f"close {close}" if close is not None else "eof without close")

    async def _ws_handshake(self, stream: trio.abc.Stream, target: str,
                            received: bytearray) -> None:
        await stream.send_all(_ws_upgrade(target))
        with trio.fail_after(TIMEOUT):
            if not await _read_head(stream, received):
                raise _SetupFailed(f"no answer to the handshake on {target.split('?')[0]}")
        head, _, rest = bytes(received).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise _SetupFailed(f"handshake answered {head[:40]!r}")
        received[:] = rest

    async def _wait_frame(self, stream: trio.abc.Stream, received: bytearray,
                          *prefixes: str) -> None:
        wanted = tuple(prefix.encode() for prefix in prefixes)
        with trio.fail_after(TIMEOUT):
            while not any(op == 1 and p.startswith(wanted)
                          for op, p in server_frames(bytes(received))):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise _SetupFailed(f"closed before the {prefixes[0]!r} packet")
                received += chunk

    async def _polling_session(self, env: dict[bytes, bytes], *, connect: bool,
                               out: _Exchange) -> bytes:
        host, port = self.target.host, self.target.port
        with trio.fail_after(TIMEOUT):
            status, body = await http(host, port, (
                "GET /socket.io/?EIO=4&transport=polling&token=" + env[TOKEN].decode()
                + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").encode())
        if status != 200 or not body.startswith(b"0{"):
            raise _SetupFailed(f"polling handshake answered {status} {body[:60]!r}")
        sid = str(json.loads(body[1:])["sid"]).encode()
        if connect:
            with trio.fail_after(TIMEOUT):
                status, body = await http(host, port, _post(
                    "/socket.io/?EIO=4&transport=polling&sid=" + sid.decode(), b"40"))
            if status != 200:
                raise _SetupFailed(f"CONNECT answered {status} {body[:60]!r}")
        return sid

    async def _poll(self, sid: bytes, out: _Exchange) -> None:
        """After a polling case: a CONNECT to an unknown namespace (always answered,
        so the poll does not wait), then one poll for what the session queued."""
        host, port = self.target.host, self.target.port
        path = "/socket.io/?EIO=4&transport=polling&sid=" + sid.decode()
        with trio.move_on_after(TIMEOUT) as scope:
            status, _ = await http(host, port, _post(path, b"40/fuzz-sentinel,"))
            if status is not None:
                out.statuses.append(status)
            status, body = await http(host, port, (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").encode())
        if scope.cancelled_caught:
            out.answer.append(f"poll: nothing within {TIMEOUT:g} s")
            return
        if status is not None:
            out.statuses.append(status)
        records = body.decode("utf-8", "replace").split("\x1e") if status == 200 else []
        for record in records:
            carried = engineio_json(record)
            if carried is not None:
                out.texts.append(("a polling answer", carried))
        kinds = "".join(r[:1] for r in records)
        out.answer.append(f"poll {status} [{kinds}]" if status == 200 else f"poll {status}")

    # -- the tenant's fence --

    async def _publish_canaries(self, out: _Exchange, *, to_user: bool) -> None:
        """During an intruder's or a guest's case: publish :data:`CANARY` to
        every session of the fuzz tenant (a guest is in none of its rooms), to
        its rooms the case's events name and, ``to_user``, to a user of the
        fuzz tenant named as the intruder."""
        audiences: list[dict[str, str]] = [
            {}, {"room": "lead:1"}, {"room": "conversation:c1"},
            {"room": f"ticket:{self._ticket}"}, {"room": f"tenant:{TENANT}:agents"},
            {"room": f"tenant:{TENANT}"}, *([{"user": out.user}] if to_user else [])]
        body = json.dumps([{"event": "fuzz:canary", "tenant": TENANT,
                            "data": {"canary": CANARY}, **audience}
                           for audience in audiences]).encode()
        with trio.move_on_after(TIMEOUT):
            status, answer = await http(self.target.host, self.target.port, _post(
                "/api/v1/emit", body, f"X-API-Key: {self.target.api_key}\r\n"))
            if status != 202:
                out.answer.append(f"canaries not published: {status} {answer[:80]!r}")

    async def _tenant_state(self) -> dict[str, tuple[int | None, bytes]]:
        """What the fuzz tenant has stored that an intruder's events name (the
        lead, the conversation and its messages), as its API answers it."""
        state: dict[str, tuple[int | None, bytes]] = {}
        for path in _STATE:
            with trio.move_on_after(TIMEOUT):
                state[path] = await http(self.target.host, self.target.port, (
                    f"GET {path}?tenant={TENANT} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"X-API-Key: {self.target.api_key}\r\nConnection: close\r\n\r\n"
                ).encode())
        return state

    def _leaks(self, case: Case, exchange: _Exchange,
               before: dict[str, tuple[int | None, bytes]],
               after: dict[str, tuple[int | None, bytes]]) -> list[Failure]:
        """After a tenant fence case: its user (an admin of another tenant, an
        intruder, or a customer of the fuzz tenant party to none of its things,
        an outsider) received none of the fuzz tenant's data, the fuzz
        tenant's bystander received nothing of an intruder's doing, what the
        fuzz tenant stored is as it was, and the intruder's API key was not
        allowed to act on the fuzz tenant."""
        who = ("an intruder" if case.tenant != TENANT
               else "a guest" if case.role == "guest" else "an outsider")
        failures = []
        if case.forbidden and exchange.first is not None and 200 <= exchange.first < 300:
            failures.append(Failure(
                "fence breached", f"HTTP {exchange.first} to a request of an API key of "
                f"tenant {INTRUDER} naming tenant {TENANT}", (),
                "fence breached: an intruder's API key acted on the fuzz tenant"))
        for needle in (CANARY, f'"{TENANT}"'):  # (its data, its name as a JSON string)
            if needle.encode() in exchange.raw:
                failures.append(Failure(
                    "fence breached", f"an HTTP answer to an API key of tenant {INTRUDER} "
                    f"held the fuzz tenant's data: "
                    f"{_around(exchange.raw.decode('latin-1'), needle)}",
                    (), "fence breached: the fuzz tenant's data reached an intruder"))
                break
        for where, text in exchange.texts:
            if CANARY in text:
                failures.append(Failure(
                    "fence breached", f"{where} ({case.role} of tenant {case.tenant}) received "
                    f"the fuzz tenant's data: {_around(text, CANARY)}", (),
                    f"fence breached: the fuzz tenant's data reached {who}"))
                break
        for message in self._seen:
            if INTRUDER in message:
                failures.append(Failure(
                    "fence breached", f"the bystander (tenant {TENANT}) received "
                    f"{_around(message, INTRUDER)}", (),
                    "fence breached: an intruder's doing reached the fuzz tenant"))
                break
        for path, then in before.items():
            now = after.get(path, (None, b""))
            if now != then:
                failures.append(Failure(
                    "fence breached", f"GET {path}?tenant={TENANT} answered {then[0]} before "
                    f"the case and {now[0]} after it: {_changed(then[1], now[1])}",
                    (), f"fence breached: {who} changed the fuzz tenant's {_STATE[path]}"))
        return failures

    # -- checks --

    async def _checks(self, case: Case, exchange: _Exchange) -> list[Failure]:
        failures: list[Failure] = []
        alive = await self._until_dead(self._health)
        if alive is not None:
            await self.target.settle()
        crash = self.target.crash()
        if crash is not None:
            return [Failure("process died", innermost(crash), last_frames(crash),
                            f"process died: {innermost(crash)}")]
        if alive is not None:
            failures.append(Failure("not serving", alive, (), "not serving: " + alive))
        else:
            lost = await self._until_dead(self._probe_bystander)
            crash = self.target.crash()
            if crash is not None:
                return [Failure("process died", innermost(crash), last_frames(crash),
                                f"process died: {innermost(crash)}")]
            if lost is not None:
                failures.append(lost if isinstance(lost, Failure) else Failure(
                    "bystander lost", str(lost), (), "bystander lost"))
        for status in exchange.statuses:
            if status == 501 and _unknown_transfer_coding(case.data):
                continue  # what RFC 9112 (6.1) asks for
            if status >= 500:
                failures.append(Failure("5xx answer", f"HTTP {status} to bad input", (),
                                        f"HTTP {status} ({case.family})"))
                break
        for where, text in exchange.texts:
            problem = json_problem(text)
            if problem is not None:
                failures.append(Failure(
                    "invalid JSON sent", f"{where} received {text[:120]!r}: {problem}", (),
                    f"invalid JSON sent ({case.family}): {problem.split(':')[0]}"))
                break
        if case.json_body is not None and json_problem(case.json_body) is not None \
                and exchange.first is not None and 200 <= exchange.first < 300:
            failures.append(Failure(
                "non-standard JSON accepted",
                f"a 2xx answer to the body {case.json_body[:120]!r} "
                f"({json_problem(case.json_body)})", (),
                f"non-standard JSON accepted ({case.family})"))
        return failures

    async def _until_dead(self, check: Callable[[], Awaitable[Any]]) -> Any:
        """``check()``'s result, or "stopped" if the server stops first."""
        result: list[Any] = ["stopped"]
        async with trio.open_nursery() as nursery:
            async def run_check() -> None:
                result[0] = await check()
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                await self.target.wait_dead()
                nursery.cancel_scope.cancel()

            nursery.start_soon(run_check)
            nursery.start_soon(watch)
        return result[0]

    async def _health(self) -> str | None:
        try:
            with trio.fail_after(TIMEOUT):
                status, body = await http(self.target.host, self.target.port,
                                          b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          b"Connection: close\r\n\r\n")
        except trio.TooSlowError:
            return f"GET /health: no answer within {TIMEOUT:g} s"
        except OSError as exc:
            return f"GET /health: {exc.strerror or exc}"
        if status != 200:
            return f"GET /health answered {status} {body[:80]!r}"
        return None

    async def _probe_bystander(self) -> Failure | None:
        """Publish to the bystander; None once it has received it."""
        assert self._bystander is not None
        nonce = next(self._probes)
        body = json.dumps({"event": "fuzz:probe", "tenant": TENANT, "user": BYSTANDER,
                           "data": {"nonce": nonce}}).encode()
        try:
            with trio.fail_after(TIMEOUT):
                status, answer = await http(self.target.host, self.target.port, _post(
                    "/api/v1/emit", body, f"Authorization: Bearer {self.target.api_key}\r\n"))
        except (trio.TooSlowError, OSError) as exc:
            return Failure("bystander lost", f"POST /api/v1/emit failed: {exc!r}", (),
                           "publish failed")
        if status != 202:
            return Failure("bystander lost", f"POST /api/v1/emit answered {status} {answer!r}",
                           (), f"publish answered {status}")
        self._seen = []
        try:
            with trio.fail_after(TIMEOUT):
                while True:
                    message = await self._bystander.get_message()
                    problem = json_problem(message)
                    if problem is not None:
                        return Failure("invalid JSON sent",
                                       f"the bystander received {message[:120]!r}: {problem}",
                                       (), f"invalid JSON sent to the bystander: "
                                           f"{problem.split(':')[0]}")
                    frame = json.loads(message)
                    if frame.get("type") == "fuzz:probe" and frame["data"]["nonce"] == nonce:
                        return None
                    self._seen.append(str(message))
        except trio.TooSlowError:
            return Failure("bystander lost", f"no broadcast within {TIMEOUT:g} s", (),
                           "bystander lost: no broadcast")
        except ConnectionClosed as exc:
            code = exc.reason.code if exc.reason is not None else None
            return Failure("bystander lost", f"its connection closed: {exc.reason}", (),
                           f"bystander lost: closed {code}")


def _unknown_transfer_coding(data: bytes) -> bool:
    """Whether a request in ``data`` has a Transfer-Encoding other than chunked."""
    codings = re.findall(rb"\r\ntransfer-encoding:([^\r\n]*)", data, re.IGNORECASE)
    return any(coding.strip().lower() != b"chunked" for coding in codings)


def _render(chunk: bytes, env: dict[bytes, bytes]) -> bytes:
    for placeholder, value in env.items():
        chunk = chunk.replace(placeholder, value)
    return chunk
