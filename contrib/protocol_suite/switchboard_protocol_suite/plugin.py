"""The application the Socket.IO protocol's own test suite talks to.

The suite (``test-suite/`` of the socket.io-protocol repository) checks a
server through raw WebSocket frames and HTTP requests, and expects of the
application behind it what its reference server does:

- every client may connect, with or without a CONNECT payload, to ``/`` and
  to ``/custom``; right after the CONNECT answer the server sends the event
  ``auth`` carrying that payload (``{}`` when there was none);
- ``message`` with any arguments is sent back as ``message-back`` with the
  same arguments (binary ones included);
- ``message-with-ack`` with any arguments is acknowledged with them.

With ``suite.toml`` beside this package (only this plugin enabled, the
suite's heartbeat and connect timeout) Switchboard passes the suite
unchanged. Everything here goes through the public plugin API of
``switchboard.core``.
"""

from __future__ import annotations

import itertools
from typing import Any

from switchboard.core import Args, EventSpec, Handshake, Identity, Session, hookimpl, incoming

#: The one tenant every client of the suite belongs to.
TENANT = "suite"


class ProtocolSuitePlugin:
    """Accepts every client and answers the suite's two events."""

    def __init__(self) -> None:
        self._clients = itertools.count(1)

    @hookimpl
    def switchboard_authenticate(self, handshake: Handshake) -> Identity:
        # the suite's clients present no credentials: each is a user of its own
        return Identity(f"client-{next(self._clients)}", TENANT, "customer", None)

    @hookimpl
    def switchboard_session_opened(self, session: Session) -> None:
        auth = session.handshake.auth if session.handshake is not None else None
        session.emit("auth", dict(auth or {}))

    @hookimpl
    def switchboard_events(self) -> list[EventSpec]:
        return [
            incoming("message", None, self.message, args=True,
                     doc="Sent back as message-back with the same arguments."),
            incoming("message-with-ack", None, self.message_with_ack, args=True,
                     doc="Acknowledged with its arguments."),
        ]

    async def message(self, session: Session, args: list[Any]) -> None:
        session.emit("message-back", Args(*args))

    async def message_with_ack(self, session: Session, args: list[Any]) -> Args:
        return Args(*args)
