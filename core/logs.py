"""The server's log lines: one record, one line.

What a client sends reaches the log (an unknown namespace, an event's name, a
refused field): a newline in it would start a line of its own that reads as
the server's (a forged ``ERROR`` or ``login from``), and a terminal escape
would act on whoever reads the log in a terminal. :class:`OneLineFormatter`
writes a record's message with its control characters escaped as Python
does (``\\n``, ``\\x1b``); a traceback, the server's own, follows on its
lines as usual.
"""

from __future__ import annotations

import logging
import re

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


def configure(level: str) -> None:
    """Log to stderr at ``level`` (``info``...), one line per record."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
