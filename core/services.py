"""Services that first-party plugins offer other plugins, and the values they pass.

A plugin that owns data (chat, notifications, presence) lets other plugins
use it through a small service object instead of its module internals or its
HTTP routes. The contract lives here, in core, like the hook specifications;
the implementation lives in the plugin, which registers it under a name with
the ``switchboard_services`` hook. Another plugin obtains it from the app::

    chat = app.service("chat")          # typed: ChatService
    conversation, created = await chat.get_or_create_conversation(
        tenant_id, "whatsapp:+5511987654321",
        participants=[ChatParticipant("+5511987654321", "customer")])
    await chat.post_message(tenant_id, conversation.id, sender_id="autoreply",
                            sender_role="bot", content={"text": "We will be right with you"})

Services are for the server's running life: call them from event handlers,
HTTP routes, hooks and background tasks (not from ``switchboard_startup``,
which may run before the providing plugin has started). Bad input is refused
with :class:`~switchboard.core.ClientError` (``invalid_payload`` naming the
argument, ``not_found``, ``conflict``), which an event handler or a route can
let through to its client as it is; a database that cannot be reached raises
:class:`~switchboard.core.StoreUnavailable`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import attrs

if TYPE_CHECKING:
    import sqlalchemy

    from .store import LockKey

T = TypeVar("T")

__all__ = [
    "ChatConversation",
    "ChatHistory",
    "ChatMessage",
    "ChatParticipant",
    "ChatService",
    "ChatStatusChange",
    "HandoverAction",
    "HandoverChange",
    "HandoverPriority",
    "HandoverRequest",
    "HandoverService",
    "HandoverStatus",
    "Lead",
    "LeadAction",
    "LeadChange",
    "LeadPage",
    "MessageSource",
    "Notification",
    "NotificationsService",
    "Pipeline",
    "PipelineService",
    "PipelineStage",
    "PresenceInfo",
    "PresenceService",
    "Ticket",
    "TicketChange",
    "TicketChangeKind",
    "TicketPage",
    "TicketService",
    "TicketStatus",
]

#: Where a stored chat message came from: a client's ``message:send``
#: (``"socket"``), ``POST /api/v1/conversations/{id}/messages`` (``"http"``),
#: or another plugin through :meth:`ChatService.post_message` (``"plugin"``).
MessageSource = Literal["socket", "http", "plugin"]


# -- chat ---------------------------------------------------------------------------


@attrs.frozen
class ChatParticipant:
    """A participant of a conversation: a user id and the role they take in it
    (``customer`` by default; any identifier, e.g. ``agent``, ``bot``)."""

    user_id: str
    role: str = "customer"


@attrs.frozen
class ChatConversation:
    """A conversation of a tenant and its participants."""

    tenant_id: str
    id: str
    title: str | None
    participants: tuple[ChatParticipant, ...] = ()

    @property
    def room(self) -> str:
        """The room its messages are broadcast to: ``conversation:{id}``."""
        return f"conversation:{self.id}"

    def participant(self, user_id: str) -> ChatParticipant | None:
        """The participant ``user_id``, or None if they are not one."""
        return next((p for p in self.participants if p.user_id == user_id), None)


@attrs.frozen
class ChatMessage:
    """A stored chat message.

    ``sender_role`` says what kind of sender wrote it: the token role of a
    client (``customer``, ``agent``...), ``system`` (the default of the HTTP
    API), ``bot``, or any identifier a plugin chooses. ``status`` is ``sent``,
    or ``delivered`` / ``read`` once every other participant's receipt passed
    it (as history reports it).
    """

    id: int
    tenant_id: str
    conversation_id: str
    sender_id: str
    sender_role: str
    client_id: str | None
    type: str
    content: dict[str, Any]
    created_at: float
    status: str = "sent"

    def to_json(self) -> dict[str, Any]:
        """The message as clients get it in ``message:new`` and history."""
        return {
            "id": self.id, "conversationId": self.conversation_id, "senderId": self.sender_id,
            "senderRole": self.sender_role, "clientId": self.client_id, "type": self.type,
            "content": self.content, "createdAt": self.created_at, "status": self.status,
        }


@attrs.frozen
class ChatHistory:
    """One page of a conversation's messages, oldest first.

    ``next_before`` (paging back) or ``next_after`` (catching up) is the
    cursor of the next page when ``has_more``.
    """

    messages: list[ChatMessage]
    has_more: bool
    next_before: int | None = None
    next_after: int | None = None


@attrs.frozen
class ChatStatusChange:
    """A participant's receipt moved their watermark: every message of the
    conversation up to ``message_id`` is now ``delivered`` to, or ``read`` by,
    ``user_id`` (what clients get as ``message:status``)."""

    tenant_id: str
    conversation_id: str
    message_id: int
    user_id: str
    status: Literal["delivered", "read"]


class ChatService(Protocol):
    """The ``chat`` plugin's service: ``app.service("chat")``."""

    async def post_message(self, tenant_id: str, conversation_id: str, *, sender_id: str,
                           content: Mapping[str, Any], type: str = "text",
                           sender_role: str = "system",
                           client_id: str | None = None) -> ChatMessage:
        """Store a message and broadcast it as ``message:new`` to
        ``conversation:{id}``, like a client's ``message:send``; return it as
        stored (with its id, in the history like any other).

        The sender need not be a participant or a connected user: a bot, the
        system, a customer writing through WhatsApp. ``type`` and ``content``
        are validated as for clients (``invalid_payload`` naming e.g.
        ``content.text``). With a ``client_id``, posting again returns the
        message stored the first time and broadcasts nothing. Raises
        ``not_found`` for a conversation that does not exist.
        """
        ...

    async def get_conversation(self, tenant_id: str,
                               conversation_id: str) -> ChatConversation | None:
        """The conversation with its participants, or None if there is none."""
        ...

    async def create_conversation(
            self, tenant_id: str, conversation_id: str | None = None, *,
            title: str | None = None,
            participants: Iterable[ChatParticipant] = ()) -> ChatConversation:
        """Create a conversation (a random id when none is given); raises
        ``conflict`` if it exists already."""
        ...

    async def get_or_create_conversation(
            self, tenant_id: str, conversation_id: str, *, title: str | None = None,
            participants: Iterable[ChatParticipant] = ()) -> tuple[ChatConversation, bool]:
        """The conversation, created with ``title`` and ``participants`` if it
        does not exist yet (an existing one is returned as it is), and whether
        it was created. Safe against a concurrent creation."""
        ...

    async def create_conversations(
            self, conversations: Sequence[ChatConversation]) -> list[bool]:
        """Create many conversations (of any tenants, each with its ``id``,
        ``title`` and ``participants``) in one transaction, for a plugin that
        makes many at once; an existing one is left as it is. Returns, for
        each, whether it was created. Bad values are refused as for
        :meth:`create_conversation`, naming e.g. ``conversations.3.id``, and
        then none is created."""
        ...

    async def create_conversations_with(
            self, conversations: Sequence[ChatConversation],
            write: Callable[[sqlalchemy.Connection], T], *,
            serialize_on: list[LockKey] | None = None) -> tuple[list[bool], T]:
        """:meth:`create_conversations`, then ``write(conn)`` in the same
        transaction of the application's store (``app.store``): the
        conversations and what ``write`` stores take effect together or not
        at all, for one commit. For a plugin that stores a record of its own
        with each conversation (the desk's batch of new tickets). Returns what
        :meth:`create_conversations` returns, and what ``write`` returned; an
        exception from ``write`` rolls both back and is raised as it is.
        ``serialize_on``: keys the transaction takes first, as
        :meth:`Store.run` takes them (one round trip fewer than
        :func:`serialize_on_each` inside ``write``)."""
        ...

    async def add_participant(self, tenant_id: str, conversation_id: str, user_id: str,
                              role: str = "customer") -> ChatParticipant:
        """Add a participant; for someone already in it, change the role and
        keep their receipts. Raises ``not_found`` for an unknown conversation."""
        ...

    async def remove_participant(self, tenant_id: str, conversation_id: str,
                                 user_id: str) -> bool:
        """Remove a participant (False if they were not one). Their connected
        sessions that may no longer be in ``conversation:{id}`` leave it.
        Raises ``not_found`` for an unknown conversation."""
        ...

    async def mark_receipt(self, tenant_id: str, conversation_id: str, user_id: str,
                           message_id: int, status: Literal["delivered", "read"]
                           ) -> ChatStatusChange:
        """A participant's receipt given on their behalf (a WhatsApp contact's
        ``delivered`` or ``read`` reported by the provider), as their own
        ``message:delivered`` / ``message:read`` would: their watermark moves
        up to ``message_id`` (never back), ``message:status`` is broadcast and
        ``switchboard_chat_status_changed`` called when it moved. Returns what
        the participant has now. Raises ``not_found`` for an unknown
        conversation or message, ``invalid_payload`` for a user who is not a
        participant."""
        ...

    async def history(self, tenant_id: str, conversation_id: str, *,
                      before: int | None = None, after: int | None = None,
                      limit: int | None = None) -> ChatHistory:
        """A page of messages, oldest first, as ``message:history`` gives it:
        the newest without a cursor, older ones with ``before``, everything
        after an id with ``after``. Raises ``not_found`` for an unknown
        conversation."""
        ...


