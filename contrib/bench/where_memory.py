"""Where the memory of an idle connection goes.

Runs the server in this process (the bench's generated config, the plugins
named by ``--plugins``), opens ``--idle`` idle clients with the bench's
``hold.mjs`` (plain WebSocket, or socket.io-client sockets with ``--sio``),
and prints, per connection: the bytes tracemalloc traced (by the line that
allocated them, and by file), the objects the cyclic collector tracks (by
type, with their ``sys.getsizeof``), and the tasks Trio runs.

    .venv/bin/python contrib/bench/where_memory.py --idle 2000 --plugins rooms,presence [--sio]

Only what is allocated after a warm-up (lazy imports, first-use caches) and
still alive once the clients are ready and ``--settle`` seconds have passed
counts; the figures are differences divided by the number of connections.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import jwt
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import (
    HERE,
    SECRET,
    free_port,
    raise_open_files,
    switchboard_config,
)
from switchboard.core.cli import tune_gc
from switchboard.core.config import load_config
from switchboard.core.server import Server

OPEN_FILES = raise_open_files()
ROOT = str(Path(__file__).resolve().parents[2])


def _where(filename: str) -> str:
    for prefix in (ROOT + os.sep, *(p + os.sep for p in sys.path if p.endswith("packages"))):
        if filename.startswith(prefix):
            return filename[len(prefix):]
    return filename


def write_tokens(tmp: Path, count: int, per_tenant: int) -> Path:
    """One HS256 token per client: distinct users, ``per_tenant`` to a tenant
    (with presence on, each user's arrival goes to everyone of its tenant)."""
    exp = int(time.time()) + 6 * 3600
    path = tmp / "tokens.txt"
    path.write_text("\n".join(
        jwt.encode({"sub": f"u{i}", "tenant_id": f"t{i // per_tenant}", "role": "customer",
                    "exp": exp}, SECRET, algorithm="HS256")
        for i in range(count)) + "\n")
    return path


async def run_hold(url: str, n: int, tokens: Path, sio: bool, join: str = "") -> trio.Process:
    args = ["bash", "-c", f'ulimit -n {OPEN_FILES}; exec "$0" "$@"', "node", str(HERE / "hold.mjs"),
            url, str(n), "--tokens", str(tokens), "--sio" if sio else "--session"]
    if join:
        args += ["--join", join]
    proc = await trio.lowlevel.open_process(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = b""
    while not line.startswith(b"ready"):
        chunk = await proc.stdout.receive_some(4096)
        if not chunk:
            raise SystemExit(f"hold.mjs ended before {n} clients were ready")
        line += chunk
        if b"\n" in line and not line.startswith(b"ready"):
            line = line.split(b"\n", 1)[1]
    return proc


async def release(proc: trio.Process) -> None:
    assert proc.stdin is not None
    await proc.stdin.aclose()
    await proc.wait()


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS in /proc/self/status")


def type_census() -> tuple[Counter[str], Counter[str]]:
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return counts, sizes


def tasks_of(root: trio.lowlevel.Task) -> Counter[str]:
    names: Counter[str] = Counter()
    stack = [root]
    while stack:
        task = stack.pop()
        names[task.name.rsplit(".", 1)[-1]] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


async def measure(a: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="where-memory-"))
    port = free_port()
    config_path = tmp / "switchboard.toml"
    config_path.write_text(switchboard_config(tmp, port, a.plugins))
    tokens = write_tokens(tmp, a.idle, a.per_tenant)
    config = load_config(str(config_path))
    server = Server(config)
    base = f"http://127.0.0.1:{port}"
    url = base if a.sio else f"ws://127.0.0.1:{port}{config.server.ws_path}?token={{token}}"
    n = a.idle
    kind = "Socket.IO" if a.sio else "plain WebSocket"
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        tune_gc(config.server.gc_thresholds)
        warm = await run_hold(url, 50, tokens, a.sio, a.join)
        await release(warm)
        for _ in range(200):  # the warm-up's connections gone
            if not server._open_connections():
                break
            await trio.sleep(0.1)
        await trio.sleep(1.0)
        gc.collect()
        if a.rss:
            rss0, cpu0 = rss_kib(), time.process_time()
            proc = await run_hold(url, n, tokens, a.sio, a.join)
            cpu1 = time.process_time()
            await trio.sleep(a.settle)
            rss1, held = rss_kib(), server._open_connections()
            await release(proc)
            # the same clients again (their tokens verified before), once all are gone
            for _ in range(600):
                if not server._open_connections():
                    break
                await trio.sleep(0.1)
            cpu2 = time.process_time()
            again = await run_hold(url, n, tokens, a.sio, a.join)
            cpu3 = time.process_time()
            await release(again)
            server.shutdown()
            print(f"| {kind} | {n:,} idle ({a.per_tenant} users a tenant, {held} held), "
                  f"plugins {a.plugins} | {(rss1 - rss0) / n:.2f} KiB (RSS {rss0 / 1024:.1f} "
                  f"-> {rss1 / 1024:.1f} MiB) | server CPU per connection opened: "
                  f"{(cpu1 - cpu0) / n * 1e6:.0f} us, the same clients again "
                  f"{(cpu3 - cpu2) / n * 1e6:.0f} us |")
            return
        counts0, sizes0 = type_census()  # (before the snapshots: they hold tuples)
        tracemalloc.start(a.frames)
        before = tracemalloc.take_snapshot()
        tasks0 = tasks_of(trio.lowlevel.current_root_task())
        proc = await run_hold(url, n, tokens, a.sio, a.join)
        await trio.sleep(a.settle)
        gc.collect()
        counts1, sizes1 = type_census()
        after = tracemalloc.take_snapshot()
        tasks1 = tasks_of(trio.lowlevel.current_root_task())
        held = server._open_connections()
        tracemalloc.stop()
        await release(proc)
        server.shutdown()

    print(f"## {n:,} idle {kind} connections ({a.per_tenant} users a tenant), "
          f"plugins {a.plugins} ({held} held)\n")
    filters = [tracemalloc.Filter(False, tracemalloc.__file__),
               tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    after, before = after.filter_traces(filters), before.filter_traces(filters)
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"traced per connection: {total / n:,.0f} bytes\n")

    print("### by allocating line (bytes per connection, >= 16)\n")
    print("| bytes | blocks | where |\n|---:|---:|---|")
    for stat in after.compare_to(before, "lineno")[:a.top]:
        if stat.size_diff / n < 16:
            break
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:70]
        print(f"| {stat.size_diff / n:,.0f} | {stat.count_diff / n:.2f} | "
              f"`{_where(frame.filename)}:{frame.lineno}` `{code}` |")

    print("\n### by file\n")
    print("| bytes | where |\n|---:|---|")
    for stat in after.compare_to(before, "filename")[:a.top]:
        if stat.size_diff / n < 16:
            break
        print(f"| {stat.size_diff / n:,.0f} | `{_where(stat.traceback[0].filename)}` |")

    if a.traceback:
        print("\n### by call stack (top 10)\n")
        for stat in after.compare_to(before, "traceback")[:10]:
            print(f"{stat.size_diff / n:,.0f} bytes, {stat.count_diff / n:.2f} blocks:")
            for line in stat.traceback.format(most_recent_first=True)[:2 * a.frames]:
                print("    " + line.replace(ROOT + os.sep, ""))

    print("\n### objects tracked by the collector (per connection)\n")
    print("| count | getsizeof bytes | type |\n|---:|---:|---|")
    rows = sorted(((counts1[k] - counts0[k], sizes1[k] - sizes0[k], k) for k in counts1),
                  key=lambda r: -r[1])
    for count, size, name in rows:
        if count / n < 0.5:
            continue
        print(f"| {count / n:.1f} | {size / n:,.0f} | `{name}` |")
    total_objects = sum(counts1.values()) - sum(counts0.values())
    print(f"\ntracked objects per connection: {total_objects / n:.1f}")

    print("\n### Trio tasks per connection\n")
    for name, count in sorted(tasks1.items()):
        if (count - tasks0[name]) / n >= 0.5:
            print(f"- `{name}`: {(count - tasks0[name]) / n:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--idle", type=int, default=2000, help="idle connections")
    p.add_argument("--plugins", default="rooms,presence",
                   help="plugins left enabled (as the bench's --plugins)")
    p.add_argument("--per-tenant", type=int, default=100, help="users per tenant")
    p.add_argument("--sio", action="store_true", help="socket.io-client sockets")
    p.add_argument("--join", default="", metavar="ROOM",
                   help="each client joins ROOM (acked) before it counts as ready, "
                        "as in the hold row")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before the snapshot")
    p.add_argument("--frames", type=int, default=1, help="tracemalloc frames kept")
    p.add_argument("--traceback", action="store_true", help="also group by call stack")
    p.add_argument("--rss", action="store_true",
                   help="only the server's RSS delta per connection (no tracing) and "
                        "its CPU time per connection opened, then for the same clients "
                        "again: one table row")
    p.add_argument("--top", type=int, default=40, help="rows per table")
    trio.run(measure, p.parse_args())


if __name__ == "__main__":
    main()
