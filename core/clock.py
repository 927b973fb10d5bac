"""Wall-clock time that moves with Trio's clock.

Plugins store times as UNIX timestamps (due times, retry times, last seen)
but wait for them with Trio's timers. :func:`wall_time` is the wall clock as
Trio's clock moves it: the offset between the two is taken once per Trio run,
so under ``trio.testing.MockClock`` stored times and timers move together (a
test that lets an hour pass sees an hour-old retry come due), and a server
restarted in the same run keeps the same time line. In production the two
clocks start equal; a wall clock stepped later (NTP) is not followed.
"""

from __future__ import annotations

import time

import trio

#: Wall clock minus Trio's clock, taken once per Trio run.
_OFFSET: trio.lowlevel.RunVar[float] = trio.lowlevel.RunVar("switchboard_wall_offset")


def _offset() -> float:
    try:
        return _OFFSET.get()
    except LookupError:
        offset = time.time() - trio.current_time()
        _OFFSET.set(offset)
        return offset


def wall_time() -> float:
    """UNIX time in seconds, advancing with Trio's clock (see the module)."""
    return _offset() + trio.current_time()


def trio_time_of(wall: float) -> float:
    """The Trio clock time at which :func:`wall_time` reaches ``wall``: what to
    give ``trio.sleep_until`` or a ``CancelScope`` deadline."""
    return wall - _offset()