# -- notifications -----------------------------------------------------------------


@attrs.frozen
class Notification:
    """A stored notification."""

    id: int
    tenant_id: str
    user_id: str
    title: str
    message: str
    type: str
    link: str | None
    data: dict[str, Any] | None
    created_at: float
    read_at: float | None = None
    #: When a device of the user was connected to get it (None: not yet).
    delivered_at: float | None = None


class NotificationsService(Protocol):
    """The ``notifications`` plugin's service: ``app.service("notifications")``."""

    async def create(self, tenant_id: str, user_id: str, *, title: str, message: str,
                     type: str = "info", link: str | None = None,
                     data: dict[str, Any] | None = None) -> Notification:
        """Store a notification and push it as ``notification:new`` to every
        device of the user; return it as stored. Invalid values are refused
        with ``invalid_payload`` naming the argument."""
        ...

    async def unread_count(self, tenant_id: str, user_id: str) -> int:
        """How many of the user's notifications are not read."""
        ...


# -- presence ----------------------------------------------------------------------


@attrs.frozen
class PresenceInfo:
    """What presence knows of a user: ``status`` and ``devices`` connected
    now (``offline`` and 0 when none is), ``role`` while online, and when they
    were last seen (None if never)."""

    user_id: str
    status: Literal["online", "busy", "away", "offline"]
    devices: int
    last_seen: float | None
    role: str | None = None


