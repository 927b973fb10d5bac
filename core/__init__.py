"""Switchboard's public surface for plugin authors: one import.

    from switchboard.core import hookimpl, incoming, outgoing, ClientError, Session
"""

from .app import App
from .args import Args
from .auth import AuthError, Identity
from .config import Config, ConfigError, Rate, load_config
from .errors import (
    FORBIDDEN,
    INVALID_PAYLOAD,
    INVALID_ROOM,
    RATE_LIMITED,
    UNAUTHORIZED,
    ClientError,
    CloseCode,
)
from .events import Deferred, EventSpec, incoming, outgoing
from .handshake import Handshake
from .hookspec import hookimpl
from .rooms import agents_room, tenant_room, user_room
from .session import Session
from .store import Store, StoreError

__all__ = [
    "FORBIDDEN",
    "INVALID_PAYLOAD",
    "INVALID_ROOM",
    "RATE_LIMITED",
    "UNAUTHORIZED",
    "App",
    "Args",
    "AuthError",
    "ClientError",
    "CloseCode",
    "Config",
    "ConfigError",
    "Deferred",
    "EventSpec",
    "Handshake",
    "Identity",
    "Rate",
    "Session",
    "Store",
    "StoreError",
    "agents_room",
    "hookimpl",
    "incoming",
    "load_config",
    "outgoing",
    "tenant_room",
    "user_room",
]
