"""CPU of the Redis broker per publication, without clients or transports.

    python contrib/bench/redis_cost.py [--publications 5000] [--in-flight 32]
        [--redis-url redis://127.0.0.1:6379/0]

Two brokers of one cluster run in this process (as two nodes would, on a key
prefix of the run's own, deleted afterwards); the first publishes N
publications, ``--in-flight`` at a time, and each is delivered on both.
Prints the process CPU time per publication (both nodes' share: the publish
script, the readers, encoding and decoding) and the publish-to-delivery time
on the two nodes. The CPU figure moves little with the machine's load, the
times do.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from typing import Any

import coredis
import trio
from switchboard.core.broker import Publication
from switchboard.core.redis_broker import RedisBroker


async def measure(url: str, count: int, in_flight: int) -> dict[str, Any]:
    prefix = f"redis-cost-{secrets.token_hex(4)}"
    first = RedisBroker(url, prefix=prefix)
    second = RedisBroker(url, prefix=prefix)
    delivered = {"first": 0, "second": 0}
    times: list[float] = []
    done = trio.Event()

    def receiver(name: str) -> Any:
        def deliver(publication: Publication, position: str | None) -> int:
            delivered[name] += 1
            times.append(time.perf_counter() - publication.data["t"])
            if delivered["first"] == count and delivered["second"] == count:
                done.set()
            return 1
        return deliver

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run, receiver("first"), dict)
            await nursery.start(second.run, receiver("second"), dict)
            cpu, wall = time.process_time(), time.perf_counter()
            limit = trio.CapacityLimiter(in_flight)

            async def publish(i: int) -> None:
                async with limit:
                    await first.publish(Publication("t", "r", "e",
                                                    {"i": i, "t": time.perf_counter()}))
            async with trio.open_nursery() as publishers:
                for i in range(count):
                    publishers.start_soon(publish, i)
            with trio.fail_after(60):
                await done.wait()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            nursery.cancel_scope.cancel()
    finally:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(url)
        async with client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(keys)
    times.sort()
    return {"publications": count, "cpu_us_per_publication": round(1e6 * cpu / count),
            "wall_s": round(wall, 2),
            "p50_ms": round(1e3 * times[len(times) // 2], 2),
            "p99_ms": round(1e3 * times[int(len(times) * 0.99)], 2),
            "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--publications", type=int, default=5000)
    p.add_argument("--in-flight", type=int, default=32)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    a = p.parse_args()
    print(trio.run(measure, a.redis_url, a.publications, a.in_flight))


if __name__ == "__main__":
    main()
