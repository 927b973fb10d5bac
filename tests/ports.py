"""Ports for servers a test starts itself (``redis-server``, ``switchboard serve``).

A port found free with ``bind(0)`` comes from the kernel's ephemeral range,
from which every outgoing connection also takes its local port: on a busy
machine (pytest-xdist workers, other suites) one of them can take it between
the check and the server's own bind. These ports are taken below that range
instead, each pytest-xdist worker from a block of its own, and checked free
by binding them.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator

#: Where the blocks start (past the well-known and registered ports in common use).
FIRST = 20000
#: Ports in each worker's block.
BLOCK = 1500


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw0", "gw1"... under xdist
    return int(worker[2:]) if worker[2:].isdigit() else 0


def _candidates() -> Iterator[int]:
    blocks = max(1, (_ephemeral_start() - FIRST) // BLOCK)
    start = FIRST + (_worker_index() % blocks) * BLOCK
    offset = random.randrange(BLOCK)  # another run of the suite starts elsewhere
    return (start + (offset + n) % BLOCK for n in itertools.count())


_ports = _candidates()


def free_port() -> int:
    """A 127.0.0.1 port nothing is bound to, outside the ephemeral range."""
    for _ in range(BLOCK):
        port = next(_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # the whole block taken: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen
