"""What a lead move costs in the pipeline plugin's write path, without sockets.

Creates 300 leads over six stages, then moves them round the stages in
batches of ``--batch`` (each to the end of the next stage, with its version)
through the plugin's own storage and ``apply`` functions, and prints the CPU
(all threads of this process: the event loop and the store's worker thread)
and the real time per move. CPU time holds up on a machine busy with other
work; the real time does not (and includes the commit's fsync).

    .venv/bin/python contrib/bench/pipeline_cost.py --batch 5 --moves 3000
    .venv/bin/python contrib/bench/pipeline_cost.py \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/scratch

The PostgreSQL database is one to scratch: the plugin's tables in it are
dropped and created again.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from switchboard.core import Store
from switchboard.plugins.pipeline.payloads import PipelineSettings
from switchboard.plugins.pipeline.service import Pipelines
from switchboard.plugins.pipeline.storage import Op, PipelineStorage

STAGES = ("novo", "qualificacao", "proposta", "negociacao", "ganho", "perdido")
LEADS = 300
TENANT = "bench"


class _Queued(Exception):
    """Raised instead of waiting for the batch writer: the change is captured."""


async def measure(url: str, batch: int, moves: int) -> tuple[float, float]:
    store = Store(url)
    storage = PipelineStorage()
    storage.declare(store.metadata)
    if store.dialect == "postgresql":
        engine = sa.create_engine(url)
        store.metadata.drop_all(engine)
        engine.dispose()
    await store.open()
    storage.store = store
    pipelines = Pipelines(storage)
    pipelines.settings = PipelineSettings()
    captured: list[Op] = []

    async def capture(tenant: str, lead_id: str, op: Op) -> Any:
        captured.append(op)
        raise _Queued

    pipelines._submit = capture  # type: ignore[method-assign]

    async def op_of(change: Awaitable[Any]) -> Op:
        try:
            await change
        except _Queued:
            pass
        return captured.pop()

    try:
        await storage.write([await op_of(pipelines.create_lead(
            TENANT, title=f"lead {n}", stage_id=STAGES[n % len(STAGES)], lead_id=f"l{n}"))
            for n in range(LEADS)])
        where = {f"l{n}": (n % len(STAGES), 1) for n in range(LEADS)}
        ids = list(where)
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, moves, batch):
            ops = []
            for k in range(start, start + batch):
                lead_id = ids[k % LEADS]
                stage, version = where[lead_id]
                stage = (stage + 1) % len(STAGES)
                ops.append(await op_of(pipelines.move_lead(
                    TENANT, lead_id, STAGES[stage], version=version)))
                where[lead_id] = (stage, version + 1)
            for result in await storage.write(ops):
                if isinstance(result, Exception):
                    raise SystemExit(f"a move was refused: {result!r}")
        done = -(-moves // batch) * batch
        return ((time.process_time() - cpu) / done, (time.perf_counter() - wall) / done)
    finally:
        await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="", help="database (default: a new SQLite file)")
    p.add_argument("--batch", type=int, default=5, help="moves per transaction")
    p.add_argument("--moves", type=int, default=3000)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = a.url or f"sqlite:///{Path(tmp) / 'pipeline.db'}"
        cpu, wall = trio.run(measure, url, a.batch, a.moves)
    print(f"{sa.make_url(url).get_backend_name()}, batches of {a.batch}: "
          f"{cpu * 1e6:.0f} µs of CPU and {wall * 1e6:.0f} µs of real time per move")


if __name__ == "__main__":
    main()