class PresenceService(Protocol):
    """The ``presence`` plugin's service: ``app.service("presence")``."""

    def online(self, tenant_id: str) -> list[PresenceInfo]:
        """The users of the tenant with at least one device connected to this node."""
        ...

    async def presence_of(self, tenant_id: str, user_id: str) -> PresenceInfo | None:
        """One user's presence, online or not; None if they were never seen."""
        ...


# -- handover ----------------------------------------------------------------------

#: Where a handover request is in its life: waiting for an agent (``pending``),
#: served by one (``accepted``), or closed: ``cancelled`` before anyone took it,
#: ``resolved`` by its agent (or handed back to the bot), ``expired`` unanswered.
HandoverStatus = Literal["pending", "accepted", "cancelled", "resolved", "expired"]
#: How urgent a handover request is, lowest first.
HandoverPriority = Literal["low", "normal", "high", "urgent"]
#: What happened to a handover request (see :class:`HandoverChange`).
HandoverAction = Literal["requested", "accepted", "transferred", "escalated", "cancelled",
                         "resolved", "expired"]


@attrs.frozen
class HandoverRequest:
    """A request for a human agent in a conversation, as stored.

    ``queue`` is the queue it waits in (announced to ``queue:{queue}``; None:
    the tenant's agents room); ``assignee`` the agent serving it once
    ``accepted``; ``version`` grows with every change; ``escalation_level``
    counts the escalations of an unanswered request, and ``widened`` says it
    is announced to every agent of the tenant since one of them; ``due_at``
    is when it next escalates or expires (None: never). Times are UNIX
    timestamps (seconds).
    """

    id: int
    tenant_id: str
    conversation_id: str
    requested_by: str
    requester_role: str
    reason: str | None
    priority: HandoverPriority
    queue: str | None
    status: HandoverStatus
    assignee: str | None
    version: int
    escalation_level: int
    widened: bool
    created_at: float
    updated_at: float
    accepted_at: float | None = None
    closed_at: float | None = None
    due_at: float | None = None
    #: The note of the last transfer, or the reason of a cancellation or resolution.
    note: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether it is ``pending`` or ``accepted`` (a conversation has at most
        one open request)."""
        return self.status in ("pending", "accepted")

    def to_json(self) -> dict[str, Any]:
        """The request as clients get it in the ``handover:*`` events, acks and
        the HTTP API (``leadId`` and ``consultantId`` repeat ``conversationId``
        and ``assignee`` under the Next.js CRM's names, ``timestamp`` is
        ``updated_at`` in ISO 8601)."""
        return {
            "id": self.id, "conversationId": self.conversation_id,
            "leadId": self.conversation_id, "requestedBy": self.requested_by,
            "requesterRole": self.requester_role, "reason": self.reason,
            "priority": self.priority, "queue": self.queue, "status": self.status,
            "assignee": self.assignee, "consultantId": self.assignee, "version": self.version,
            "escalationLevel": self.escalation_level, "widened": self.widened,
            "createdAt": self.created_at, "updatedAt": self.updated_at,
            "acceptedAt": self.accepted_at, "closedAt": self.closed_at, "dueAt": self.due_at,
            "note": self.note,
            "timestamp": datetime.datetime.fromtimestamp(self.updated_at,
                                                         datetime.UTC).isoformat(),
        }


@attrs.frozen
class HandoverChange:
    """What ``switchboard_handover_changed`` reports: ``request`` as it is now,
    after ``action``; ``actor`` is who did it (None for the server's own
    escalation timer, or a backend that did not say), ``previous_assignee`` the
    agent who had it before a transfer; ``source`` is ``"socket"``, ``"http"``,
    ``"plugin"`` (the ``handover`` service) or ``"timer"`` (escalation, expiry)."""

    action: HandoverAction
    request: HandoverRequest
    actor: str | None
    source: Literal["socket", "http", "plugin", "timer"]
    previous_assignee: str | None = None


class HandoverService(Protocol):
    """The ``handover`` plugin's service: ``app.service("handover")``.

    Calls act for the server (as the HTTP API does): no role is checked, only
    the state of the request (``conflict`` with the current ``request`` when it
    is not in a state that allows the change). Every change is announced to
    clients as the socket events are, and reported to
    ``switchboard_handover_changed``.
    """

    async def request(self, tenant_id: str, conversation_id: str, *, requested_by: str,
                      requester_role: str = "bot", reason: str | None = None,
                      priority: HandoverPriority = "normal",
                      queue: str | None = None) -> HandoverRequest:
        """Ask for a human in an existing chat conversation: store a ``pending``
        request, announce it (``handover:new_request`` to ``queue:{queue}``,
        else the tenant's agents room) and post the system message. Raises
        ``not_found`` for an unknown conversation, ``conflict`` (with the
        current ``request``) when the conversation has an open one."""
        ...

    async def accept(self, tenant_id: str, request_id: int, agent_id: str, *,
                     agent_name: str | None = None) -> HandoverRequest:
        """Assign a ``pending`` request to ``agent_id`` (atomically: of two
        accepts at once, one wins and the other raises ``conflict``); the agent
        becomes a participant of the conversation."""
        ...

    async def transfer(self, tenant_id: str, request_id: int, *, by: str | None = None,
                       to_agent: str | None = None, to_agent_name: str | None = None,
                       to_queue: str | None = None,
                       note: str | None = None) -> HandoverRequest:
        """Hand an ``accepted`` request to another agent (it stays accepted) or
        back to a queue (it is ``pending`` again, announced to that queue);
        exactly one of ``to_agent`` and ``to_queue``."""
        ...

    async def cancel(self, tenant_id: str, request_id: int, *, by: str | None = None,
                     reason: str | None = None) -> HandoverRequest:
        """Withdraw a ``pending`` request (the customer no longer waits)."""
        ...

    async def resolve(self, tenant_id: str, request_id: int, *, by: str | None = None,
                      return_to_bot: bool = False,
                      note: str | None = None) -> HandoverRequest:
        """Close an ``accepted`` request: the agent is done, or (``return_to_bot``)
        hands the conversation back to the bot."""
        ...

    async def get(self, tenant_id: str, request_id: int) -> HandoverRequest | None:
        """One request of the tenant, or None."""
        ...

    async def open_request(self, tenant_id: str,
                           conversation_id: str) -> HandoverRequest | None:
        """The conversation's open (``pending`` or ``accepted``) request, or None."""
        ...

    async def pending(self, tenant_id: str, *, queue: str | None = None,
                      limit: int = 50) -> list[HandoverRequest]:
        """The tenant's pending requests (of one queue, when given), oldest first."""
        ...


# -- pipeline ----------------------------------------------------------------------


@attrs.frozen
class PipelineStage:
    """A stage (a column of the board) of a pipeline."""

    id: str
    name: str


@attrs.frozen
class Pipeline:
    """A tenant's sales pipeline: its stages, in board order."""

    tenant_id: str
    id: str
    name: str
    stages: tuple[PipelineStage, ...]

    @property
    def room(self) -> str:
        """The board room its lead events go to: ``pipeline:{id}``."""
        return f"pipeline:{self.id}"

    def stage(self, stage_id: str) -> PipelineStage | None:
        """The stage ``stage_id``, or None if the pipeline has none such."""
        return next((s for s in self.stages if s.id == stage_id), None)


@attrs.frozen
class Lead:
    """A lead (a card of the board).

    ``rank`` orders the leads of a stage (compared as bytes, see the pipeline
    plugin's page, docs/plugins/pipeline.md); ``version`` starts at 1 and grows with every
    change: a change given the version its client saw is refused
    ``conflict`` when the lead has changed since. ``owner_id`` is the
    consultant who owns it, ``customer_id`` the user who is the lead's own
    customer (who may join ``lead:{id}`` and writes in its conversation).
    """

    tenant_id: str
    id: str
    pipeline_id: str
    stage_id: str
    rank: str
    title: str
    contact: dict[str, Any]
    value: float | None
    owner_id: str | None
    customer_id: str | None
    tags: tuple[str, ...]
    fields: dict[str, Any]
    version: int
    created_at: float
    updated_at: float

    @property
    def room(self) -> str:
        """The lead's own room: ``lead:{id}``."""
        return f"lead:{self.id}"

    @property
    def conversation_id(self) -> str:
        """Its chat conversation, created with it: the conversation with the
        lead's id (as the ``handover`` plugin and the CRM read ``leadId``)."""
        return self.id

    def to_json(self) -> dict[str, Any]:
        """The lead as clients get it (acks, ``lead:created``, the HTTP API)."""
        return {
            "id": self.id, "pipelineId": self.pipeline_id, "stageId": self.stage_id,
            "rank": self.rank, "title": self.title, "contact": self.contact,
            "value": self.value, "ownerId": self.owner_id, "customerId": self.customer_id,
            "tags": list(self.tags), "fields": self.fields, "version": self.version,
            "conversationId": self.conversation_id, "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@attrs.frozen
class LeadPage:
    """One page of a stage's leads in board order; ``next_cursor`` (opaque)
    gives the next page, None after the last."""

    leads: list[Lead]
    next_cursor: str | None


#: What happened to a lead, as ``switchboard_pipeline_lead_changed`` reports it.
LeadAction = Literal["created", "updated", "moved", "assigned", "deleted"]


@attrs.frozen
class LeadChange:
    """A change of a lead, stored and broadcast: ``lead`` as it is now (as it
    was for ``deleted``), ``changes`` the fields that changed (their new
    values, by their client names: ``title``, ``stageId``, ``ownerId``...),
    ``actor`` the user (or ``system``, or the API key's name) who made it."""

    tenant_id: str
    action: LeadAction
    lead: Lead
    changes: dict[str, Any]
    actor: str


class PipelineService(Protocol):
    """The ``pipeline`` plugin's service: ``app.service("pipeline")``.

    Every change is stored with an entry of the lead's activity log,
    broadcast to ``pipeline:{id}`` and ``lead:{id}`` exactly as one made over
    the socket, and reported to ``switchboard_pipeline_lead_changed``.
    ``version``: the version the caller saw; a stale one is refused
    ``conflict`` (its ``lead`` is the current state); None applies the change
    to whatever is stored. ``actor`` is who the activity log names.
    """

    async def get_pipeline(self, tenant_id: str,
                           pipeline_id: str | None = None) -> Pipeline | None:
        """A pipeline (the tenant's default one with None), or None."""
        ...

    async def create_lead(self, tenant_id: str, *, title: str,
                          pipeline_id: str | None = None, stage_id: str | None = None,
                          lead_id: str | None = None, contact: Mapping[str, Any] | None = None,
                          value: float | None = None, owner_id: str | None = None,
                          customer_id: str | None = None, tags: Iterable[str] = (),
                          fields: Mapping[str, Any] | None = None,
                          actor: str = "system") -> Lead:
        """Create a lead (in the pipeline's first stage by default, at its
        end) with its chat conversation (the lead's id; the customer and the
        owner as participants). A random id when none is given; ``conflict``
        if it exists."""
        ...

    async def get_lead(self, tenant_id: str, lead_id: str) -> Lead | None:
        """The lead, or None."""
        ...

    async def update_lead(self, tenant_id: str, lead_id: str, changes: Mapping[str, Any], *,
                          version: int | None = None, actor: str = "system") -> Lead:
        """Change some of ``title``, ``contact``, ``value``, ``customerId``,
        ``tags``, ``fields`` (client names; ``invalid_payload`` naming any
        other); broadcast as ``lead:updated`` with the changed fields only."""
        ...

    async def move_lead(self, tenant_id: str, lead_id: str, stage_id: str, *,
                        after_id: str | None = None, before_id: str | None = None,
                        version: int | None = None, actor: str = "system") -> Lead:
        """Move the lead to ``stage_id`` right after ``after_id`` or before
        ``before_id`` (leads of that stage), else at the end of the stage;
        broadcast as ``lead:moved``."""
        ...

    async def assign_lead(self, tenant_id: str, lead_id: str, owner_id: str | None, *,
                          version: int | None = None, actor: str = "system") -> Lead:
        """Give the lead to a consultant (None: to nobody); broadcast as
        ``lead:assigned``."""
        ...

    async def delete_lead(self, tenant_id: str, lead_id: str, *,
                          version: int | None = None, actor: str = "system") -> Lead:
        """Delete the lead (its conversation stays); broadcast as
        ``lead:deleted``; return it as it was."""
        ...

    async def list_leads(self, tenant_id: str, pipeline_id: str, stage_id: str, *,
                         cursor: str | None = None, limit: int | None = None) -> LeadPage:
        """A page of a stage's leads in board order."""
        ...


# -- tickets (the ``desk`` plugin) -------------------------------------------------

#: The statuses of a ticket, in the order of its usual life.
TicketStatus = Literal["open", "pending", "in_progress", "resolved", "closed"]
#: What happened to a ticket, as :class:`TicketChange` reports it (and the
#: ``ticket:{kind}`` event announcing it).
TicketChangeKind = Literal["created", "updated", "assigned", "transferred", "status",
                           "closed", "reopened"]


@attrs.frozen
class Ticket:
    """A support ticket of a tenant, as stored.

    ``number`` counts the tenant's tickets from 1 (human-readable); ``id`` is
    unique across tenants and names the room ``ticket:{id}``. Every change
    adds one to ``version``: a change that names the version it was based on
    is refused ``conflict`` (with the current ticket) when another came first.
    Times are Unix seconds; the ``*_due`` times are the SLA targets (None
    without a target, or while the ticket is ``pending``).
    """

    id: str
    tenant_id: str
    number: int
    subject: str
    status: TicketStatus
    priority: str
    queue_id: str | None
    assignee_id: str | None
    customer_id: str
    channel: str
    tags: tuple[str, ...]
    conversation_id: str
    version: int
    created_at: float
    updated_at: float
    first_response_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None
    first_response_due: float | None = None
    resolution_due: float | None = None

    @property
    def room(self) -> str:
        """The ticket's room: ``ticket:{id}``."""
        return f"ticket:{self.id}"

    @property
    def is_active(self) -> bool:
        """Whether it still counts against its assignee's capacity (not resolved or closed)."""
        return self.status in ("open", "pending", "in_progress")

    def to_json(self) -> dict[str, Any]:
        """The ticket as clients and the HTTP API get it."""
        return {
            "id": self.id, "number": self.number, "subject": self.subject,
            "status": self.status, "priority": self.priority, "queueId": self.queue_id,
            "assigneeId": self.assignee_id, "customerId": self.customer_id,
            "channel": self.channel, "tags": list(self.tags),
            "conversationId": self.conversation_id, "version": self.version,
            "createdAt": self.created_at, "updatedAt": self.updated_at,
            "firstResponseAt": self.first_response_at, "resolvedAt": self.resolved_at,
            "closedAt": self.closed_at, "firstResponseDue": self.first_response_due,
            "resolutionDue": self.resolution_due,
        }


@attrs.frozen
class TicketChange:
    """A stored change of a ticket (``switchboard_ticket_changed``): what
    happened (``kind``), the ticket after it and before it (None when
    created), who did it (a user id; None for the HTTP API or the server
    itself), and the note of a transfer or a close."""

    kind: TicketChangeKind
    ticket: Ticket
    previous: Ticket | None
    by: str | None = None
    note: str | None = None
    #: Why the server made it (``auto_assign``, ``assignee_offline``), if it did.
    reason: str | None = None


@attrs.frozen
class TicketPage:
    """One page of tickets, newest first; ``next_before`` is the cursor of the
    next page (a ticket number) when there are more."""

    tickets: list[Ticket]
    next_before: int | None = None


class TicketService(Protocol):
    """The ``desk`` plugin's ticket service: ``app.service("tickets")``.

    Every change is stored, announced (``ticket:*`` events) and reported to
    ``switchboard_ticket_changed`` exactly as the same change made by an
    agent's socket event or the HTTP API. ``version``, when given, must be the
    ticket's current version, else ``conflict`` (with ``ticket``, the current
    one). Unknown tickets raise ``not_found``; bad values ``invalid_payload``.
    """

    async def create(self, tenant_id: str, *, subject: str, customer_id: str,
                     channel: str = "web", priority: str = "normal",
                     queue_id: str | None = None, assignee_id: str | None = None,
                     tags: Iterable[str] = (), by: str | None = None) -> Ticket:
        """Create a ticket (its number is the tenant's next) and its conversation
        (the customer a participant); a ticket of a queue without an assignee
        is auto-assigned."""
        ...

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        """The ticket, or None."""
        ...

    async def list(self, tenant_id: str, *, status: str | None = None,
                   queue_id: str | None = None, assignee_id: str | None = None,
                   customer_id: str | None = None, before: int | None = None,
                   limit: int = 50) -> TicketPage:
        """Tickets matching every filter given, newest first."""
        ...

    async def update(self, tenant_id: str, ticket_id: str, *, version: int | None = None,
                     by: str | None = None, subject: str | None = None,
                     priority: str | None = None, tags: Iterable[str] | None = None
                     ) -> Ticket:
        """Change the subject, priority or tags."""
        ...

    async def set_status(self, tenant_id: str, ticket_id: str, status: TicketStatus, *,
                         version: int | None = None, by: str | None = None) -> Ticket:
        """Move the ticket to ``status`` (``closed`` closes it; from ``resolved``
        or ``closed`` to an active status reopens it)."""
        ...

    async def assign(self, tenant_id: str, ticket_id: str, assignee_id: str | None, *,
                     version: int | None = None, by: str | None = None,
                     if_unassigned: bool = False) -> Ticket:
        """Give the ticket to ``assignee_id`` (None: back to its queue). With
        ``if_unassigned``, a ticket someone else holds is a ``conflict``: of
        two agents taking the same ticket at once, one wins."""
        ...

    async def transfer(self, tenant_id: str, ticket_id: str, *, queue_id: str | None = None,
                       assignee_id: str | None = None, note: str | None = None,
                       version: int | None = None, by: str | None = None) -> Ticket:
        """Move the ticket to another queue and/or agent, with a note."""
        ...

    async def close(self, tenant_id: str, ticket_id: str, *, note: str | None = None,
                    version: int | None = None, by: str | None = None) -> Ticket:
        """Close the ticket."""
        ...

    async def reopen(self, tenant_id: str, ticket_id: str, *, version: int | None = None,
                     by: str | None = None) -> Ticket:
        """Reopen a resolved or closed ticket (``open``, back to its assignee's
        or its queue's hands)."""
        ...
