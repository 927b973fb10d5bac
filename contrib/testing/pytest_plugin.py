"""pytest fixtures of :mod:`switchboard.testing` (loaded through ``pytest11``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Mapping
from typing import Any

import pytest
import trio
import trio.testing
from switchboard.core.config import Config

from . import Harness, make_config


def _run_on(fixture_clock: trio.abc.Clock) -> Callable[..., Any]:
    """A ``trio.run`` for pytest-trio that always uses ``fixture_clock``."""

    def run(fn: Callable[[], Any], *, clock: trio.abc.Clock | None = None,
            instruments: Any = ()) -> Any:
        return trio.run(fn, clock=fixture_clock, instruments=instruments)

    return run


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Run tests of the ``switchboard`` fixture (or of any fixture that asks for
    ``autojump_clock``, to start a server on it) on that autojump clock.

    pytest-trio only passes a clock to ``trio.run`` when the test function itself
    asks for it, so the clock a fixture depends on is handed over here.
    """
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    clock = funcargs.get("autojump_clock")
    if isinstance(clock, trio.abc.Clock):
        item.add_marker(pytest.mark.trio(run=_run_on(clock)), append=False)
    return (yield)


@pytest.fixture
def switchboard_config() -> Config:
    """The config of the ``switchboard`` fixtures; override to change it."""
    return make_config()


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object] | None:
    """Extra plugins (name -> plugin) besides the installed ones; override it."""
    return None


@pytest.fixture
async def switchboard(autojump_clock: trio.testing.MockClock, nursery: trio.Nursery,
                      switchboard_config: Config,
                      switchboard_plugins: Mapping[str, object] | None,
                      ) -> AsyncIterator[Harness]:
    """An in-process server on the autojump MockClock with in-memory transports."""
    harness = await Harness.start(switchboard_config, nursery, plugins=switchboard_plugins,
                                  clock=autojump_clock)
    yield harness
    await harness.stop()


@pytest.fixture
async def switchboard_live(nursery: trio.Nursery, switchboard_config: Config,
                           switchboard_plugins: Mapping[str, object] | None,
                           ) -> AsyncIterator[Harness]:
    """A server on an ephemeral 127.0.0.1 port, real clock, for socket tests."""
    harness = await Harness.start(switchboard_config, nursery, plugins=switchboard_plugins,
                                  listen=True)
    yield harness
    await harness.stop()
