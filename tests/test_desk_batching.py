"""``plugins.desk.batch_interval``: under a steady stream, new tickets wait
for the interval and share one transaction (and one write to each agent); a
ticket after a quiet moment is written at once. On the mock clock, on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from databases import database_url
from desk import desk_config, new_ticket
from switchboard.core.config import Config, ConfigError, load_config
from switchboard.core.pluginmanager import Plugins
from switchboard.testing import Harness

INTERVAL = 0.5


@pytest.fixture(params=["sqlite", "postgresql"])
def switchboard_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    with database_url(request.param, tmp_path, tables=True) as url:
        yield desk_config(url, {"batch_interval": INTERVAL})


async def test_a_steady_stream_waits_for_the_interval_a_lone_ticket_does_not(
        switchboard: Harness) -> None:
    start = trio.current_time()
    first = await new_ticket(switchboard)
    assert trio.current_time() == start  # after a quiet moment: at once
    answered: dict[str, float] = {}

    async def create(customer: str) -> None:
        await new_ticket(switchboard, customerId=customer)
        answered[customer] = trio.current_time() - start

    async with trio.open_nursery() as nursery:  # right after it: they wait, together
        for customer in ("c2", "c3"):
            nursery.start_soon(create, customer)
    assert answered == {"c2": pytest.approx(INTERVAL), "c3": pytest.approx(INTERVAL)}
    await trio.sleep(10 * INTERVAL)
    later = trio.current_time()
    last = await new_ticket(switchboard)
    assert trio.current_time() == later
    assert last["number"] == first["number"] + 3


@pytest.mark.parametrize("value", ["-0.001", "2", '"soon"', "true"])
def test_a_batch_interval_out_of_range_is_refused_naming_the_setting(
        tmp_path: Path, value: str) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text(f"[plugins.desk]\nbatch_interval = {value}\n")
    with pytest.raises(ConfigError) as info:
        Plugins(load_config(path, {}))
    assert info.value.key == "plugins.desk.batch_interval"


def test_batch_interval_is_20_ms_by_default_and_0_turns_it_off(tmp_path: Path) -> None:
    assert Plugins(load_config(None, {})).settings["desk"].batch_interval == 0.02
    path = tmp_path / "switchboard.toml"
    for value in (0, 0.004):
        path.write_text(f"[plugins.desk]\nbatch_interval = {value}\n")
        assert Plugins(load_config(path, {})).settings["desk"].batch_interval == value
