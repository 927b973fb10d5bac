"""Handing a connection's events from its reader to its handler task cheaply.

A memory channel's ``send`` and ``receive`` each pass through Trio's
scheduler even when they need not wait. The reader queues without yielding
while there is room (it yields at its next read anyway), and the handler takes
what is already queued before going back to the channel, so a burst of events
costs one task switch instead of two per event. Order is unchanged: one queue,
one consumer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import trio

T = TypeVar("T")


async def send_in_turn(channel: trio.MemorySendChannel[T], item: T) -> None:
    """Queue ``item``; wait (and let the handler run) only when the queue is full."""
    try:
        channel.send_nowait(item)
    except trio.WouldBlock:
        await channel.send(item)


def drain(channel: trio.MemoryReceiveChannel[T]) -> Iterator[T]:
    """The items already queued, without waiting for more."""
    while True:
        try:
            yield channel.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
