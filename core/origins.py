"""Browser origins: ``server.allowed_origins``, one list with one meaning for
every transport (the plain WebSocket, Socket.IO's WebSocket and its
long-polling, where it also decides the CORS headers).

An entry is an exact origin (``https://app.example.com``), a glob pattern of
one (``https://*.example.com``, ``http://localhost:*``) or ``*`` (any origin).
A request without an ``Origin`` header is not from a browser page and is
always allowed; an empty list allows no browser origin.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

#: ``scheme://host[:port]``, where host and port may hold glob characters.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.\-]*://[^/?#\s]+", re.IGNORECASE)

ENTRY_HELP = ("must be an origin (scheme://host[:port], no path or trailing '/'), a glob "
              "pattern of one such as https://*.example.com, or '*' for any")


def entry_problem(entry: str) -> str | None:
    """Why ``entry`` cannot be an entry of ``allowed_origins`` (None: it can)."""
    if entry in ("*", "null") or _ORIGIN.fullmatch(entry):
        return None
    return ENTRY_HELP


def origin_allowed(allowed: Sequence[str], origin: str | None) -> bool:
    """Whether a request with this ``Origin`` header (None: without one) may connect.

    Origins compare without regard to case (a browser sends them in lower
    case; a config may not).
    """
    if origin is None:
        return True
    origin = origin.lower()
    return any(fnmatch.fnmatchcase(origin, entry.lower()) for entry in allowed)
