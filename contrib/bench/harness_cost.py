"""What a test on the ``switchboard`` harness costs in real time.

Starts, uses, restarts and stops servers the way the pytest fixture does, on
an autojump ``MockClock``, and prints a markdown table of the real time
(median and worst of ``--runs``) and of the run-loop turns of each step. A
turn is one pass of Trio's scheduler: a run loop spinning against a worker
thread, instead of sleeping until it is done, shows as thousands.

    .venv/bin/python contrib/bench/harness_cost.py --runs 50
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio
import trio.testing
from switchboard.core import ChatParticipant
from switchboard.testing import Harness, make_config


class _Turns(trio.abc.Instrument):
    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def _measure(runs: int, turns: _Turns, clock: trio.testing.MockClock
                   ) -> dict[str, list[tuple[float, int]]]:
    results: dict[str, list[tuple[float, int]]] = {}

    async def step(name: str, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        began, turned = time.perf_counter(), turns.count
        await fn(*args)
        results.setdefault(name, []).append(
            ((time.perf_counter() - began) * 1000, turns.count - turned))

    for _ in range(runs):
        async with trio.open_nursery() as nursery:
            harness: Harness | None = None

            async def start() -> None:
                nonlocal harness
                harness = await Harness.start(make_config(), nursery, clock=clock)

            await step("start a server", start)
            assert harness is not None
            running = harness

            await step("connect a client, one request", _connect_and_ask, running)
            await step("one database write (chat service)", _store_a_conversation, running)
            await step("restart on the same database", running.restart)
            await step("stop", running.stop)
    return results


async def _connect_and_ask(harness: Harness) -> None:
    client = await harness.connect(user="ann", tenant="t1")
    await client.request("room:join", {"room": "lead:1"})


async def _store_a_conversation(harness: Harness) -> None:
    chat = harness.app.service("chat")
    await chat.create_conversation("t1", None, participants=[ChatParticipant("carl")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    turns = _Turns()
    clock = trio.testing.MockClock(autojump_threshold=0)
    results = trio.run(_measure, args.runs, turns, clock, clock=clock, instruments=[turns])
    print(f"Harness cost: {args.runs} runs on an autojump MockClock, "
          "in-memory SQLite, every installed plugin\n")
    print("| step | real ms (median) | real ms (worst) | loop turns (median) |")
    print("|---|---:|---:|---:|")
    for name, samples in results.items():
        ms = [s[0] for s in samples]
        turned = [s[1] for s in samples]
        print(f"| {name} | {statistics.median(ms):.1f} | {max(ms):.1f} | "
              f"{statistics.median(turned):.0f} |")


if __name__ == "__main__":
    main()
