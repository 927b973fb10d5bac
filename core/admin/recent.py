"""The last warnings and errors of the server, for the console's panel.

A logging handler on the ``switchboard`` logger keeps the latest records in
a ring buffer of fixed size: the oldest go as new ones come.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator

import attrs

#: Longest message kept, in characters.
MAX_MESSAGE = 2000


@attrs.frozen
class LoggedError:
    """One warning or error as the console shows it."""

    #: UNIX time it was logged.
    at: float
    level: str
    logger: str
    message: str


class RecentErrors(logging.Handler):
    """Keeps the last ``size`` records of WARNING or above; ``version`` grows
    with each one, so a reader knows when to look again."""

    def __init__(self, size: int, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._records: deque[LoggedError] = deque(maxlen=size)
        self.version = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f" ({type(exc).__name__}: {exc})"
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "…"
        self._records.append(LoggedError(record.created or time.time(), record.levelname,
                                         record.name, message))
        self.version += 1

    def __iter__(self) -> Iterator[LoggedError]:
        """The records kept, newest first."""
        return reversed(list(self._records))

    def __len__(self) -> int:
        return len(self._records)
