"""Switchboard benchmark: fan-out, connection rate, idle memory, latency, the
transport design comparison, Socket.IO against the reference servers,
durable chat and the lead pipeline's board on SQLite and PostgreSQL, over
real loopback sockets.

    python contrib/bench/bench.py [--clients 1000] [--messages 200] [--idle 5000]
        [--rate 1000] [--secs 10]
        [--only fanout,connect,idle,latency,designs,sio,chat,pipeline,desk,redis,hold,storm]
        [--redis-url URL]

Servers run as subprocesses on 127.0.0.1 (Switchboard from this checkout, with
a generated config in a temporary directory); the load clients are the Node.js
scripts beside this file (``npm install`` is run here if ``node_modules`` is
missing). Prints a markdown table; see README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import resource
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import jwt
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
TENANT = "bench"
API_KEY = "bench-" + secrets.token_hex(16)
SECRET = secrets.token_hex(32)
SECTIONS = ("fanout", "connect", "idle", "latency", "designs", "sio", "chat", "pipeline",
            "desk", "redis", "hold", "storm")
DESIGNS = (
    ("quart-trio route + hypercorn", ["quart_route.py"]),
    ("raw Trio, one send_all per frame", ["raw_trio.py"]),
    ("raw Trio, coalesced writes", ["raw_trio.py", "--coalesce"]),
)
TARGET_FANOUT = 500_000
TARGET_IDLE_KIB = 20.0
TARGET_P99_MS = 10.0
#: Socket.IO: Switchboard's fan-out against the reference servers, same run.
SIO_REFERENCES = (
    ("Node socket.io 4", ["node_socketio.cjs"]),
    ("python-socketio + uvicorn", ["python_socketio.py"]),
)
TARGET_SIO_VS_PYTHON = 9.0
TARGET_SIO_IDLE_RATIO = 1.5
TARGET_CHAT_STORED = 5000
NODE_WS = "Node ws 8"
CHAT_PLUGINS = "rooms,chat"
CHAT_CONVERSATION = "bench"


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- environment --------------------------------------------------------------


def raise_open_files(wanted: int = 65536) -> int:
    """Raise this process's (and so the children's) open-files limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ensure_node_modules() -> None:
    deps = json.loads((HERE / "package.json").read_text())["dependencies"]
    if all((HERE / "node_modules" / name / "package.json").is_file() for name in deps):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm is needed to install the load clients' dependencies")
    log("installing the load clients' dependencies (npm ci)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True,
                   timeout=300)


def compile_checkout() -> None:
    """Compile this checkout's modules, as installing the package does: the
    servers run from the checkout, and where ``PYTHONDONTWRITEBYTECODE`` is set
    every start would compile them from source again (0.3-0.4 s of a start)."""
    root = HERE.parent.parent
    for package in ("core", "plugins", "contrib/testing"):
        compileall.compile_dir(root / package, quiet=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def vm_hwm_kib(pid: int) -> int:
    """Peak RSS of process ``pid`` so far (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise BenchError(f"no VmHWM for process {pid}")


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_json(url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None,
              body: Any = None) -> Any:
    """GET ``url`` (POST ``body`` as JSON if given); return the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = dict(headers or {})
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=all_headers)
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read())


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before answering {url}")
        try:
            http_json(url, timeout=1.0)
            return
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.1)
    raise BenchError(f"no answer from {url} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# -- servers ------------------------------------------------------------------


@attrs.frozen
class Target:
    name: str
    port: int
    pid: int
    switchboard: bool
    #: Ports of the cluster's other nodes (the clients are spread over all).
    others: tuple[int, ...] = ()

    @property
    def ws_url(self) -> str:
        suffix = "?token={token}" if self.switchboard else ""
        return f"ws://{HOST}:{self.port}/ws{suffix}"

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def sio_url(self) -> str:
        """Base URL of a Socket.IO server (the client adds ``/socket.io/``); the
        nodes' URLs separated by commas for a cluster."""
        return ",".join(f"http://{HOST}:{port}" for port in (self.port, *self.others))


def installed_plugins() -> list[str]:
    return sorted({ep.name for ep in entry_points(group="switchboard.plugins")})


def plugin_sections(enabled: str) -> str:
    """``[plugins.NAME] enabled = false`` for every installed plugin not in ``enabled``
    (``jwt`` is always kept: the load clients connect with tokens)."""
    if enabled == "all":
        return ""
    keep = {name.strip() for name in enabled.split(",")} | {"jwt"}
    return "".join(f"\n[plugins.{name}]\nenabled = false\n"
                   for name in installed_plugins() if name not in keep)


def switchboard_config(tmp: Path, port: int, plugins: str, store_url: str = "",
                       event_limits: Sequence[str] = (), broker: str = "") -> str:
    """The generated config; ``event_limits`` are event names whose per-connection
    rate limit is raised like the others."""
    store = store_url or f"sqlite:///{tmp / 'bench.db'}"
    events = "".join(f'\n[limits.events.{json.dumps(name)}]\nrate = 100000.0\nburst = 100000.0\n'
                     for name in event_limits)
    return f"""\
mode = "development"
data_dir = {json.dumps(str(tmp))}

[server]
host = "{HOST}"
port = {port}

[heartbeat]
interval = 3600.0
timeout = 600.0

[auth]
secret = "{SECRET}"

[[api_keys]]
key = "{API_KEY}"
tenant = "*"
name = "bench"

[rooms]
public_patterns = ["bench:*"]

[limits]
connection = {{ rate = 100000.0, burst = 100000.0 }}
user = {{ rate = 100000.0, burst = 100000.0 }}
{events}
[store]
url = {json.dumps(store)}

[log]
level = "warning"
{broker}{plugin_sections(plugins)}"""


def spawn_switchboard(tmp: Path, port: int, plugins: str, gc_threshold: str = "", *,
                      store_url: str = "", event_limits: Sequence[str] = (),
                      broker: str = "") -> subprocess.Popen[bytes]:
    """Start Switchboard from this checkout on ``port`` (its output appended to
    ``switchboard-PORT.log``); ``gc_threshold`` ("g0,g1,g2") sets the server's
    ``gc.set_threshold`` before it starts (a diagnostic, not a server option)."""
    config = tmp / f"switchboard-{port}.toml"
    config.write_text(switchboard_config(tmp, port, plugins, store_url, event_limits, broker))
    if gc_threshold:
        thresholds = ", ".join(str(int(x)) for x in gc_threshold.split(","))
        python = [sys.executable, "-c",
                  f"import gc, sys; gc.set_threshold({thresholds}); "
                  "from switchboard.core.cli import main; sys.exit(main(sys.argv[1:]))"]
    else:
        python = [sys.executable, "-m", "switchboard.core.cli"]
    with (tmp / f"switchboard-{port}.log").open("ab") as logfile:
        return subprocess.Popen(
            [*python, "serve", "--config", str(config)],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def run_switchboard(tmp: Path, plugins: str, gc_threshold: str = "", *, store_url: str = "",
                    event_limits: Sequence[str] = (), broker: str = "") -> Iterator[Target]:
    """Serve from this checkout on a free port, stopped when the block ends."""
    port = free_port()
    proc = spawn_switchboard(tmp, port, plugins, gc_threshold, store_url=store_url,
                             event_limits=event_limits, broker=broker)
    try:
        wait_http(f"http://{HOST}:{port}/health", proc)
        yield Target("Switchboard", port, proc.pid, switchboard=True)
    finally:
        stop(proc)
        log_tail(tmp / f"switchboard-{port}.log", "server")


def log_tail(path: Path, name: str) -> None:
    tail = path.read_text(errors="replace").strip()
    if tail:
        log(f"{name} log (last lines):\n  " + "\n  ".join(tail.splitlines()[-8:]))


@contextlib.contextmanager
def run_design(tmp: Path, name: str, argv: Sequence[str]) -> Iterator[Target]:
    """A server of ``designs/``: ``*.py`` run by this Python, ``*.cjs`` by Node."""
    port = free_port()
    logfile = (tmp / f"design-{port}.log").open("wb")
    script = str(HERE / "designs" / argv[0])
    runner = [shutil.which("node") or "node"] if script.endswith(".cjs") else [sys.executable]
    proc = subprocess.Popen(
        [*runner, script, str(port), *argv[1:]],
        stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_http(f"http://{HOST}:{port}/blast/0", proc)
        yield Target(name, port, proc.pid, switchboard=False)
    finally:
        stop(proc)
        logfile.close()
        tail = (tmp / f"design-{port}.log").read_text(errors="replace").strip()
        if tail:
            log(f"{name} log (last lines):\n  " + "\n  ".join(tail.splitlines()[-8:]))


def wait_idle(target: Target, timeout: float = 20.0) -> None:
    """Wait until the server has dropped the previous run's connections."""
    if not target.switchboard:
        time.sleep(1.0)
        return
    deadline = time.monotonic() + timeout
    url = f"{target.http}/api/v1/stats"
    while time.monotonic() < deadline:
        stats = http_json(url, headers={"Authorization": f"Bearer {API_KEY}"})
        if stats["connections"] == 0:
            return
        time.sleep(0.1)
    raise BenchError(f"connections still open after {timeout} s")


def write_tokens(tmp: Path, count: int) -> Path:
    """One HS256 token per client (distinct users of tenant ``bench``)."""
    exp = int(time.time()) + 6 * 3600
    path = tmp / "tokens.txt"
    path.write_text("\n".join(
        jwt.encode({"sub": f"u{i}", "tenant_id": TENANT, "role": "customer", "exp": exp},
                   SECRET, algorithm="HS256")
        for i in range(count)) + "\n")
    return path


# -- load clients -------------------------------------------------------------


class Node:
    def __init__(self, open_files: int) -> None:
        node = shutil.which("node")
        if node is None:
            raise BenchError("node (Node.js 18+) is needed for the load clients")
        self.node = node
        self.open_files = open_files

    def argv(self, script: str, args: Sequence[str]) -> list[str]:
        return ["bash", "-c", f'ulimit -n {self.open_files}; exec "$0" "$@"',
                self.node, str(HERE / script), *args]

    def run(self, script: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
        """Run a client script; return its JSON result line."""
        try:
            done = subprocess.run(self.argv(script, args), capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{script} did not finish within {timeout} s") from None
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise BenchError(f"{script} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        if not result.get("ok"):
            log(f"{script} reported a failed run: {lines[-1]}")
        return result

    @contextlib.contextmanager
    def hold(self, url: str, n: int, tokens: Path | None, timeout: float = 300.0, *,
             sio: bool = False) -> Iterator[subprocess.Popen[str]]:
        """``n`` idle clients (socket.io-client sockets with ``sio``, ``url`` then
        being the server's base URL), open until the block ends."""
        args = [url, str(n)] + (["--tokens", str(tokens)] if tokens else [])
        args += ["--sio"] if sio else (["--session"] if tokens else [])
        proc = subprocess.Popen(self.argv("hold.mjs", args), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                deadline = time.monotonic() + timeout
                line = ""
                while not line.startswith("ready"):
                    if time.monotonic() > deadline or not sel.select(deadline - time.monotonic()):
                        raise BenchError(f"hold.mjs: {n} connections not open within {timeout} s")
                    line = proc.stdout.readline()
                    if not line:
                        err = proc.stderr.read() if proc.stderr else ""
                        raise BenchError(f"hold.mjs exited: {err.strip()[-600:]}")
            yield proc
        finally:
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# -- measurements -------------------------------------------------------------


@attrs.define
class Row:
    measurement: str
    server: str
    load: str
    result: str
    target: str = ""


def fanout_once(node: Node, target: Target, clients: int, messages: int, tokens: Path,
                procs: int, *, sio: bool = False) -> dict[str, Any]:
    """One fan-out: plain WebSocket clients, or socket.io-client sockets with ``sio``."""
    url = target.sio_url if sio else target.ws_url
    if target.switchboard:
        args = ["--tokens", str(tokens), *([] if sio else ["--session"]), "--join", "bench:all",
                "--api-key", API_KEY, "--tenant", TENANT, "--room", "bench:all",
                url, f"{target.http}/api/v1/emit"]
    else:
        args = [url, f"{target.http}/blast/{{M}}"]
    result = node.run("fanout-sio.mjs" if sio else "fanout-ws.mjs", [
        "--clients", str(clients), "--messages", str(messages), "--procs", str(procs),
        "--timeout", "150", "--server-pid", str(target.pid), *args], timeout=300)
    wait_idle(target)
    return result


@attrs.frozen
class Series:
    rates: list[float]
    #: Server CPU microseconds per delivery, per run (None where unknown).
    cpu_us: list[float]

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def describe(self) -> str:
        text = summary(self.rates, "/s")
        if self.cpu_us:
            us = statistics.median(self.cpu_us)
            text += (f"; server CPU {us:.2f} us/delivery (median), i.e. "
                     f"{1e6 / us:,.0f} deliveries per CPU-second" if us > 0 else "")
        return text


def fanout_series(node: Node, target: Target, a: argparse.Namespace, tokens: Path,
                  repeats: int, *, sio: bool = False) -> Series:
    rates: list[float] = []
    cpu_us: list[float] = []
    # Warm-up, not counted: first-use costs (code generated on first request, heap growth).
    fanout_once(node, target, min(a.clients, 100), 10, tokens, 1, sio=sio)
    for i in range(repeats):
        result = fanout_once(node, target, a.clients, a.messages, tokens, a.procs, sio=sio)
        rate = float(result["deliveries_per_s"]) if result.get("ok") else 0.0
        us = result.get("server_cpu_us_per_delivery")
        log(f"fan-out {target.name}{' (Socket.IO)' if sio else ''} run {i + 1}/{repeats}: "
            f"{rate:,.0f} deliveries/s "
            f"({result.get('seconds')} s, server CPU {result.get('server_cpu_s')} s)")
        rates.append(rate)
        if result.get("ok") and us is not None:
            cpu_us.append(float(us))
    return Series(rates, cpu_us)


def summary(rates: list[float], unit: str) -> str:
    if len(rates) == 1:
        return f"{rates[0]:,.0f} {unit}"
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    return (f"best {max(rates):,.0f} / median {statistics.median(rates):,.0f} {unit} "
            f"(runs: {runs})")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def fanout_load(a: argparse.Namespace, rooms: str = "") -> str:
    return (f"{a.clients} clients{rooms}, {a.messages} msgs of 100 B each "
            f"({a.clients * a.messages:,} deliveries); clients in {a.procs} Node processes")


def bench_fanout(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    with run_switchboard(tmp, a.plugins) as target:
        series = fanout_series(node, target, a, tokens, a.repeats)
    return [Row("fan-out: deliveries/s, trigger to last delivery", "Switchboard",
                fanout_load(a, " in 1 room") + "; one emit request carries all msgs",
                series.describe(),
                f">= {TARGET_FANOUT:,}/s: best {verdict(series.best >= TARGET_FANOUT)}, "
                f"median {verdict(series.median >= TARGET_FANOUT)}")]


def bench_connect(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    return connect_rows(node, tmp, a, tokens)


@attrs.frozen
class IdleMemory:
    before_kib: int
    after_kib: int
    count: int

    @property
    def per_conn_kib(self) -> float:
        return (self.after_kib - self.before_kib) / self.count

    def describe(self) -> str:
        return (f"{self.per_conn_kib:.2f} KiB (RSS {self.before_kib / 1024:.1f} -> "
                f"{self.after_kib / 1024:.1f} MiB)")


def idle_memory(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path, *,
                sio: bool = False) -> IdleMemory:
    """Server RSS before and ``a.settle`` s after ``a.idle`` clients are open and ready
    (plain WebSocket with their session frame, or socket.io-client sockets connected)."""
    kind = "Socket.IO" if sio else "WebSocket"
    with run_switchboard(tmp, a.plugins) as target:
        url = target.sio_url if sio else target.ws_url
        # Warm up (lazy imports, first-use caches) so they do not count per connection.
        with node.hold(url, 50, tokens, sio=sio):
            pass
        wait_idle(target)
        time.sleep(1.0)
        before = rss_kib(target.pid)
        with node.hold(url, a.idle, tokens, sio=sio):
            time.sleep(a.settle)
            after = rss_kib(target.pid)
            stats = http_json(f"{target.http}/api/v1/stats",
                              headers={"Authorization": f"Bearer {API_KEY}"})
        if stats["connections"] != a.idle:
            raise BenchError(f"server holds {stats['connections']} {kind} connections, "
                             f"not {a.idle}")
    log(f"idle {kind}: RSS {before} KiB -> {after} KiB for {a.idle} connections")
    result = IdleMemory(before, after, a.idle)
    if not sio:
        a.idle_ws = result  # reused by the Socket.IO section of the same run
    return result


def bench_idle(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    idle = idle_memory(node, tmp, a, tokens)
    return [Row("memory per idle connection (server RSS delta / N)", "Switchboard",
                f"{a.idle:,} idle clients (session frame received, no rooms joined)",
                idle.describe(),
                f"<= {TARGET_IDLE_KIB:g} KiB: {verdict(idle.per_conn_kib <= TARGET_IDLE_KIB)}")]


#: Latency: the Node socket.io server all three rows are judged against (p50).
LATENCY_REFERENCE = "Node socket.io 4"


def loop_delay(result: dict[str, Any]) -> str:
    """The load clients' event-loop delay: p50 / p99 / max over the receiving
    processes (the worst of each), and the publisher's."""
    workers = result.get("client_loop_delay") or []
    if not workers:
        return ""
    worst = {key: max(float(w.get(key) or 0) for w in workers) for key in ("p50", "p99", "max")}
    pub = result.get("publisher_loop_delay") or {}
    return (f"; event-loop delay of the {len(workers)} receiving Node processes (worst of "
            f"each) p50 / p99 / max {worst['p50']:g} / {worst['p99']:g} / {worst['max']:g} ms, "
            f"of the publisher {pub.get('p50')} / {pub.get('p99')} / {pub.get('max')} ms")


def latency_row(result: dict[str, Any], a: argparse.Namespace, server: str, client: str,
                how: str, target: str) -> Row:
    rooms = -(-a.clients // 10)
    busy = result.get("server_cpu_busy")
    return Row("emit-to-receive latency p50 / p99 / max", server,
               f"{a.clients} {client} in {rooms} rooms of 10 (in {result.get('procs')} Node "
               f"processes), {a.rate} events/s for {a.secs} s; "
               f"{how} ({result.get('requests', 0):,} requests, "
               f"{result.get('send_rate')} events/s sent)",
               f"{result.get('p50_ms')} / {result.get('p99_ms')} / {result.get('max_ms')} ms; "
               f"received {result.get('received', 0):,} of {result.get('expected', 0):,}"
               + (f"; server CPU busy {busy:.0%}" if isinstance(busy, float) else "")
               + loop_delay(result) + _rounds(result), target)


def _rounds(result: dict[str, Any], by: str = "p50") -> str:
    rounds = result.get("rounds")
    if not rounds:
        return ""
    each = ", ".join("failed" if r is None else f"{r[0]} / {r[1]}" for r in rounds)
    return (f"; the median {by} of {len(rounds)} alternating rounds (p50 / p99 ms of each: "
            f"{each})")


def latency_run(node: Node, target: Target, a: argparse.Namespace, tokens: Path, kind: str,
                batch_ms: int = 0) -> dict[str, Any]:
    """One run of ``latency.mjs``: ``kind`` ws or sio (Switchboard) or reference."""
    if kind == "reference":
        how = ["--kind", "reference", target.sio_url, f"{target.http}/emit"]
    else:
        how = ["--kind", kind, "--tokens", str(tokens), "--tenant", TENANT,
               "--api-key", API_KEY, "--batch-ms", str(batch_ms),
               target.ws_url if kind == "ws" else target.sio_url, f"{target.http}/api/v1/emit"]
    result = node.run("latency.mjs", [
        "--clients", str(a.clients), "--room-size", "10", "--rate", str(a.rate),
        "--secs", str(a.secs), "--procs", str(a.latency_procs),
        "--server-pid", str(target.pid), *how], timeout=a.secs + 300)
    log(f"latency {target.name} {kind} batch {batch_ms}: {json.dumps(result)}")
    wait_idle(target)
    return result


def _median_run(runs: list[dict[str, Any]], by: str = "p50_ms") -> dict[str, Any]:
    """The run with the median ``by`` (``p50_ms``, ``p99_ms``) of ``runs`` (failed
    runs count as the slowest), with every run's p50 and p99 beside its own figures."""
    def key(result: dict[str, Any]) -> float:
        return float(result.get(by) or "inf") if result.get("ok") else float("inf")

    ordered = sorted(runs, key=key)
    middle = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        middle["rounds"] = [(r.get("p50_ms"), r.get("p99_ms")) if r.get("ok") else None
                            for r in runs]
    return middle


def bench_latency(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    """Switchboard over socket.io-client and plain WebSocket, and the Node
    socket.io server, under the same load in the same run (judged: p50 at or below
    Node's, and the plain WebSocket p99 below the old target), in
    ``--latency-rounds`` alternating rounds (each figure: the run with the median
    p50); then the diagnostic batched runs over plain WebSocket."""
    one = "one POST per event"
    runs: dict[str, list[dict[str, Any]]] = {"sio": [], "ws": [], "reference": []}
    for _ in range(max(1, a.latency_rounds)):
        with run_switchboard(tmp, a.plugins) as target:
            runs["sio"].append(latency_run(node, target, a, tokens, "sio"))
            runs["ws"].append(latency_run(node, target, a, tokens, "ws"))
        with run_design(tmp, LATENCY_REFERENCE, ["node_socketio.cjs"]) as target:
            runs["reference"].append(latency_run(node, target, a, tokens, "reference"))
    sio, ws, ref = (_median_run(runs[kind]) for kind in ("sio", "ws", "reference"))

    def p50(result: dict[str, Any]) -> float:
        return float(result.get("p50_ms") or "inf") if result.get("ok") else float("inf")

    theirs = p50(ref)

    def judged(result: dict[str, Any], extra: str = "") -> str:
        met = p50(result) <= theirs
        return f"p50 <= {LATENCY_REFERENCE}'s ({ref.get('p50_ms')} ms): {verdict(met)}" + extra

    ws_p99 = float(ws.get("p99_ms") or "inf") if ws.get("ok") else float("inf")
    rows = [
        latency_row(sio, a, "Switchboard", "socket.io-client sockets", one, judged(sio)),
        latency_row(ws, a, "Switchboard", "plain WebSocket clients", one, judged(
            ws, f"; p99 < {TARGET_P99_MS:g} ms: {verdict(ws_p99 < TARGET_P99_MS)}")),
        latency_row(ref, a, LATENCY_REFERENCE, "socket.io-client sockets",
                    f"{one} (POST /emit/r<k>, `io.to(room).emit`)", ""),
    ]
    if a.batch_ms:
        batched = f"events of each {a.batch_ms} ms in one POST"
        variants = [(batched, "")]
        if a.gc_threshold:
            variants.append((f"{batched}; server gc.set_threshold({a.gc_threshold})",
                             a.gc_threshold))
        for how, gc_threshold in variants:
            with run_switchboard(tmp, a.plugins, gc_threshold) as target:
                result = latency_run(node, target, a, tokens, "ws", a.batch_ms)
            rows.append(latency_row(result, a, "Switchboard", "plain WebSocket clients", how,
                                    "(diagnostic)"))
    return rows


def bench_designs(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    rows = []
    load = fanout_load(a)
    for name, argv in DESIGNS:
        with run_design(tmp, name, argv) as target:
            series = fanout_series(node, target, a, tokens, a.design_repeats)
        rows.append(Row("design comparison: fan-out deliveries/s", name, load,
                        series.describe()))
    with run_switchboard(tmp, a.plugins) as target:
        series = fanout_series(node, target, a, tokens, a.design_repeats)
    rows.append(Row("design comparison: fan-out deliveries/s",
                    "Switchboard (front router + own frame writer, coalesced)", load,
                    series.describe()))
    return rows


def sio_load(a: argparse.Namespace) -> str:
    return (f"{a.clients} socket.io-client sockets (websocket transport) in 1 room, "
            f"{a.messages} room broadcasts of 100 B each ({a.clients * a.messages:,} "
            f"deliveries); clients in {a.procs} Node processes")


def bench_sio(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    """Socket.IO fan-out: Switchboard and the reference servers under the same load;
    then memory per idle Socket.IO connection against plain WebSocket."""
    series: dict[str, Series] = {}
    with run_switchboard(tmp, a.plugins) as target:
        series["Switchboard"] = fanout_series(node, target, a, tokens, a.repeats, sio=True)
    for name, argv in SIO_REFERENCES:
        with run_design(tmp, name, argv) as target:
            series[name] = fanout_series(node, target, a, tokens, a.repeats, sio=True)
    ours = series["Switchboard"].median
    node_ref = series[SIO_REFERENCES[0][0]].median
    python_ref = series[SIO_REFERENCES[1][0]].median
    vs_node = ours / node_ref if node_ref else float("inf")
    vs_python = ours / python_ref if python_ref else float("inf")
    load = sio_load(a)
    how = {
        "Switchboard": "; trigger: one emit request carrying all broadcasts (clients join "
                       "`bench:all` with `room:join` and its ack)",
        SIO_REFERENCES[0][0]: "; trigger: GET /blast/M (clients join on connect)",
        SIO_REFERENCES[1][0]: "; trigger: GET /blast/M (clients join on connect)",
    }
    rows = [Row("Socket.IO fan-out: deliveries/s, trigger to last delivery", name,
                load + how[name], s.describe(),
                (f">= Node socket.io and >= {TARGET_SIO_VS_PYTHON:g}x python-socketio "
                 f"(medians): {vs_node:.2f}x Node {verdict(vs_node >= 1.0)}, "
                 f"{vs_python:.1f}x python {verdict(vs_python >= TARGET_SIO_VS_PYTHON)}")
                if name == "Switchboard" else "")
            for name, s in series.items()]

    plain: IdleMemory | None = getattr(a, "idle_ws", None)
    if plain is None:
        plain = idle_memory(node, tmp, a, tokens)
    sio = idle_memory(node, tmp, a, tokens, sio=True)
    ratio = sio.per_conn_kib / plain.per_conn_kib
    rows.append(Row(
        "memory per idle Socket.IO connection (server RSS delta / N)", "Switchboard",
        f"{a.idle:,} idle socket.io-client sockets (websocket transport, connected to `/`, "
        "no rooms joined)",
        f"{sio.describe()}; plain WebSocket {plain.per_conn_kib:.2f} KiB: ratio {ratio:.2f}x",
        f"<= {TARGET_SIO_IDLE_RATIO:g}x plain WebSocket: "
        f"{verdict(ratio <= TARGET_SIO_IDLE_RATIO)}"))
    return rows


# -- durable chat ---------------------------------------------------------------


@contextlib.contextmanager
def chat_database(tmp: Path, backend: str, admin_url: str) -> Iterator[str]:
    """The store URL of a fresh database: a new SQLite file, or a new PostgreSQL
    database (``switchboard_bench_<hex>``) dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'chat-{secrets.token_hex(4)}.db'}"
        return
    admin = sa.engine.make_url(admin_url)
    if admin.drivername == "postgresql":
        admin = admin.set(drivername="postgresql+psycopg")
    name = f"switchboard_bench_{secrets.token_hex(6)}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool,
                              connect_args={"connect_timeout": 10})
    try:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.SQLAlchemyError as exc:
            where = admin.render_as_string(hide_password=True)
            first = str(exc).splitlines()[0]
            raise BenchError(f"creating a database on {where}: {first}") from None
        log(f"created database {name}")
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            log(f"dropped database {name}")
    finally:
        engine.dispose()


#: Durable chat reference: Node socket.io + node-postgres, INSERT then broadcast
#: per message (``designs/node_socketio_pg.cjs``), against Switchboard on PostgreSQL.
CHAT_REFERENCE = "Node socket.io 4 + pg (INSERT, broadcast, ack per message)"
TARGET_CHAT_VS_REFERENCE = 3.0
#: One chat run: (transport, closed-loop result, paced result).
ChatRun = tuple[str, dict[str, Any], dict[str, Any]]


def chat_runs(node: Node, target: Target, a: argparse.Namespace, tokens: Path,
              label: str, transports: Sequence[str]) -> list[ChatRun]:
    """The closed-loop and the paced run of ``chat.mjs`` for each transport."""
    runs = []
    for transport in transports:
        sio = transport == "socket.io"
        results = []
        for mode in (["--window", str(a.chat_window)], ["--rate", str(a.chat_rate)]):
            result = node.run("chat.mjs", [
                *(["--sio"] if sio else []),
                "--members", str(a.chat_members), "--secs", str(a.chat_secs), *mode,
                "--conversation", CHAT_CONVERSATION, "--tokens", str(tokens),
                "--server-pid", str(target.pid), target.sio_url if sio else target.ws_url],
                timeout=a.chat_secs + 120)
            log(f"chat {label} {transport} {' '.join(mode)}: {json.dumps(result)}")
            results.append(result)
        runs.append((transport, results[0], results[1]))
    return runs


def chat_rows(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path,
              backend: str, label: str) -> list[ChatRun]:
    members = a.chat_members
    with chat_database(tmp, backend, a.pg_url) as store_url, \
            run_switchboard(tmp, CHAT_PLUGINS, store_url=store_url,
                            event_limits=["message:send"]) as target:
        try:
            http_json(f"{target.http}/api/v1/conversations", headers={
                "Authorization": f"Bearer {API_KEY}"}, body={
                "tenant": TENANT, "id": CHAT_CONVERSATION,
                "participants": [{"userId": f"u{i}"} for i in range(members)]})
        except (OSError, ValueError) as exc:
            raise BenchError(f"creating the conversation: {exc}") from None
        return chat_runs(node, target, a, tokens, label, a.chat_transports)


def chat_reference_runs(node: Node, tmp: Path, a: argparse.Namespace,
                        tokens: Path) -> list[ChatRun]:
    """The reference server on a fresh PostgreSQL database, over socket.io-client
    (the only protocol it speaks)."""
    with chat_database(tmp, "postgresql", a.pg_url) as store_url:
        libpq = sa.engine.make_url(store_url).set(drivername="postgresql")
        argv = ["node_socketio_pg.cjs", "--database",
                libpq.render_as_string(hide_password=False), "--secret", SECRET]
        with run_design(tmp, CHAT_REFERENCE, argv) as target:
            try:
                http_json(f"{target.http}/conversations", body={
                    "id": CHAT_CONVERSATION,
                    "participants": [{"userId": f"u{i}"} for i in range(a.chat_members)]})
            except (OSError, ValueError) as exc:
                raise BenchError(f"creating the conversation: {exc}") from None
            return chat_runs(node, target, a, tokens, "reference", ["socket.io"])


def chat_table(a: argparse.Namespace, server: str, runs: list[ChatRun], plugins: str,
               reference: list[ChatRun] | None = None) -> list[Row]:
    """The rows of ``runs``; with ``reference`` (the Node server's socket.io run on
    the same backend), Switchboard's are judged against it."""
    rows = []
    ref_closed, ref_paced = (reference[0][1], reference[0][2]) if reference else ({}, {})
    for transport, closed, paced in runs:
        client = "plain WebSocket" if transport == "websocket" else "socket.io-client"
        load = (f"{a.chat_members} members of one conversation ({plugins}), "
                f"{client}, `message:send` for {a.chat_secs} s, ")
        stored = float(closed.get("stored_per_s") or 0)
        # the target is judged over plain WebSocket; the socket.io-client rows
        # show what a Socket.IO frontend gets (its client decodes more per packet)
        verdict_closed = (f">= {TARGET_CHAT_STORED:,}/s: "
                          f"{verdict(bool(closed.get('ok')) and stored >= TARGET_CHAT_STORED)}"
                          if transport == "websocket" and plugins.startswith("plugins") else "")
        verdict_paced = ""
        if reference:
            theirs = float(ref_closed.get("stored_per_s") or 0)
            ratio = stored / theirs if theirs else float("inf")
            met = bool(closed.get("ok")) and ratio >= TARGET_CHAT_VS_REFERENCE
            verdict_closed += ("; " if verdict_closed else "") + (
                f">= {TARGET_CHAT_VS_REFERENCE:g}x the Node + pg reference: {ratio:.2f}x "
                f"{verdict(met)}")
            ours_p99 = paced.get("ack_p99_ms")
            their_p99 = ref_paced.get("ack_p99_ms")
            lower = (isinstance(ours_p99, int | float) and isinstance(their_p99, int | float)
                     and bool(paced.get("ok")) and ours_p99 < their_p99)
            verdict_paced = (f"ack p99 below the Node + pg reference's ({their_p99} ms): "
                             f"{verdict(lower)}")
        rows += [
            Row("durable chat: messages stored/s (acked after commit)", server,
                load + f"closed loop, {a.chat_window} in flight per member",
                chat_result(closed, throughput=True), verdict_closed),
            Row("durable chat: ack / delivery latency", server,
                load + f"paced at {a.chat_rate:,} msgs/s", chat_result(paced, throughput=False),
                verdict_paced),
        ]
    return rows


def chat_result(r: dict[str, Any], *, throughput: bool) -> str:
    delivered = (f"{r.get('deliveries', 0):,} of {r.get('expected_deliveries', 0):,} "
                 "`message:new` delivered")
    latency = (f"ack p50 / p99 {r.get('ack_p50_ms')} / {r.get('ack_p99_ms')} ms, delivery "
               f"p50 / p99 / max {r.get('delivery_p50_ms')} / {r.get('delivery_p99_ms')} / "
               f"{r.get('delivery_max_ms')} ms")
    cpu = r.get("server_cpu")
    busy = f"; server CPU busy {cpu:.0%}" if isinstance(cpu, int | float) else ""
    cpu_s, stored = r.get("server_cpu_s"), r.get("stored")
    if isinstance(cpu_s, int | float) and stored:
        busy += f", {cpu_s * 1e6 / stored:,.0f} us per stored message (with its deliveries)"
    client = r.get("client_cpu")
    if isinstance(client, int | float):
        # one Node process: near 100% it, not the server, sets the pace
        busy += f"; load client CPU {client:.0%}"
        if stored and isinstance(r.get("secs"), int | float):
            per = client * float(r.get("elapsed_s") or r["secs"]) * 1e6 / stored
            busy += f" ({per:,.0f} us per message)"
    errors = f"; {r['errors']} errors, first {r.get('first_error')}" if r.get("errors") else ""
    if throughput:
        head = (f"{r.get('stored_per_s', 0):,} stored/s ({r.get('stored', 0):,} messages); "
                f"{r.get('deliveries_per_s', 0):,} deliveries/s ({delivered})")
    else:
        head = f"{r.get('stored', 0):,} stored, {delivered}"
    return f"{head}; {latency}{busy}{errors}"


def bench_chat(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    rows = []
    backends = [("sqlite", "SQLite")]
    if a.pg_url:
        backends.append(("postgresql", "PostgreSQL"))
    plugins = f"plugins {CHAT_PLUGINS}"
    for backend, label in backends:
        server = f"Switchboard, {label}"
        try:
            runs = chat_rows(node, tmp, a, tokens, backend, label)
        except BenchError as exc:
            log(f"chat on {label} failed: {exc}")
            rows.append(Row("durable chat", server, "-", f"FAILED: {exc}"))
            continue
        reference = None
        if backend == "postgresql":
            try:
                reference = chat_reference_runs(node, tmp, a, tokens)
            except BenchError as exc:
                log(f"chat reference failed: {exc}")
                rows.append(Row("durable chat", CHAT_REFERENCE, "-", f"FAILED: {exc}"))
        rows += chat_table(a, server, runs, plugins, reference)
        if reference:
            rows += chat_table(a, f"{CHAT_REFERENCE}, {label}", reference,
                               "designs/node_socketio_pg.cjs, pg pool of 10")
    return rows


# -- lead pipeline ----------------------------------------------------------------

PIPELINE_PLUGINS = "rooms,chat,pipeline"
TARGET_PIPELINE_P99_MS = 20.0
PIPELINE_STAGES = ("novo", "qualificacao", "proposta", "negociacao", "ganho", "perdido")


def write_agent_tokens(tmp: Path, count: int) -> Path:
    """One HS256 token per consultant (distinct agents of tenant ``bench``)."""
    exp = int(time.time()) + 6 * 3600
    path = tmp / "agent-tokens.txt"
    path.write_text("\n".join(
        jwt.encode({"sub": f"consultant{i}", "tenant_id": TENANT, "role": "agent", "exp": exp},
                   SECRET, algorithm="HS256")
        for i in range(count)) + "\n")
    return path


def pipeline_rows(node: Node, tmp: Path, a: argparse.Namespace, backend: str,
                  label: str) -> list[Row]:
    tokens = write_agent_tokens(tmp, a.pipeline_consultants)
    with chat_database(tmp, backend, a.pg_url) as store_url, \
            environment(pipeline_environment(a)), \
            run_switchboard(tmp, PIPELINE_PLUGINS, store_url=store_url,
                            event_limits=["lead:move"]) as target:
        leads = []
        try:
            for n in range(a.pipeline_leads):
                leads.append(http_json(f"{target.http}/api/v1/leads", headers={
                    "Authorization": f"Bearer {API_KEY}"}, body={
                    "tenant": TENANT, "title": f"lead {n}",
                    "stageId": PIPELINE_STAGES[n % len(PIPELINE_STAGES)]}))
        except (OSError, ValueError) as exc:
            raise BenchError(f"creating the leads: {exc}") from None
        leads_file = tmp / "leads.json"
        leads_file.write_text(json.dumps([{"id": x["id"], "stageId": x["stageId"]}
                                          for x in leads]))
        wait_idle(target)
        result = node.run("pipeline.mjs", [
            "--consultants", str(a.pipeline_consultants), "--rate", str(a.pipeline_rate),
            "--secs", str(a.pipeline_secs), "--procs", str(a.pipeline_procs),
            "--leads", str(leads_file), "--stages", ",".join(PIPELINE_STAGES),
            "--tokens", str(tokens),
            "--server-pid", str(target.pid), target.ws_url], timeout=a.pipeline_secs + 120)
        log(f"pipeline {label}: {json.dumps(result)}")
    p99 = result.get("worst_board_p99_ms")
    ok = bool(result.get("ok")) and isinstance(p99, int | float) \
        and p99 < TARGET_PIPELINE_P99_MS
    cpu = result.get("server_cpu")
    busy = f"; server CPU busy {cpu:.0%}" if isinstance(cpu, int | float) else ""
    rate = result.get("moves_per_s")
    if isinstance(cpu, int | float) and isinstance(rate, int | float) and rate > 0:
        # what a move costs the server, all its threads, fan-out included: a
        # figure that holds up better than latency on a machine busy with other work
        busy += f" ({cpu / rate * 1000:.2f} ms of CPU per move)"
    client = result.get("client_cpu")
    if isinstance(client, int | float):
        busy += (f"; load client CPU {client:.0%} over {result.get('procs')} Node processes "
                 f"(busiest {result.get('client_busiest_proc_cpu', 0):.0%})")
    errors = (f"; {result['errors']} errors, first {result.get('first_error')}"
              if result.get("errors") else "")
    late = f"; {result['skipped']} moves not sent (every lead in flight)" \
        if result.get("skipped") else ""
    return [Row(
        "lead pipeline: `lead:move` -> `lead:moved` on every board",
        f"Switchboard, {label}",
        f"{a.pipeline_consultants} consultants with the same board open (plain WebSocket, "
        f"plugins {PIPELINE_PLUGINS}), {a.pipeline_rate} moves/s for {a.pipeline_secs} s "
        f"over {a.pipeline_leads} leads; consultants in {a.pipeline_procs} Node processes; "
        f"`server.write_linger` {a.pipeline_linger * 1000:g} ms"
        + (f", `batch_interval` {a.pipeline_batch_interval * 1000:g} ms"
           if a.pipeline_batch_interval is not None else ""),
        f"{result.get('acked', 0):,} moves acked ({result.get('moves_per_s', 0):,}/s), "
        f"{result.get('deliveries', 0):,} of {result.get('expected_deliveries', 0):,} "
        f"`lead:moved` delivered; p50 / p99 / max {result.get('p50_ms')} / "
        f"{result.get('p99_ms')} / {result.get('max_ms')} ms, worst board's p99 {p99} ms"
        f"{busy}{late}{errors}",
        f"p99 < {TARGET_PIPELINE_P99_MS:g} ms on every board: {verdict(ok)}")]


def bench_pipeline(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    rows = []
    backends = [("sqlite", "SQLite")]
    if a.pg_url:
        backends.append(("postgresql", "PostgreSQL"))
    for backend, label in backends:
        try:
            rows += pipeline_rows(node, tmp, a, backend, label)
        except BenchError as exc:
            log(f"pipeline on {label} failed: {exc}")
            rows.append(Row("lead pipeline", f"Switchboard, {label}", "-", f"FAILED: {exc}"))
    return rows


# -- service desk (the desk plugin) ------------------------------------------------

DESK_PLUGINS = "rooms,chat,desk"
TARGET_DESK_CREATED = 1000
TARGET_DESK_P99_MS = 50.0


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in the environment the servers started in the block inherit
    (``SWITCHBOARD_*`` overrides of their config)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def desk_tokens(tmp: Path, count: int) -> Path:
    """One agent token per desk agent (``agent0``...)."""
    exp = int(time.time()) + 6 * 3600
    path = tmp / "desk-tokens.txt"
    path.write_text("\n".join(
        jwt.encode({"sub": f"agent{i}", "tenant_id": TENANT, "role": "agent", "exp": exp},
                   SECRET, algorithm="HS256")
        for i in range(count)) + "\n")
    return path


def pipeline_environment(a: argparse.Namespace) -> dict[str, str]:
    """The ``SWITCHBOARD_*`` overrides the pipeline rows' servers start with."""
    overrides = {"SWITCHBOARD_SERVER__WRITE_LINGER": str(a.pipeline_linger)} \
        if a.pipeline_linger else {}
    if a.pipeline_batch_interval is not None:
        overrides["SWITCHBOARD_PLUGINS__PIPELINE__BATCH_INTERVAL"] = str(a.pipeline_batch_interval)
    return overrides


def desk_environment(a: argparse.Namespace) -> dict[str, str]:
    """The ``SWITCHBOARD_*`` overrides the desk rows' servers start with.
    Capacity is not what is measured: agents never fill up (the largest
    capacity the desk takes); every ticket makes two events for each of the
    agents, so their writes are coalesced."""
    return {"SWITCHBOARD_PLUGINS__DESK__DEFAULT_CAPACITY": "100000",
            "SWITCHBOARD_SERVER__WRITE_LINGER": str(a.desk_linger),
            **({"SWITCHBOARD_PLUGINS__DESK__BATCH_INTERVAL": str(a.desk_batch_interval)}
               if a.desk_batch_interval is not None else {})}


def desk_rows(node: Node, tmp: Path, a: argparse.Namespace, backend: str,
              label: str) -> list[Row]:
    agents, queues = a.desk_agents, a.desk_queues
    tokens = desk_tokens(tmp, agents)
    rows = []
    # one ticket per request (what the target is about), then the bulk route
    for bulk in (1, a.desk_bulk) if a.desk_bulk > 1 else (1,):
        with chat_database(tmp, backend, a.pg_url) as store_url, \
                environment(desk_environment(a)), \
                run_switchboard(tmp, DESK_PLUGINS, store_url=store_url) as target:
            for q in range(queues):
                try:
                    http_json(f"{target.http}/api/v1/queues", headers={
                        "Authorization": f"Bearer {API_KEY}"}, body={
                        "tenant": TENANT, "id": f"q{q}", "name": f"Queue {q}",
                        "members": [{"userId": f"agent{i}"} for i in range(agents)
                                    if i % queues == q]})
                except (OSError, ValueError) as exc:
                    raise BenchError(f"creating queue q{q}: {exc}") from None
            result = node.run("desk.mjs", [
                "--agents", str(agents), "--queues", str(queues), "--rate", str(a.desk_rate),
                "--secs", str(a.desk_secs), "--warmup", str(a.desk_warmup),
                "--bulk", str(bulk), "--tokens", str(tokens), "--sockets", str(a.desk_sockets),
                "--api-key", API_KEY, "--tenant", TENANT, "--server-pid", str(target.pid),
                "--holders", str(a.procs), target.ws_url, target.http],
                timeout=a.desk_secs + a.desk_warmup + 180)
        log(f"desk {label}{f' bulk {bulk}' if bulk > 1 else ''}: {json.dumps(result)}")
        rows.append(desk_row(a, label, bulk, result))
    return rows


def desk_row(a: argparse.Namespace, label: str, bulk: int, result: dict[str, Any]) -> Row:
    created = float(result.get("created_per_s") or 0)
    p99 = result.get("assign_p99_ms")
    met = (bool(result.get("ok")) and created >= TARGET_DESK_CREATED
           and p99 is not None and p99 < TARGET_DESK_P99_MS)
    cpu = result.get("server_cpu")
    busy = f"; server CPU busy {cpu:.0%}" if isinstance(cpu, int | float) else ""
    per_ticket = result.get("server_cpu_ms_per_ticket")
    if isinstance(per_ticket, int | float):
        busy += f", {per_ticket:g} ms of server CPU per ticket"
    client = result.get("client_cpu")
    if isinstance(client, int | float):
        busy += f"; load client CPU {client:.0%}"
    errors = (f"; {result['errors']} errors, first {result.get('first_error')}"
              if result.get("errors") else "")
    seconds = [x for x in result.get("assign_p99_by_second") or () if isinstance(x, int | float)]
    by_second = (f" (p99 of each second {min(seconds):g}-{max(seconds):g} ms, "
                 f"median {statistics.median(seconds):g})" if seconds else "")
    how = (f"POST /api/v1/tickets paced at {a.desk_rate:,}/s" if bulk == 1 else
           f"POST /api/v1/tickets/bulk, {bulk} tickets per request, {a.desk_rate:,} tickets/s"
           ) + f" over at most {a.desk_sockets} connections"
    return Row(
        "service desk: tickets created/s and create-to-assigned latency"
        + ("" if bulk == 1 else f" (bulk, {bulk} per request)"),
        f"Switchboard, {label}",
        f"{a.desk_agents} agents (plain WebSocket, in {a.procs} Node processes apart from the "
        f"one sending and timing) in the agents room, members of {a.desk_queues} queues "
        f"(round robin), their arrival announced before the load starts; {how} for "
        f"{a.desk_secs} s after {a.desk_warmup:g} s of the same load not timed "
        f"(plugins {DESK_PLUGINS}; `server.write_linger` {a.desk_linger * 1000:g} ms"
        + (f", desk `batch_interval` {a.desk_batch_interval * 1000:g} ms"
           if a.desk_batch_interval is not None else "") + ")",
        f"{result.get('created_per_s', 0):,} created/s ({result.get('created', 0):,} of "
        f"{result.get('sent', 0):,}, {result.get('answered_in_window_per_s', 0):,}/s answered "
        f"within the {a.desk_secs} s); {result.get('assigned', 0):,} `ticket:assigned`; "
        f"request-to-assigned p50 / p99 / max {result.get('assign_p50_ms')} / {p99} / "
        f"{result.get('assign_max_ms')} ms{by_second}{busy}{errors}",
        f">= {TARGET_DESK_CREATED:,}/s with p99 < {TARGET_DESK_P99_MS:g} ms: {verdict(met)}")


def bench_desk(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    rows = []
    backends = [("sqlite", "SQLite")]
    if a.pg_url:
        backends.append(("postgresql", "PostgreSQL"))
    for backend, label in backends:
        try:
            rows += desk_rows(node, tmp, a, backend, label)
        except BenchError as exc:
            log(f"desk on {label} failed: {exc}")
            rows.append(Row("service desk", f"Switchboard, {label}", "-", f"FAILED: {exc}"))
    return rows


# -- report -------------------------------------------------------------------


# -- several nodes on Redis -------------------------------------------------------


def drop_redis_keys(url: str, prefix: str) -> None:
    """Delete the run's keys (``prefix*``) with redis-cli, if it is installed."""
    cli = shutil.which("redis-cli")
    if cli is None:
        return
    keys = subprocess.run([cli, "-u", url, "--scan", "--pattern", f"{prefix}*"],
                          capture_output=True, text=True, check=False).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run([cli, "-u", url, "del", *keys[i:i + 500]], capture_output=True,
                       check=False)


def redis_latency(node: Node, target: Target, a: argparse.Namespace, tokens: Path
                  ) -> dict[str, Any]:
    """Emit-to-receive latency over Socket.IO with the sockets spread over the
    cluster's nodes and the events POSTed to the first node."""
    if target.switchboard:
        how = ["--tokens", str(tokens), "--tenant", TENANT, "--api-key", API_KEY,
               target.sio_url, f"{target.http}/api/v1/emit"]
    else:
        how = ["--reference", target.sio_url, f"{target.http}/emit"]
    result = node.run("latency-sio.mjs", [
        "--clients", str(a.clients), "--room-size", "10", "--rate", str(a.rate),
        "--secs", str(a.secs), *how], timeout=a.secs + 240)
    log(f"latency {target.name}: {json.dumps(result)}")
    wait_idle(target)
    return result


def bench_redis(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    """Two nodes sharing a Redis, Socket.IO clients split between them, events
    sent to the first: Switchboard (Redis broker) against Node socket.io with
    its Redis adapter, in the same run. Fan-out deliveries/s (one room), then
    emit-to-receive latency (rooms of 10, each split over the two nodes)."""
    prefix = f"bench-{secrets.token_hex(4)}"
    broker = (f'\n[broker]\nurl = {json.dumps(a.redis_url)}\nprefix = "{prefix}-sb"\n')
    ours, theirs = "Switchboard, 2 nodes on Redis", "Node socket.io 4 + Redis adapter, 2 nodes"
    fanout: dict[str, list[float]] = {}
    runs: dict[str, list[dict[str, Any]]] = {ours: [], theirs: []}
    argv = ["node_socketio.cjs", "--redis", a.redis_url, "--key", f"{prefix}-node"]
    try:
        # latency in alternating rounds (judged on the run with the median p99);
        # fan-out in the first
        for round_ in range(max(1, a.latency_rounds)):
            with run_switchboard(tmp, a.plugins, broker=broker) as first, \
                    run_switchboard(tmp, a.plugins, broker=broker) as second:
                target = attrs.evolve(first, name=ours, others=(second.port,))
                if not round_:
                    fanout[ours] = fanout_series(node, target, a, tokens, a.repeats,
                                                 sio=True).rates
                runs[ours].append(redis_latency(node, target, a, tokens))
            with run_design(tmp, theirs, argv) as first, run_design(tmp, theirs, argv) as second:
                target = attrs.evolve(first, others=(second.port,))
                if not round_:
                    fanout[theirs] = fanout_series(node, target, a, tokens, a.repeats,
                                                   sio=True).rates
                runs[theirs].append(redis_latency(node, target, a, tokens))
    finally:
        drop_redis_keys(a.redis_url, prefix)
    latency = {server: _median_run(each, by="p99_ms") for server, each in runs.items()}
    ratio = statistics.median(fanout[ours]) / (statistics.median(fanout[theirs]) or 1e-9)
    load = (f"{a.clients} socket.io-client sockets (websocket transport) in 1 room, "
            f"alternately on the 2 nodes; {a.messages} room broadcasts of 100 B each "
            f"({a.clients * a.messages:,} deliveries), triggered on the first node; "
            f"clients in {a.procs} Node processes")
    rows = [Row("two nodes on Redis, Socket.IO fan-out: deliveries/s", server, load,
                summary(rates, "/s"),
                f">= Node + Redis adapter (medians): {ratio:.2f}x {verdict(ratio >= 1.0)}"
                if server == ours else "")
            for server, rates in fanout.items()]

    def p99(result: dict[str, Any]) -> float:
        return float(result.get("p99_ms") or "inf") if result.get("ok") else float("inf")

    def by_node(result: dict[str, Any]) -> str:
        nodes = result.get("by_node") or []
        if len(nodes) != 2:
            return ""
        first, other = nodes
        return (f"; members on the first node (the POSTs') p50 / p99 {first.get('p50_ms')} / "
                f"{first.get('p99_ms')} ms, on the other {other.get('p50_ms')} / "
                f"{other.get('p99_ms')} ms")

    rooms = -(-a.clients // 10)
    for server, result in latency.items():
        lower = p99(latency[ours]) < p99(latency[theirs])
        rows.append(Row(
            "two nodes on Redis, Socket.IO emit-to-receive latency p50 / p99 / max", server,
            f"{a.clients} socket.io-client sockets in {rooms} rooms of 10, each room split "
            f"over the 2 nodes; {a.rate} events/s for {a.secs} s, one POST per event to the "
            f"first node ({result.get('send_rate')} events/s sent)",
            f"{result.get('p50_ms')} / {result.get('p99_ms')} / {result.get('max_ms')} ms; "
            f"received {result.get('received', 0):,} of {result.get('expected', 0):,}"
            f"{by_node(result)}{_rounds(result, 'p99')}",
            f"p99 below Node + Redis adapter's: {verdict(lower)}" if server == ours else ""))
    return rows


# -- hold and reconnect storm ------------------------------------------------------

#: Heartbeats of the hold row's servers: Switchboard's defaults, which are also
#: Node socket.io's (pingInterval 25 s, pingTimeout 20 s).
HOLD_HEARTBEAT = {"SWITCHBOARD_HEARTBEAT__INTERVAL": "25.0",
                  "SWITCHBOARD_HEARTBEAT__TIMEOUT": "20.0"}
#: File descriptors a server keeps for itself (listeners, database, logs).
FD_RESERVE = 200
TARGET_STORM_SECS = 15.0
#: Idle memory per connection on one node, with heartbeats (KiB).
TARGET_HOLD_WS_KIB = 10.0
TARGET_HOLD_SIO_KIB = 14.0
#: Seconds the storm waits for the old server to exit after SIGTERM.
STORM_STOP_TIMEOUT = 300.0


class LineClient:
    """A Node client running beside the benchmark, told what to do by lines on its
    standard input and answering by lines on its standard output (its standard
    error goes to a file, shown if it fails)."""

    def __init__(self, argv: Sequence[str], errfile: Path) -> None:
        self.errfile = errfile
        with errfile.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err)
        self.buffer = b""
        self.lines: list[str] = []

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise BenchError(f"load client gone ({exc}): {self.stderr()}") from None

    def stderr(self) -> str:
        return self.errfile.read_text(errors="replace").strip()[-600:]

    def expect(self, wanted: str, timeout: float) -> str:
        """The next line starting with ``wanted`` (earlier lines are skipped)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while self.lines:
                    line = self.lines.pop(0)
                    if line.startswith(wanted):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise BenchError(f"no {wanted!r} from the load client within {timeout:g} s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError(f"the load client exited ({self.proc.wait()}): "
                                     f"{self.stderr()}")
                self.buffer += chunk
                *complete, self.buffer = self.buffer.split(b"\n")
                self.lines += [ln.decode(errors="replace") for ln in complete]

    def expect_json(self, prefix: str, timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.expect(prefix, timeout))
        return result

    def close(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


def fd_capped(wanted: int, open_files: int) -> int:
    """``wanted`` connections, or as many as one server process may hold with the
    open-files limit of this machine."""
    return max(1, min(wanted, open_files - FD_RESERVE))


def capped_note(n: int, wanted: int, open_files: int) -> str:
    if n == wanted:
        return ""
    return (f" (asked {wanted:,}: capped by the open-files limit of one process, "
            f"{open_files:,} here, hard limit not raisable)")


def bench_hold(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    """N idle connections to one server: RSS per connection, CPU at idle with
    heartbeats, then one broadcast to all of them. Switchboard over plain
    WebSocket and Socket.IO, and the Node socket.io server, in the same run."""
    servers = []
    if "websocket" in a.hold_kinds:
        servers += [("Switchboard", False), (NODE_WS, False)]
    if "socket.io" in a.hold_kinds:
        servers += [("Switchboard", True), (SIO_REFERENCES[0][0], True)]
    rows = []
    for name, sio in servers:
        try:
            rows.append(hold_row(node, tmp, a, tokens, name, sio))
        except BenchError as exc:
            log(f"hold {name} failed: {exc}")
            rows.append(Row("hold: idle connections", name, "-", f"FAILED: {exc}"))
    return rows


@contextlib.contextmanager
def hold_server(tmp: Path, a: argparse.Namespace, name: str) -> Iterator[Target]:
    if name == "Switchboard":
        with environment(HOLD_HEARTBEAT), run_switchboard(tmp, a.hold_plugins) as target:
            yield target
    else:
        argv = (["node_ws.cjs", "--secret", SECRET, "--heartbeat", "25"] if name == NODE_WS
                else ["node_socketio.cjs"])
        with run_design(tmp, name, argv) as target:
            yield target


def held_connections(target: Target) -> int:
    if target.switchboard:
        stats = http_json(f"{target.http}/api/v1/stats",
                          headers={"Authorization": f"Bearer {API_KEY}"})
        return int(stats["connections"])
    return int(http_json(f"{target.http}/blast/0")["clients"])


def hold_row(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path, name: str,
             sio: bool) -> Row:
    n = a.hold_n
    kind = "socket.io-client sockets" if sio else "plain WebSocket clients"
    with hold_server(tmp, a, name) as target:
        url = target.sio_url if sio else target.ws_url
        if not sio and not target.switchboard:
            url += "?token={token}"
        args = ["--procs", str(a.hold_procs), "--addresses", str(a.hold_addresses),
                "--server-pid", str(target.pid), *(["--sio"] if sio else [])]
        if target.switchboard:
            args += ["--tokens", str(tokens), "--join", "bench:all", "--trigger",
                     f"{target.http}/api/v1/emit", "--api-key", API_KEY, "--tenant", TENANT]
        else:
            args += ["--trigger", f"{target.http}/blast/{{M}}"]
            if not sio:
                args += ["--tokens", str(tokens), "--session"]
        # warm-up (lazy imports, first-use caches), not counted per connection
        with node.hold(url, 50, tokens if target.switchboard or not sio else None, sio=sio):
            pass
        wait_idle(target)
        time.sleep(1.0)
        before = rss_kib(target.pid)
        client = LineClient(node.argv("hold.mjs", [*args, url, str(n)]), tmp / "hold.err")
        try:
            t0 = time.monotonic()
            client.expect("ready", timeout=120 + n / 100)
            opened_s = time.monotonic() - t0
            time.sleep(a.settle)
            after = rss_kib(target.pid)
            held = held_connections(target)
            if held != n:
                raise BenchError(f"server holds {held} connections, not {n}")
            cpu0 = cpu_seconds(target.pid)
            time.sleep(a.hold_idle_secs)
            idle_cpu_s = cpu_seconds(target.pid) - cpu0
            idle_cpu = idle_cpu_s / a.hold_idle_secs
            after_idle = rss_kib(target.pid)
            client.send("blast")
            blast = client.expect_json('{"ok"', timeout=150)
        finally:
            client.close()
        log(f"hold {name} {kind}: RSS {before} -> {after} -> {after_idle} KiB, idle CPU "
            f"{idle_cpu:.4f}, blast {json.dumps(blast)}")
    per_conn = (after - before) / n
    target_kib = TARGET_HOLD_SIO_KIB if sio else TARGET_HOLD_WS_KIB
    broadcast = (f"{blast.get('deliveries_per_s', 0):,} deliveries/s, the last one "
                 f"{float(blast.get('seconds') or 0) * 1000:,.0f} ms after the trigger"
                 + (f" (server CPU {blast['server_cpu_s']} s)" if "server_cpu_s" in blast
                    else "") if blast.get("ok") else f"FAILED: {blast.get('error')}")
    if target.switchboard:
        how = "`room:join bench:all` (acked); broadcast: one `POST /api/v1/emit` to the room"
    elif sio:
        how = "joined to a room on connect; broadcast: `GET /blast/1`"
    else:
        how = ("its token verified at the handshake; broadcast: `GET /blast/1`, one `send` "
               "per client")
    return Row(
        "hold: idle connections, RSS per connection, idle CPU, one broadcast to all",
        name + (f" (plugins {a.hold_plugins})" if target.switchboard else ""),
        f"{n:,} idle {kind}{capped_note(n, a.hold, a.open_files)}, opened in batches by "
        f"{a.hold_procs} Node processes from {a.hold_addresses} source addresses "
        f"(127.0.0.1-{a.hold_addresses}); each {how}; "
        + ("heartbeat every 25 s (timeout 20 s)" if target.switchboard or sio else
           "a ping to every client every 25 s from one timer (`--heartbeat 25`)"),
        f"{per_conn:.2f} KiB per connection (RSS {before / 1024:.1f} -> {after / 1024:.1f} "
        f"MiB, {after_idle / 1024:.1f} MiB after {a.hold_idle_secs:g} s idle); idle CPU "
        f"{idle_cpu_s:.2f} s over {a.hold_idle_secs:g} s: {idle_cpu:.2%} of a core "
        f"({idle_cpu * 1e6 / n:.2f} us per connection per s); "
        f"broadcast: {broadcast}; opened in {opened_s:.1f} s",
        (f"<= {target_kib:g} KiB per connection: {verdict(per_conn <= target_kib)}"
         if target.switchboard else ""))


def storm_confirm(client: LineClient, http: str, seq: int, groups: int,
                  timeout: float) -> float:
    """Publish ``{seq}`` to both rooms of every client (one emit request); return
    the seconds until every client had it in both."""
    items = [{"event": "msg", "tenant": TENANT, "room": f"bench:{kind}{k}", "data": {"seq": seq}}
             for kind in "gh" for k in range(groups)]
    t0 = time.time()
    http_json(f"{http}/api/v1/emit", headers={"Authorization": f"Bearer {API_KEY}"}, body=items,
              timeout=30)
    client.send(f"confirm {seq}")
    while True:
        done = client.expect_json('{"type":"confirmed"', timeout)
        if done.get("seq") == seq:
            return float(done["at"]) / 1000 - t0


def storm_errors(errors: dict[str, int]) -> tuple[int, int, int, str]:
    """(refused, timed out, other, the first other) of a client's connect errors."""
    refused = sum(v for k, v in errors.items() if "ECONNREFUSED" in k)
    timed_out = sum(v for k, v in errors.items() if "timeout" in k.lower())
    others = {k: v for k, v in errors.items() if "ECONNREFUSED" not in k
              and "timeout" not in k.lower()}
    return refused, timed_out, sum(others.values()), next(iter(others), "")


def bench_storm(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    rows = []
    try:
        rows.append(storm_row(node, tmp, a, tokens))
    except BenchError as exc:
        log(f"storm failed: {exc}")
        rows.append(Row("reconnect storm", "Switchboard", "-", f"FAILED: {exc}"))
    return rows + connect_rows(node, tmp, a, tokens)


def storm_row(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> Row:
    n, groups = a.storm_n, min(a.storm_groups, 500)
    port = free_port()
    first = spawn_switchboard(tmp, port, a.plugins)
    second: subprocess.Popen[bytes] | None = None
    client: LineClient | None = None
    try:
        wait_http(f"http://{HOST}:{port}/health", first)
        client = LineClient(node.argv("storm.mjs", [
            "--procs", str(a.storm_procs), "--addresses", str(a.hold_addresses),
            "--groups", str(groups), "--tokens", str(tokens), f"http://{HOST}:{port}", str(n)]),
            tmp / "storm.err")
        client.expect("ready", timeout=120 + n / 100)
        http = f"http://{HOST}:{port}"
        setup_confirm = storm_confirm(client, http, 1, groups, 60)
        rss_held = rss_kib(first.pid)
        log(f"storm: {n} sockets in their rooms (confirmed in {setup_confirm:.3f} s), "
            f"server RSS {rss_held} KiB; SIGTERM")
        cpu_held = cpu_seconds(first.pid)
        children_cpu = children_cpu_seconds()
        t_kill = time.time()
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(timeout=STORM_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the server did not stop within {STORM_STOP_TIMEOUT:g} s of "
                             "SIGTERM") from None
        t_exit = time.time()
        # (the stopped server is the only child reaped meanwhile: its whole CPU)
        stop_cpu = children_cpu_seconds() - children_cpu - cpu_held
        log(f"storm: the old server stopped in {t_exit - t_kill:.2f} s")
        second = spawn_switchboard(tmp, port, a.plugins)
        t_spawn = time.time()
        # up = listening (a TCP connect is accepted by the kernel even while the
        # server is busy with the storm; /health would wait behind it)
        deadline = t_spawn + 120
        while True:
            if second.poll() is not None:
                raise BenchError(f"the restarted server exited with {second.returncode}")
            try:
                socket.create_connection((HOST, port), timeout=1.0).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise BenchError("the restarted server did not listen within 120 s") from None
                time.sleep(0.02)
        t_up = time.time()
        cpu_up = cpu_seconds(second.pid)
        log(f"storm: the restarted server listens {t_up - t_spawn:.2f} s after its start")
        back_cpu: float | None = None
        try:
            back = client.expect_json('{"type":"back"', timeout=a.storm_timeout)
            back_cpu = cpu_seconds(second.pid) - cpu_up
            t_back: float | None = float(back["at"]) / 1000
            confirm_s: float | None = storm_confirm(client, http, 2, groups, 60)
        except BenchError as exc:
            log(f"storm: {exc}")
            t_back = confirm_s = None
        peak = vm_hwm_kib(second.pid)
        client.send(f"report {t_up * 1000:.0f}")
        report = client.expect_json('{"type":"report"', timeout=60)
        log(f"storm report: {json.dumps(report)}")
    finally:
        if client is not None:
            client.close()
        for proc in (first, second):
            if proc is not None:
                stop(proc)
        log_tail(tmp / f"switchboard-{port}.log", "server")
    refused, timed_out, other, first_other = storm_errors(report["errors_after_up"])
    down_refused, down_timed_out, down_other, _ = storm_errors(report["errors_before_up"])
    first_rc, last_rc = report.get("first_reconnect"), report.get("last_reconnect")
    spread = (last_rc - first_rc) / 1000 if first_rc and last_rc and last_rc > first_rc else 0
    accepted = (f"{n / spread:,.0f}/s from the first reconnect to the last"
                if spread and t_back is not None else "-")
    clean = refused == 0 and timed_out == 0
    if t_back is not None and confirm_s is not None:
        from_kill, from_up = t_back - t_kill, t_back - t_up
        outcome = (f"all {n:,} back {from_kill:.1f} s after SIGTERM, {from_up:.1f} s after the "
                   f"new server listened; confirmation publish reached all in "
                   f"{confirm_s * 1000:,.0f} ms")
    else:
        from_kill = from_up = float("inf")
        outcome = (f"NOT all back: {report.get('back', 0):,} of {n:,} back (and "
                   f"{report.get('connected', 0):,} connected) {a.storm_timeout:g} s after the "
                   "new server listened")
    per_reconnect = (f"server CPU {back_cpu * 1e3 / n:.2f} ms per reconnect (listening to "
                     "all back), " if back_cpu is not None else "")
    return Row(
        "reconnect storm: SIGTERM, restart on the same port, all back in their rooms",
        f"Switchboard (plugins {a.plugins})",
        f"{n:,} socket.io-client sockets{capped_note(n, a.storm, a.open_files)} "
        "(websocket transport, each with its own JWT as `auth.token`), each in 2 rooms "
        f"(`room:join`, acked, again on every connect); socket.io-client's reconnection with "
        f"its defaults (1 s doubling to 5 s, randomized +-50%); clients in {a.storm_procs} Node "
        f"processes from {a.hold_addresses} source addresses; back = rejoined both rooms, "
        f"confirmed by one emit request to all {2 * groups} rooms reaching every socket twice",
        f"{outcome} (old server stopped in {t_exit - t_kill:.1f} s using {stop_cpu:.2f} s of "
        f"CPU, new one listening {t_up - t_spawn:.1f} s after its start); accepted {accepted}, "
        f"{per_reconnect}busiest second {report.get('busiest_second_connects', 0):,}; "
        f"peak RSS of the new server {peak / 1024:.1f} MiB (the old one held "
        f"{rss_held / 1024:.1f} MiB); "
        f"handshakes after it listened: {refused} refused, {timed_out} timed out, {other} "
        f"other{f' ({first_other})' if first_other else ''}; while it was down: "
        f"{down_refused + down_timed_out + down_other:,} failed attempts (expected); "
        f"{report.get('join_errors', 0)} room joins refused",
        f"none refused: {verdict(clean)}; all back < {TARGET_STORM_SECS:g} s after SIGTERM: "
        f"{verdict(clean and from_kill < TARGET_STORM_SECS)} (after the new server listened: "
        f"{verdict(clean and from_up < TARGET_STORM_SECS)})")


def connect_rows(node: Node, tmp: Path, a: argparse.Namespace, tokens: Path) -> list[Row]:
    """Connections accepted/s with JWT verification: Switchboard and the Node `ws`
    server (``designs/node_ws.cjs --secret``), same client, same run."""
    rates: dict[str, list[float]] = {}
    servers = [("Switchboard", None), (NODE_WS, ["node_ws.cjs", "--secret", SECRET])]
    for name, argv in servers:
        with (run_switchboard(tmp, a.plugins) if argv is None
              else run_design(tmp, name, argv)) as target:
            url = target.ws_url if target.switchboard else f"{target.ws_url}?token={{token}}"
            rates[name] = []
            for i in range(a.repeats):
                result = node.run("connect-rate.mjs", [
                    "--clients", str(a.clients), "--concurrency", str(a.concurrency),
                    "--tokens", str(tokens), "--session", "--timeout", "120", url],
                    timeout=200)
                rate = float(result["connections_per_s"]) if result.get("ok") else 0.0
                log(f"connect {name} run {i + 1}/{a.repeats}: {rate:,.0f} connections/s")
                rates[name].append(rate)
                wait_idle(target)
    ratio = statistics.median(rates["Switchboard"]) / (statistics.median(rates[NODE_WS]) or 1e-9)
    return [Row("connections accepted/s, to session frame (JWT verified)", name,
                f"{a.clients} clients, {a.concurrency} handshakes in flight, each with its own "
                "HS256 token in the URL",
                summary(r, "/s"),
                f">= Node `ws` (medians): {ratio:.2f}x {verdict(ratio >= 1.0)}"
                if name == "Switchboard" else "")
            for name, r in rates.items()]


def machine() -> str:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpus} CPUs ({usable} usable), {platform.processor() or platform.machine()}; "
            f"Python {platform.python_version()}, Node {node}; load average {load}; "
            f"one-core speed {one_core_speed() / 1e6:.1f} M loop iterations/s")


def one_core_speed(seconds: float = 1.0) -> int:
    """Iterations of a bare Python loop in ``seconds``: how fast one core of this
    machine runs Python right now. Shared machines vary by tens of percent over a
    day, and a single-process server's figures move with it, so runs are
    comparable only at a similar speed."""
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        count += 1
    return count


def table(rows: list[Row]) -> str:
    head = ["measurement", "server", "load", "result", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r.measurement, r.server, r.load, r.result,
                                         r.target]) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000,
                   help="clients for fan-out, connect rate, latency and designs")
    p.add_argument("--messages", type=int, default=200, help="messages per fan-out")
    p.add_argument("--idle", type=int, default=5000, help="idle connections for memory")
    p.add_argument("--rate", type=int, default=1000, help="latency: events per second")
    p.add_argument("--secs", type=int, default=10, help="latency: seconds of publishing")
    p.add_argument("--repeats", type=int, default=3, help="runs of fan-out and connect")
    p.add_argument("--design-repeats", type=int, default=1, help="runs per design server")
    p.add_argument("--procs", type=int, default=2,
                   help="fan-out: Node processes the clients are spread over")
    p.add_argument("--latency-rounds", type=int, default=3,
                   help="latency (and the two-node latency): alternating rounds of the "
                        "servers compared (figures: the run with the median p50, two nodes: p99)")
    p.add_argument("--latency-procs", type=int, default=4,
                   help="latency: Node processes the receiving clients are spread over")
    p.add_argument("--batch-ms", type=int, default=10,
                   help="latency: also run with the events of each window of this many ms "
                        "in one request (0: skip)")
    p.add_argument("--concurrency", type=int, default=200,
                   help="connect rate: handshakes in flight")
    p.add_argument("--settle", type=float, default=3.0,
                   help="idle: seconds to wait before reading RSS")
    p.add_argument("--gc-threshold", default="100000,50,50",
                   help="latency: a third, diagnostic run (batched) with the server's "
                        "gc.set_threshold set to this (empty: skip)")
    p.add_argument("--plugins", default="rooms",
                   help="comma-separated plugins left enabled (default: rooms, which "
                        "room:join needs), or 'all' for the installed defaults")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run ({','.join(SECTIONS)})")
    p.add_argument("--chat-members", type=int, default=50,
                   help="chat: members of the conversation (each one connection)")
    p.add_argument("--chat-secs", type=int, default=10, help="chat: seconds of sending")
    p.add_argument("--chat-window", type=int, default=8,
                   help="chat, closed loop: messages in flight per member")
    p.add_argument("--chat-transports", type=lambda v: [t for t in v.split(",") if t],
                   default=["websocket", "socket.io"],
                   help="chat: clients to run, any of websocket,socket.io")
    p.add_argument("--chat-rate", type=int, default=1000,
                   help="chat, paced: messages per second (all members together)")
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="chat: PostgreSQL server (URL of a database to connect to while "
                        "creating and dropping the benchmark's own); empty skips PostgreSQL")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                   help="redis: the Redis both clusters of two nodes use (keys of the "
                        "run's own prefix, deleted afterwards)")
    p.add_argument("--pipeline-consultants", type=int, default=100,
                   help="pipeline: consultants with the board open (each one connection)")
    p.add_argument("--pipeline-rate", type=int, default=500,
                   help="pipeline: lead moves per second, all consultants together")
    p.add_argument("--pipeline-secs", type=int, default=10, help="pipeline: seconds of moving")
    p.add_argument("--pipeline-leads", type=int, default=300,
                   help="pipeline: leads on the board (made over HTTP before the run)")
    p.add_argument("--pipeline-procs", type=int, default=1,
                   help="pipeline: Node processes the consultants are spread over (each "
                        "moves its share of the leads)")
    p.add_argument("--pipeline-linger", type=float, default=0.0,
                   help="pipeline: the server's write_linger in seconds")
    p.add_argument("--pipeline-batch-interval", type=float, default=None,
                   help="pipeline: the plugin's batch_interval in seconds (default: "
                        "the plugin's own, 0.004; 0: a batch as soon as the last is done)")
    p.add_argument("--desk-agents", type=int, default=200,
                   help="desk: agents connected (members of the queues)")
    p.add_argument("--desk-queues", type=int, default=20, help="desk: queues")
    p.add_argument("--desk-rate", type=int, default=1000,
                   help="desk: tickets created per second over HTTP")
    p.add_argument("--desk-secs", type=int, default=10, help="desk: seconds of creating")
    p.add_argument("--desk-warmup", type=float, default=2.0,
                   help="desk: seconds of the same load before the timed ones (not timed)")
    p.add_argument("--desk-bulk", type=int, default=20,
                   help="desk: tickets per request of the second row (POST "
                        "/api/v1/tickets/bulk); 1 leaves that row out")
    p.add_argument("--desk-linger", type=float, default=0.0,
                   help="desk: the server's write_linger in seconds (each ticket is two "
                        "events to every agent)")
    p.add_argument("--desk-sockets", type=int, default=256,
                   help="desk: the load client's connections, the requests in flight at "
                        "most (a request that finds none free waits, its latency counting)")
    p.add_argument("--desk-batch-interval", type=float, default=None,
                   help="desk: the plugin's batch_interval in seconds (default: the "
                        "plugin's)")
    p.add_argument("--hold", type=int, default=50_000,
                   help="hold: idle connections to one server (capped by the open-files limit)")
    p.add_argument("--hold-procs", type=int, default=4,
                   help="hold: Node processes holding the clients")
    p.add_argument("--hold-addresses", type=int, default=8,
                   help="hold and storm: loopback source addresses the clients are bound to "
                        "in turn (127.0.0.1, 127.0.0.2, ...)")
    p.add_argument("--hold-idle-secs", type=float, default=50.0,
                   help="hold: seconds over which the idle server's CPU is measured "
                        "(two heartbeat intervals)")
    p.add_argument("--hold-kinds", type=lambda v: [t for t in v.split(",") if t],
                   default=["websocket", "socket.io"],
                   help="hold: clients to run, any of websocket,socket.io (socket.io also "
                        "runs the Node socket.io server)")
    p.add_argument("--hold-plugins", default="rooms",
                   help="hold: Switchboard's plugins ('all' for the installed defaults)")
    p.add_argument("--storm", type=int, default=20_000,
                   help="storm: socket.io-client sockets (capped by the open-files limit)")
    p.add_argument("--storm-procs", type=int, default=4,
                   help="storm: Node processes holding the sockets")
    p.add_argument("--storm-groups", type=int, default=100,
                   help="storm: rooms in each of the two partitions of the sockets (<= 500)")
    p.add_argument("--storm-timeout", type=float, default=120.0,
                   help="storm: seconds to wait for every socket to be back")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    a = p.parse_args(argv)
    a.sections = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(a.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    wrong = set(a.hold_kinds) - {"websocket", "socket.io"}
    if wrong or not a.hold_kinds:
        p.error(f"--hold-kinds: any of websocket,socket.io (not {','.join(sorted(wrong))})")
    wrong = set(a.chat_transports) - {"websocket", "socket.io"}
    if wrong or not a.chat_transports:
        p.error(f"--chat-transports: any of websocket,socket.io (not {','.join(sorted(wrong))})")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    open_files = raise_open_files()
    needed = max(a.clients, a.idle) + 1000
    a.idle_ws = None
    a.open_files = open_files
    a.hold_n = fd_capped(a.hold, open_files)
    a.storm_n = fd_capped(a.storm, open_files)
    if open_files < needed:
        log(f"warning: open-files limit {open_files} is below the {needed} this run needs")
    for section, wanted, n in (("hold", a.hold, a.hold_n), ("storm", a.storm, a.storm_n)):
        if section in a.sections and n < wanted:
            log(f"warning: {section}: {n:,} connections, not {wanted:,}: a server process "
                f"may open {open_files:,} files here")
    ensure_node_modules()
    compile_checkout()
    node = Node(open_files)
    header = machine()
    log(header)
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tokens = write_tokens(tmp, max(
            a.clients, a.idle, a.chat_members,
            a.hold_n if "hold" in a.sections else 0, a.storm_n if "storm" in a.sections else 0))
        steps = {"fanout": bench_fanout, "connect": bench_connect, "idle": bench_idle,
                 "latency": bench_latency, "designs": bench_designs, "sio": bench_sio,
                 "chat": bench_chat, "pipeline": bench_pipeline, "desk": bench_desk,
                 "redis": bench_redis, "hold": bench_hold, "storm": bench_storm}
        for section in a.sections:
            log(f"--- {section}")
            try:
                rows += steps[section](node, tmp, a, tokens)
            except BenchError as exc:
                log(f"{section} failed: {exc}")
                rows.append(Row(section, "-", "-", f"FAILED: {exc}"))
    elapsed = time.monotonic() - started
    print(f"Machine: {header}")
    print("Servers and load clients share the machine's CPUs; all traffic on 127.0.0.1. "
          f"Switchboard: one process, plugins enabled: {a.plugins} ({CHAT_PLUGINS} "
          "for the chat rows), "
          f"log level warning. Total time {elapsed:.0f} s.\n")
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps([attrs.asdict(r) for r in rows], indent=2) + "\n")
    return 1 if any(r.result.startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
