"""pytest fixtures of :mod:`switchboard.testing` (loaded through ``pytest11``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
import trio
import trio.testing
from switchboard.core.config import Config
from switchboard.core.server import Server

from . import Harness, make_config


@pytest.fixture
def switchboard_config() -> Config:
    """The config of the ``switchboard`` fixtures; override to change it."""
    return make_config()


@pytest.fixture
def switchboard_plugins() -> Mapping[str, object] | None:
    """Extra plugins (name -> plugin) besides the installed ones; override it."""
    return None


async def _start(config: Config, plugins: Mapping[str, object] | None,
                 nursery: trio.Nursery, *, listen: bool) -> Harness:
    server = Server(config, plugins=plugins)
    await nursery.start(lambda task_status: server.run(listen=listen, task_status=task_status))
    return Harness(server, nursery)


@pytest.fixture
async def switchboard(autojump_clock: trio.testing.MockClock, nursery: trio.Nursery,
                      switchboard_config: Config,
                      switchboard_plugins: Mapping[str, object] | None,
                      ) -> AsyncIterator[Harness]:
    """An in-process server on the autojump MockClock with in-memory transports."""
    harness = await _start(switchboard_config, switchboard_plugins, nursery, listen=False)
    yield harness
    await harness.stop()


@pytest.fixture
async def switchboard_live(nursery: trio.Nursery, switchboard_config: Config,
                           switchboard_plugins: Mapping[str, object] | None,
                           ) -> AsyncIterator[Harness]:
    """A server on an ephemeral 127.0.0.1 port, real clock, for socket tests."""
    harness = await _start(switchboard_config, switchboard_plugins, nursery, listen=True)
    yield harness
    await harness.stop()
