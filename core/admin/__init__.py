"""The admin console: a web page of the running server behind its own login.

Off unless ``[admin] path`` is set; see docs/admin-console.md. The server
creates one :class:`AdminConsole`, registers its blueprint and its socket's
path, and runs it in its nursery.
"""

from __future__ import annotations

from .console import AdminConsole

__all__ = ["AdminConsole"]
