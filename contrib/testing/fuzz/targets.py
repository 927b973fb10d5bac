"""The servers a case runs against: one in this process, or one started
elsewhere (its log read from a file)."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jwt
import trio
import trio.testing

from .. import TEST_API_KEY, TEST_SECRET, make_config
from .cases import GUEST_WIDGET, IDLE, INTRUDER, INTRUDER_KEY, PROFILED, QUIET, TENANT, TIMEOUT
from .outcomes import Failure, innermost, last_frames, source_path


def mint_token(secret: str, user: str, *, tenant: str = TENANT, role: str = "agent",
               ttl: float = 3600) -> str:
    """A HS256 JWT with the default claims (``sub``, ``tenant_id``, ``role``)."""
    return jwt.encode({"sub": user, "tenant_id": tenant, "role": role,
                       "exp": int(time.time() + ttl)}, secret, algorithm="HS256")


class Target(Protocol):
    """A server to fuzz: where it listens and what it logs."""

    host: str
    port: int
    api_key: str
    #: An API key of tenant :data:`INTRUDER` ("": none, the tenant fence's HTTP
    #: cases then answered 401).
    intruder_key: str
    #: The key of a chat widget of the fuzz tenant ("": none, the tenant
    #: fence's guests then refused at their handshake).
    guest_widget: str

    def token(self, user: str, *, tenant: str = TENANT, role: str = "agent") -> str: ...

    def crash(self) -> BaseException | None:
        """The exception that ended the server, if it ended (in-process only)."""

    @property
    def dead(self) -> bool:
        """The server has stopped (as far as can be seen from here)."""

    async def wait_dead(self) -> None:
        """Return when the server has stopped (never, where this cannot be seen)."""

    async def settle(self) -> None:
        """After a failed health check: wait (boundedly) for a dying server to stop."""

    async def quiet(self) -> None:
        """Return once the server has done what it can with the input it has."""

    async def restart(self) -> None:
        """Start the server again after it died."""

    def log_mark(self) -> int: ...

    def log_problems(self, mark: int) -> list[Failure]:
        """Tracebacks and ERROR lines logged since ``mark``."""


class LogCapture(logging.Handler):
    """Keeps the records of the server's loggers (when no caplog is at hand)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


#: Loggers of the fuzzer's own clients, not of the server.
_CLIENT_LOGGERS = ("trio-websocket", "trio_websocket", "httpx", "httpcore", "hypothesis")


def record_failures(records: Iterable[logging.LogRecord]) -> list[Failure]:
    failures = []
    for record in records:
        if record.name.startswith(_CLIENT_LOGGERS):
            continue
        message = f"{record.name} {record.levelname}: {record.getMessage()[:300]}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            failures.append(Failure("traceback logged", message, last_frames(exc),
                                    f"traceback logged by {record.name}: {innermost(exc)}"))
        elif record.exc_text or "Traceback (most recent call last)" in record.getMessage():
            failures.append(Failure("traceback logged", message, (),
                                    f"traceback logged by {record.name}"))
        elif record.levelno >= logging.ERROR:
            failures.append(Failure("error logged", message, (),
                                    f"error logged by {record.name}: {record.msg}"))
    return failures


def fuzz_config(ws_profile: str = "", store: str = "", broker: str = "") -> Any:
    """The test config (known secret and API key, in-memory SQLite, or the
    database at ``store``, its schema made or upgraded at start-up; the
    in-memory broker, or the Redis at ``broker`` under a key prefix of its
    own), with a short drain at shutdown (the polling sessions the cases leave
    behind would hold it), each compatibility profile bound to a namespace
    (:data:`PROFILED`), and ``ws_profile`` (one of them, or none) bound to the
    plain WebSocket."""
    overrides: dict[str, Any] = {
        # (a request head's X-Forwarded-For is read: the cases come from 127.0.0.1)
        "server": {"drain_timeout": 0.5, "ws_profile": ws_profile,
                   "trusted_proxies": ["127.0.0.1", "::1"]},
        # (every case comes from 127.0.0.1, and many leave a session unconnected)
        "socketio": {"namespaces": ["/", *PROFILED], "profiles": PROFILED,
                     "max_unconnected_per_address": 1_000_000, "max_unconnected": 1_000_000},
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "fuzzer"},
                     {"key": INTRUDER_KEY, "tenant": INTRUDER, "name": "intruder"}],
        # (every guest of the fuzzer comes from 127.0.0.1)
        "plugins": {"guests": {"widgets": [{"key": GUEST_WIDGET, "tenant": TENANT}],
                               "per_ip": {"rate": 1e6, "burst": 1e6}}}}
    if store:
        overrides["store"] = {"url": store, "auto_migrate": "always"}
    if broker:
        overrides["broker"] = {"url": broker, "prefix": f"fuzz-{uuid.uuid4().hex[:12]}"}
    return make_config(overrides)


