"""Switchboard's public surface for plugin authors: one import.

    from switchboard.core import hookimpl, incoming, outgoing, ClientError, Session
"""

from .app import App
from .auth import Identity
from .config import Config, ConfigError, Rate, load_config
from .errors import ClientError, CloseCode
from .events import EventSpec, incoming, outgoing
from .hookspec import hookimpl
from .rooms import agents_room, tenant_room, user_room
from .session import Session

__all__ = [
    "App",
    "ClientError",
    "CloseCode",
    "Config",
    "ConfigError",
    "EventSpec",
    "Identity",
    "Rate",
    "Session",
    "agents_room",
    "hookimpl",
    "incoming",
    "load_config",
    "outgoing",
    "tenant_room",
    "user_room",
]
