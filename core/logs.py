"""The server's log lines: one record, one line.

What a client sends reaches the log (an unknown namespace, an event's name, a
refused field): a newline in it would start a line of its own that reads as
the server's (a forged ``ERROR`` or ``login from``), and a terminal escape
would act on whoever reads the log in a terminal. :class:`OneLineFormatter`
writes a record's message with its control characters escaped as Python
does (``\\n``, ``\\x1b``); a traceback, the server's own, follows on its
lines as usual.

What a client can repeat at will (an event refused with a client error, a
malformed packet, a connection opened and closed) would also make the log
as long as it likes. :class:`RepeatLimit` lets through at most
``log.repeat_limit`` records of one kind (logger and message template) per
``log.repeat_window`` seconds; the first one after the window says how many
were left out before it. Errors always pass.

With ``log.format = "json"`` (:class:`JsonFormatter`) each record is one JSON
object on its line (``time``, ``level``, ``logger``, ``message``, and
``exception`` with the traceback), for a log collector; JSON escapes every
control character, so there too a record is one line.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Literal

#: Characters that end a line or control a terminal (a tab is left as it is).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


class OneLineFormatter(logging.Formatter):
    """A formatter whose messages never span lines (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if _CONTROL.search(message) is not None:
            record = logging.makeLogRecord(
                {**record.__dict__, "msg": _CONTROL.sub(_escaped, message), "args": None})
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


#: Kinds of record tracked at most; past it, those whose window is over are
#: forgotten (a message built from what a client sent is a kind of its own).
MAX_KINDS = 1000


class RepeatLimit(logging.Filter):
    """At most ``limit`` records of one kind (logger and message template) per
    ``window`` seconds (0: no limit); the first one let through after that
    says how many were left out. ERROR and above always pass.

    The windows are on the monotonic clock, not Trio's: records come from the
    store's worker threads too, outside the Trio run."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.limit = limit
        self.window = window
        self._clock = clock
        #: (logger, template) -> [start of its window, records let through, left out]
        self._kinds: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.limit <= 0 or record.levelno >= logging.ERROR:
            return True
        key = (record.name, str(record.msg))
        at = self._clock()
        kind = self._kinds.get(key)
        if kind is None or at - kind[0] >= self.window:
            left_out = int(kind[2]) if kind is not None else 0
            if kind is None and len(self._kinds) >= MAX_KINDS:
                self._forget(at)
            self._kinds[key] = [at, 1, 0]
            if left_out:
                record.msg = f"{record.msg} ({left_out} more like this left out before it)"
            return True
        if kind[1] < self.limit:
            kind[1] += 1
            return True
        kind[2] += 1
        return False

    def _forget(self, at: float) -> None:
        self._kinds = {key: kind for key, kind in self._kinds.items()
                       if at - kind[0] < self.window}
        if len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()


def configure(level: str, repeat_limit: int = 0, repeat_window: float = 10.0,
              form: Literal["text", "json"] = "text") -> None:
    """Log to stderr at ``level`` (``info``...), one line per record (text, or
    one JSON object), at most ``repeat_limit`` records of a kind per
    ``repeat_window`` seconds (0: all)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else OneLineFormatter(FORMAT))
    handler.addFilter(RepeatLimit(repeat_limit, repeat_window))
    logging.basicConfig(level=level.upper(), handlers=[handler])
