"""Switchboard's public surface for plugin authors: one import.

    from switchboard.core import App, ClientError, Session, hookimpl, incoming, outgoing

Everything a plugin needs is here, each with its docstring; docs/writing-plugins.md
lists them. What is not exported is the server's own
machinery and may change without notice.

- The hooks: :data:`hookimpl` (the specifications are in
  :mod:`switchboard.core.hookspec`).
- The server and its clients: :class:`App`, :class:`Session`,
  :class:`Identity`, :class:`Args`, :class:`Config`, :class:`Rate`.
- Events: :func:`incoming`, :func:`outgoing`, :class:`EventSpec`,
  :class:`Deferred`, :func:`structure_payload`, :func:`unstructure`,
  :class:`ClientError` and the error codes, :class:`CloseCode`.
- Rooms: :func:`user_room`, :func:`tenant_room`, :func:`agents_room`,
  :func:`is_room_name`, :func:`check_room_name`.
- HTTP routes: :func:`require_api_key`, :func:`request_api_key`,
  :func:`api_key_tenant`, :func:`api_key_tenant_allowed`, :func:`read_json`,
  :func:`structure_body`, :func:`error_response`; :func:`documented` and
  :func:`object_schema` for the API documents.
- Validators for payload fields: :func:`identifier`, :func:`text`,
  :func:`max_length`, :func:`between`, :func:`row_id`, :func:`check_identifier`.
- Storage: :class:`Store` (with :meth:`Store.upsert`, :meth:`Store.insert`
  and ``run(fn, serialize_on=KEY)``), :func:`serialize_on`, :func:`serialize_on_each`,
  :class:`StoreError`, :class:`StoreUnavailable`; :class:`Batcher` for
  batched writes.
- Other plugins' services and the values they pass: :class:`ChatService`,
  :class:`NotificationsService`, :class:`PresenceService`,
  :class:`TicketService`, :class:`PipelineService`, :class:`HandoverService` and
  the rest of
  :mod:`switchboard.core.services`.
- Several nodes: :class:`Announcement` (of :meth:`App.on_announcement`),
  :class:`BrokerUnavailable` (Redis unreachable: nothing was sent), the
  topics ``NODE_GONE`` and ``NODE_BACK`` and :func:`emptied_members` (who a
  gone node's counts left at 0).
- Timing: :class:`Coalescer`; :class:`Timer`, what ``app.timers.at(deadline,
  target)`` schedules on the server's shared timers (``target.due()`` is called
  at ``deadline``, on Trio's clock, unless ``app.timers.cancel(timer)`` came
  first: no task per deadline); compatibility profiles: :class:`Profile`,
  :class:`Inbound`.
"""

from .apidocs import documented, object_schema
from .app import App
from .args import Args
from .auth import AuthError, Identity
from .batching import Batcher, Pending
from .broker import (
    NODE_BACK,
    NODE_GONE,
    Announcement,
    BrokerUnavailable,
    Publication,
    emptied_members,
)
from .clock import trio_time_of, wall_time
from .config import ApiKey, Config, ConfigError, Rate, load_config
from .errors import (
    CONFLICT,
    FORBIDDEN,
    INVALID_PAYLOAD,
    INVALID_ROOM,
    NOT_FOUND,
    RATE_LIMITED,
    UNAUTHORIZED,
    ClientError,
    CloseCode,
)
from .events import (
    Deferred,
    EventSpec,
    incoming,
    outgoing,
    structure_payload,
    unstructure,
)
from .handshake import Handshake
from .hookspec import hookimpl
from .http import (
    api_key_tenant,
    api_key_tenant_allowed,
    error_response,
    read_json,
    request_api_key,
    require_api_key,
    structure_body,
)
from .jsonroutes import JsonHandler, JsonRequest
from .profiles import Inbound, Profile, Replies
from .rooms import agents_room, check_room_name, is_room_name, tenant_room, user_room
from .services import (
    ChatConversation,
    ChatHistory,
    ChatMessage,
    ChatParticipant,
    ChatService,
    ChatStatusChange,
    HandoverChange,
    HandoverRequest,
    HandoverService,
    Lead,
    LeadAction,
    LeadChange,
    LeadPage,
    MessageSource,
    Notification,
    NotificationsService,
    Pipeline,
    PipelineService,
    PipelineStage,
    PresenceInfo,
    PresenceService,
    Ticket,
    TicketChange,
    TicketPage,
    TicketService,
)
from .session import Session
from .store import (
    LockKey,
    Store,
    StoreError,
    StoreUnavailable,
    array_rows,
    serialize_on,
    serialize_on_each,
)
from .supervise import SupervisedNursery, keep_serving
from .throttle import Coalescer
from .timers import Due, Timer
from .validators import (
    MAX_ID_LENGTH,
    MAX_ROW_ID,
    between,
    check_identifier,
    identifier,
    max_length,
    row_id,
    text,
)

__all__ = [
    "CONFLICT",
    "FORBIDDEN",
    "INVALID_PAYLOAD",
    "INVALID_ROOM",
    "MAX_ID_LENGTH",
    "MAX_ROW_ID",
    "NODE_BACK",
    "NODE_GONE",
    "NOT_FOUND",
    "RATE_LIMITED",
    "UNAUTHORIZED",
    "Announcement",
    "ApiKey",
    "App",
    "Args",
    "AuthError",
    "Batcher",
    "BrokerUnavailable",
    "ChatConversation",
    "ChatHistory",
    "ChatMessage",
    "ChatParticipant",
    "ChatService",
    "ChatStatusChange",
    "ClientError",
    "CloseCode",
    "Coalescer",
    "Config",
    "ConfigError",
    "Deferred",
    "Due",
    "EventSpec",
    "HandoverChange",
    "HandoverRequest",
    "HandoverService",
    "Handshake",
    "Identity",
    "Inbound",
    "JsonHandler",
    "JsonRequest",
    "LockKey",
    "MessageSource",
    "Notification",
    "NotificationsService",
    "Pending",
    "PresenceInfo",
    "PresenceService",
    "Profile",
    "Publication",
    "Rate",
    "Replies",
    "Session",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SupervisedNursery",
    "Ticket",
    "TicketChange",
    "TicketPage",
    "TicketService",
    "Timer",
    "agents_room",
    "api_key_tenant",
    "api_key_tenant_allowed",
    "array_rows",
    "between",
    "check_identifier",
    "check_room_name",
    "documented",
    "emptied_members",
    "error_response",
    "hookimpl",
    "identifier",
    "incoming",
    "is_room_name",
    "keep_serving",
    "load_config",
    "max_length",
    "object_schema",
    "outgoing",
    "read_json",
    "request_api_key",
    "require_api_key",
    "row_id",
    "serialize_on",
    "serialize_on_each",
    "structure_body",
    "structure_payload",
    "tenant_room",
    "text",
    "trio_time_of",
    "unstructure",
    "user_room",
    "wall_time",
]
__all__ += ["Lead", "LeadAction", "LeadChange", "LeadPage", "Pipeline", "PipelineService",
            "PipelineStage"]
