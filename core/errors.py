"""Errors a client can act on: a code, a message and, for payloads, the field.

Close codes used on WebSocket connections:

==== ===================================================
1001 server shutting down
1002 protocol error (bad WebSocket frame; a second WebSocket for an
     Engine.IO session that is not on long-polling)
1003 binary frame where JSON text was expected
1009 message larger than ``server.max_payload``
1011 the server failed (a bug; the log has the traceback)
4401 missing, invalid or expired token
4408 heartbeat timeout (no pong within ``heartbeat.timeout``)
4429 too many rate-limit breaches
4503 slow consumer (outgoing queue over ``server.outbox_max_bytes``)
==== ===================================================
"""

from __future__ import annotations

import logging
from enum import IntEnum
from typing import Any

from .broker import BrokerUnavailable
from .store import StoreUnavailable

log = logging.getLogger("switchboard")


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (see the table above)."""

    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    UNAUTHORIZED = 4401
    HEARTBEAT_TIMEOUT = 4408
    RATE_LIMITED = 4429
    SLOW_CONSUMER = 4503


class ClientError(Exception):
    """An error answered to the client as ``{"code", "message", "field"?}``.

    Event handlers raise it (or return one) to refuse a request; the protocol
    layer turns it into the error frame of the client's protocol.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r})"


# Codes used by the core (plugins add their own).
INVALID_JSON = "invalid_json"
INVALID_FRAME = "invalid_frame"
UNKNOWN_EVENT = "unknown_event"
INVALID_PAYLOAD = "invalid_payload"
RATE_LIMITED = "rate_limited"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
INVALID_ROOM = "invalid_room"
UNAUTHORIZED = "unauthorized"
INTERNAL = "internal_error"
STORE_UNAVAILABLE = "store_unavailable"
BROKER_UNAVAILABLE = "broker_unavailable"


def server_failure(exc: Exception, what: str) -> ClientError:
    """The error a client gets when handling ``what`` failed on the server side.

    A database that cannot be reached is ``store_unavailable`` (nothing was
    stored; retrying later, with the same ``clientId`` where there is one, is
    safe); a broker that cannot be reached is ``broker_unavailable`` (what
    was stored stays stored, the event was not sent); anything else is
    ``internal_error``. Either is logged here, without sending the client the
    details.
    """
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, StoreUnavailable):
        log.warning("%s: %s", what, exc)
        return ClientError(STORE_UNAVAILABLE, "the database is not answering; try again later")
    if isinstance(exc, BrokerUnavailable):
        log.warning("%s: %s", what, exc)
        return ClientError(BROKER_UNAVAILABLE, "the broker (Redis) is not answering: the event "
                           "was not sent; try again later")
    log.error("%s failed", what, exc_info=exc)
    return ClientError(INTERNAL, f"{what} failed on the server")
