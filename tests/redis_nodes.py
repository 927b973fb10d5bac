"""Shared pieces of the multi-node tests on Redis: the machine's Redis
(127.0.0.1:6379) with a key prefix of each test's own (cleaned up after), a
Redis server of a test's own on a free port, several nodes of one cluster, and
a node as a real process (to be killed with -9).

Tests that need Redis fail, never skip, without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import coredis
import httpx
import pytest
import trio
from switchboard.core.config import Config, merge
from switchboard.testing import TEST_API_KEY, TEST_SECRET, Harness, TestClient, make_config

from tests.ports import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
SCRIPT = Path(sys.executable).parent / "switchboard"
#: Upper bound for anything that should happen at once over loopback: generous, as the
#: suite runs on parallel workers of a busy machine and only a failure waits it out.
TIMEOUT = 60.0


async def delete_prefix(url: str, prefix: str) -> None:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url)
    async with client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(keys)


@pytest.fixture(name="redis_prefix")
async def redis_prefix_fixture() -> AsyncIterator[str]:
    """A key prefix of this test's own on the machine's Redis; its keys are
    deleted afterwards. Fails (never skips) when Redis does not answer."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
    try:
        async with client:
            await client.ping()
    except BaseException as exc:  # (an exception group of the client's task group)
        pytest.fail(f"Redis must answer on 127.0.0.1:6379 for the multi-node tests: {exc!r}")
    prefix = f"sbtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    await delete_prefix(REDIS_URL, prefix)


def cluster_config(prefix: str, url: str = REDIS_URL,
                   overrides: dict[str, Any] | None = None) -> Config:
    """One config for every node of a test's cluster (same Redis prefix, same
    database: the in-memory SQLite of the test config is shared in-process)."""
    base: dict[str, Any] = {
        "broker": {"url": url, "prefix": prefix, "heartbeat": 0.2, "node_ttl": 3.0},
        "rooms": {"public_patterns": ["lobby:*"]},
    }
    return make_config(merge(base, overrides or {}))


async def start_nodes(config: Config, nursery: trio.Nursery, count: int, *,
                      listen: bool = False) -> list[Harness]:
    return [await Harness.start(config, nursery, listen=listen) for _ in range(count)]


class OwnRedis:
    """A ``redis-server`` of the test's own on a free port, without persistence:
    stopped and started again, it comes back empty (as after a crash)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is required for the multi-node tests")
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_answering(self) -> None:
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    await trio.sleep(0.02)
                    continue
                await stream.send_all(b"PING\r\n")
                if (await stream.receive_some(64)).startswith(b"+PONG"):
                    await stream.aclose()
                    return
                await stream.aclose()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(name="own_redis")
def own_redis_fixture() -> Iterator[OwnRedis]:
    redis = OwnRedis()
    redis.start()
    yield redis
    redis.kill()


class Balancer:
    """A TCP load balancer of the test's own in front of the nodes: each new
    connection goes to ``target`` (a port), so a client that reconnects after
    its node died lands on another node at the same address."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._serve, listeners)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
        except OSError:
            await client.aclose()
            return

        async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
            try:
                while data := await source.receive_some(65536):
                    await sink.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                with trio.CancelScope(shield=True):
                    await sink.aclose()
                    await source.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)


async def eventually(check: Callable[[], Awaitable[bool]], *,
                     timeout: float = TIMEOUT) -> None:
    """Poll ``check`` (the state of Redis or of real processes, on real time)
    until it holds."""
    with trio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 (nothing to wait on but the state)
            await trio.sleep(0.05)


def about(client: TestClient, event: str, user: str) -> list[Any]:
    """The data of the frames of ``event`` about ``user`` received and not yet consumed."""
    return [d for d in client.received(event) if d["userId"] == user]


async def next_about(client: TestClient, event: str, user: str) -> Any:
    """The next frame of ``event`` about ``user`` (others of that event dropped)."""
    with trio.fail_after(TIMEOUT):
        while True:
            data = await client.expect(event, timeout=TIMEOUT)
            if data["userId"] == user:
                return data


def node_config_file(path: Path, port: int, prefix: str, store_url: str,
                     extra: str = "") -> Path:
    """The config of a process node: the cluster's (as :func:`cluster_config`
    makes it for in-process nodes) and ``extra`` TOML."""
    path.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}

[auth]
secret = "{TEST_SECRET}"

[[api_keys]]
key = "{TEST_API_KEY}"
tenant = "*"
name = "tests"

[store]
url = "{store_url}"

[broker]
url = "{REDIS_URL}"
prefix = "{prefix}"
heartbeat = 0.2
node_ttl = 3.0

[socketio]
recovery_window = 30

[rooms]
public_patterns = ["lobby:*"]

[plugins.presence]
grace_period = 0.3
{extra}""")
    return path


async def start_process_node(tmp_path: Path, nursery: trio.Nursery, prefix: str,
                             store_url: str, extra: str = "") -> tuple[trio.Process, int]:
    """``switchboard serve`` as a real process (to be killed with -9)."""
    port = free_port()
    config = node_config_file(tmp_path / "node.toml", port, prefix, store_url, extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [str(SCRIPT), "serve", "--config", str(config)], env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    async def reap() -> None:
        try:
            await trio.sleep_forever()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()

    nursery.start_soon(reap)
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            while True:
                if process.returncode is not None:
                    raise AssertionError(f"node exited:\n{log.read_text()}")
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
    return process, port