class InProcessTarget:
    """The real server in this Trio run, on an ephemeral 127.0.0.1 port; started
    again (on a new port) after it dies."""

    def __init__(self, nursery: trio.Nursery, *, config: Callable[[], Any] = fuzz_config,
                 records: Callable[[], Sequence[logging.LogRecord]] | None = None) -> None:
        self._nursery = nursery
        self._config = config
        self._capture: LogCapture | None = None
        if records is None:
            self._capture = LogCapture()
            capture = self._capture
            records = lambda: capture.records  # noqa: E731
        self._records = records
        self.server: Any = None
        self._crash: BaseException | None = None
        self._stopped = trio.Event()
        self.host, self.port = "127.0.0.1", 0
        self.api_key = TEST_API_KEY
        self.intruder_key = INTRUDER_KEY
        self.guest_widget = GUEST_WIDGET
        self.secret = TEST_SECRET
        self.restarts = 0

    async def start(self) -> None:
        from switchboard.core.server import Server

        if self._capture is not None and self._capture not in logging.getLogger().handlers:
            logging.getLogger().addHandler(self._capture)
        config = self._config()
        self.secret = config.auth.secret or TEST_SECRET
        self.server = Server(config)
        self._crash = None
        self._stopped = trio.Event()
        await self._nursery.start(self._run, self.server, self._stopped)
        self.host, self.port = self.server.addresses[0]

    async def _run(self, server: Any, stopped: trio.Event,
                   task_status: trio.TaskStatus[None]) -> None:
        started = False

        def on_started() -> None:
            nonlocal started
            started = True
            task_status.started()

        try:
            await server.run(task_status=_Status(on_started))
        except Exception as exc:
            if not started:
                raise
            self._crash = exc
        finally:
            stopped.set()

    def token(self, user: str, *, tenant: str = TENANT, role: str = "agent") -> str:
        return mint_token(self.secret, user, tenant=tenant, role=role)

    def crash(self) -> BaseException | None:
        return self._crash

    @property
    def dead(self) -> bool:
        return self._stopped.is_set()

    async def wait_dead(self) -> None:
        await self._stopped.wait()

    async def settle(self) -> None:
        with trio.move_on_after(TIMEOUT):
            await self._stopped.wait()

    async def quiet(self) -> None:
        # Every task of this Trio run, the server's included, waits for input.
        await trio.testing.wait_all_tasks_blocked(QUIET)

    async def restart(self) -> None:
        self.restarts += 1
        await self.start()

    def log_mark(self) -> int:
        return len(self._records())

    def log_problems(self, mark: int) -> list[Failure]:
        return record_failures(list(self._records())[mark:])

    async def stop(self) -> None:
        if self.server is not None and not self._stopped.is_set():
            self.server.shutdown()
            await self._stopped.wait()
        if self._capture is not None:
            logging.getLogger().removeHandler(self._capture)


class _Status:
    """A ``task_status`` that calls back when the server has started."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def started(self, value: object = None) -> None:
        self._callback()


class RemoteTarget:
    """A server started elsewhere (``switchboard serve``); its log, if given as a
    file, is read for tracebacks. It cannot be restarted from here."""

    def __init__(self, host: str, port: int, *, secret: str = TEST_SECRET,
                 api_key: str = TEST_API_KEY, intruder_key: str = "", guest_widget: str = "",
                 log_file: str | None = None) -> None:
        self.host, self.port = host, port
        self.secret = secret
        self.api_key = api_key
        self.intruder_key = intruder_key
        self.guest_widget = guest_widget
        self._log = Path(log_file) if log_file else None

    def token(self, user: str, *, tenant: str = TENANT, role: str = "agent") -> str:
        return mint_token(self.secret, user, tenant=tenant, role=role)

    def crash(self) -> BaseException | None:
        return None

    @property
    def dead(self) -> bool:
        return False

    async def wait_dead(self) -> None:
        await trio.sleep_forever()

    async def settle(self) -> None:
        pass

    async def quiet(self) -> None:
        # Nothing to watch from here: the server is taken to be done when it has
        # said nothing for a while.
        await trio.sleep(IDLE)

    async def restart(self) -> None:
        raise RuntimeError(f"the server at {self.host}:{self.port} stopped answering")

    def log_mark(self) -> int:
        return self._log.stat().st_size if self._log and self._log.exists() else 0

    def log_problems(self, mark: int) -> list[Failure]:
        if self._log is None or not self._log.exists():
            return []
        with self._log.open("rb") as file:
            file.seek(mark)
            text = file.read().decode("utf-8", "replace")
        return log_text_failures(text)


#: The first line of a log record (``switchboard serve``'s and hypercorn's formats).
_RECORD_START = re.compile(r"^\[?\d{4}-\d\d-\d\d", re.MULTILINE)
_EXCEPTION_LINE = re.compile(r"^[\s|]*((?:[a-z_]\w*\.)*[A-Z]\w*): ", re.MULTILINE)
_FRAME_LINE = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def log_text_failures(text: str) -> list[Failure]:
    """Tracebacks and ERROR records in log text (one record per timestamped line
    and the lines after it)."""
    failures = []
    starts = [m.start() for m in _RECORD_START.finditer(text)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    for begin, end in itertools.pairwise([*starts, len(text)]):
        record = text[begin:end].strip()
        if not record:
            continue
        first = record.splitlines()[0][:300]
        if "Traceback (most recent call last)" in record:
            exceptions = _EXCEPTION_LINE.findall(record)
            frames = _FRAME_LINE.findall(record)
            where = f" at {source_path(frames[-1][0])}:{frames[-1][1]}" if frames else ""
            kind = exceptions[-1].rsplit(".", 1)[-1] if exceptions else "?"
            lines = [f"{source_path(f)}:{n} in {fn}" for f, n, fn in frames[-4:]]
            last = [line.strip(" |") for line in record.splitlines()
                    if _EXCEPTION_LINE.match(line)][-1:]
            failures.append(Failure("traceback logged", first, (*lines, *last),
                                    f"traceback logged: {kind}{where}"))
        elif re.search(r"\bERROR\b", first):
            failures.append(Failure("error logged", first, (), f"error logged: {first[-80:]}"))
    return failures
