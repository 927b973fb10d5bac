"""The benchmark's servers start: the config ``contrib/bench/bench.py`` writes
for each section's plugins, with the ``SWITCHBOARD_*`` overrides the section
starts them with, passes the server's checks (a check made stricter must not
leave a section of the benchmark failing unnoticed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from switchboard.core.config import load_config
from switchboard.core.server import Server

BENCH = Path(__file__).resolve().parents[1] / "contrib" / "bench" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("switchboard_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (attrs classes look their module up)
    spec.loader.exec_module(module)
    return module


def sections(bench: ModuleType) -> list[tuple[str, str, dict[str, str]]]:
    """(section, plugins, overrides) of the sections that start servers with
    overrides, with their options at their defaults and set."""
    defaults = bench.parse_args([])
    tuned = bench.parse_args(["--desk-linger", "0.005", "--desk-batch-interval", "0.01",
                              "--pipeline-linger", "0.005", "--pipeline-batch-interval", "0.01"])
    return [
        ("desk", bench.DESK_PLUGINS, bench.desk_environment(defaults)),
        ("desk, tuned", bench.DESK_PLUGINS, bench.desk_environment(tuned)),
        ("pipeline", bench.PIPELINE_PLUGINS, bench.pipeline_environment(defaults)),
        ("pipeline, tuned", bench.PIPELINE_PLUGINS, bench.pipeline_environment(tuned)),
        ("hold", "all", bench.HOLD_HEARTBEAT),
        ("chat", "rooms,chat", {}),
    ]


def test_every_section_of_the_benchmark_starts_its_servers(
        bench: ModuleType, tmp_path: Path) -> None:
    for name, plugins, overrides in sections(bench):
        path = tmp_path / f"{name}.toml"
        path.write_text(bench.switchboard_config(tmp_path, 8000, plugins))
        Server(load_config(path, overrides))  # (raises ConfigError naming the key)
