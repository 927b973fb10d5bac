"""What the handover plugin accepts: its settings, the payloads of its events
and HTTP bodies, and the checks of ids."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs.validators import ge, gt, optional
from switchboard.core import (
    ClientError,
    check_identifier,
    identifier,
    is_room_name,
    max_length,
    row_id,
    text,
)

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["pending", "accepted", "cancelled", "resolved", "expired"]
#: Priorities from the lowest; an escalation raises a request one step.
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
OPEN: tuple[Status, ...] = ("pending", "accepted")
QUEUE_PREFIX = "queue:"
CONVERSATION_PREFIX = "conversation:"
MAX_TEXT = 1000
MAX_PAGE = 100


def _problem(value: object, prefix: str) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    problem = check_identifier(value)
    if problem is None and not is_room_name(prefix + value):
        problem = "must be letters, digits and _.:@+-"
    return problem


def _conversation_id(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if (problem := _problem(value, CONVERSATION_PREFIX)) is not None:
        raise ValueError(problem, attribute)


def _queue_id(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if (problem := _problem(value, QUEUE_PREFIX)) is not None:
        raise ValueError(problem, attribute)


def check_argument(value: object, field: str, *, room_prefix: str | None = None,
                   optional: bool = False) -> str | None:
    """``value`` as an identifier (one that makes a room name after
    ``room_prefix``), or ``invalid_payload`` naming ``field``: for arguments
    of the service."""
    if value is None and optional:
        return None
    problem = (_problem(value, room_prefix) if room_prefix is not None
               else check_identifier(value) if isinstance(value, str) else "must be a string")
    if problem is not None:
        raise ClientError("invalid_payload", f"{field}: {problem}", field=field)
    assert isinstance(value, str)
    return value


def check_text(value: object, field: str) -> str | None:
    """A free text (reason, note, name): None, or 1 to 1,000 characters
    without NUL; else ``invalid_payload`` naming ``field``."""
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value or not 0 < len(value) <= MAX_TEXT:
        raise ClientError("invalid_payload",
                          f"{field}: 1 to {MAX_TEXT} characters without NUL", field=field)
    return value


def check_priority(value: object, field: str = "priority") -> Priority:
    for priority in PRIORITIES:
        if value == priority:
            return priority
    raise ClientError("invalid_payload", f"{field}: must be one of {', '.join(PRIORITIES)}",
                      field=field)


def pick_conversation(conversation_id: str | None, lead_id: str | None) -> str | None:
    """The conversation a payload names, by ``conversationId`` or the Next.js
    CRM's ``leadId`` (a lead's chat is the conversation with its id)."""
    if conversation_id is not None and lead_id is not None and conversation_id != lead_id:
        raise ClientError("invalid_payload",
                          "leadId: names another conversation than conversationId",
                          field="leadId")
    return conversation_id if conversation_id is not None else lead_id



@attrs.frozen
class HandoverSettings:
    #: Seconds a pending request waits before each escalation (0: never escalates).
    escalate_after: float = attrs.field(default=120.0, validator=ge(0.0))
    #: Escalations of one request, at most.
    max_escalations: int = attrs.field(default=3, validator=ge(0))
    #: At this escalation a request of a queue is announced to every agent of
    #: the tenant (0: it stays with its queue).
    widen_at: int = attrs.field(default=2, validator=ge(0))
    #: Each escalation raises the priority one step (up to urgent).
    raise_priority: bool = True
    #: Seconds after which a request still pending expires (0: never).
    expire_after: float = attrs.field(default=0.0, validator=ge(0.0))
    #: Seconds between two looks for requests other nodes made due.
    poll_interval: float = attrs.field(default=30.0, validator=gt(0.0))
    #: Roles that may accept for another agent, and transfer or resolve a
    #: request they do not hold (agents always act for themselves).
    assign_roles: list[str] = attrs.Factory(lambda: ["supervisor", "admin"])
    #: Sender id of the system messages posted in the conversation.
    system_sender: str = attrs.field(default="handover", validator=identifier)
    #: System messages the customer sees ("" posts none); {agent} is the
    #: agent's name (or id), {to} who a conversation is transferred to.
    message_requested: str = "An agent will be with you shortly."
    message_accepted: str = "{agent} joined the conversation."
    message_transferred: str = "{agent} transferred the conversation to {to}."
    message_resolved: str = "{agent} left the conversation."
    message_returned: str = "You are back with our virtual assistant."
    message_expired: str = "No agent is available right now; we will get back to you."


# -- payloads of events ----------------------------------------------------------------


@attrs.frozen
class RequestHandover:
    conversationId: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    leadId: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    reason: str | None = attrs.field(default=None, validator=optional([text,
                                                                       max_length(MAX_TEXT)]))
    priority: Priority = "normal"
    queue: str | None = attrs.field(default=None, validator=optional(_queue_id))


@attrs.frozen
class HandoverRef:
    """Which request: ``requestId``, or the open one of a conversation."""

    requestId: int | None = attrs.field(default=None, validator=optional(row_id))
    conversationId: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    leadId: str | None = attrs.field(default=None, validator=optional(_conversation_id))

    def ref(self) -> int | str:
        conversation = pick_conversation(self.conversationId, self.leadId)
        if self.requestId is not None:
            return self.requestId
        if conversation is None:
            raise ClientError("invalid_payload",
                              "requestId: give requestId, conversationId or leadId",
                              field="requestId")
        return conversation


@attrs.frozen
class AcceptHandover(HandoverRef):
    consultantId: str | None = attrs.field(default=None, validator=optional(identifier))
    agentId: str | None = attrs.field(default=None, validator=optional(identifier))
    agentName: str | None = attrs.field(default=None, validator=optional(
        [text, max_length(MAX_TEXT)]))


@attrs.frozen
class TransferHandover(HandoverRef):
    toAgentId: str | None = attrs.field(default=None, validator=optional(identifier))
    toAgentName: str | None = attrs.field(default=None, validator=optional(
        [text, max_length(MAX_TEXT)]))
    toQueue: str | None = attrs.field(default=None, validator=optional(_queue_id))
    note: str | None = attrs.field(default=None, validator=optional([text,
                                                                     max_length(MAX_TEXT)]))


@attrs.frozen
class CancelHandover(HandoverRef):
    reason: str | None = attrs.field(default=None, validator=optional([text,
                                                                       max_length(MAX_TEXT)]))


@attrs.frozen
class ResolveHandover(HandoverRef):
    returnToBot: bool = False
    note: str | None = attrs.field(default=None, validator=optional([text,
                                                                     max_length(MAX_TEXT)]))


@attrs.frozen
class ListHandovers:
    status: Status | None = "pending"
    queue: str | None = attrs.field(default=None, validator=optional(_queue_id))
    conversationId: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    assignee: str | None = attrs.field(default=None, validator=optional(identifier))
    priority: Priority | None = None
    after: int | None = attrs.field(default=None, validator=optional(row_id))
    limit: int = attrs.field(default=50, validator=[ge(1), attrs.validators.le(MAX_PAGE)])


# -- bodies of HTTP requests --------------------------------------------------------------


@attrs.frozen
class CreateBody:
    requestedBy: str = attrs.field(validator=identifier)
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    conversationId: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    leadId: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    requesterRole: str = attrs.field(default="bot", validator=identifier)
    reason: str | None = attrs.field(default=None, validator=optional([text,
                                                                       max_length(MAX_TEXT)]))
    priority: Priority = "normal"
    queue: str | None = attrs.field(default=None, validator=optional(_queue_id))


@attrs.frozen
class AcceptBody:
    agentId: str = attrs.field(validator=identifier)
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    agentName: str | None = attrs.field(default=None, validator=optional(
        [text, max_length(MAX_TEXT)]))


@attrs.frozen
class TransferBody:
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    by: str | None = attrs.field(default=None, validator=optional(identifier))
    toAgentId: str | None = attrs.field(default=None, validator=optional(identifier))
    toAgentName: str | None = attrs.field(default=None, validator=optional(
        [text, max_length(MAX_TEXT)]))
    toQueue: str | None = attrs.field(default=None, validator=optional(_queue_id))
    note: str | None = attrs.field(default=None, validator=optional([text,
                                                                     max_length(MAX_TEXT)]))


@attrs.frozen
class CancelBody:
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    by: str | None = attrs.field(default=None, validator=optional(identifier))
    reason: str | None = attrs.field(default=None, validator=optional([text,
                                                                       max_length(MAX_TEXT)]))


@attrs.frozen
class ResolveBody:
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    by: str | None = attrs.field(default=None, validator=optional(identifier))
    returnToBot: bool = False
    note: str | None = attrs.field(default=None, validator=optional([text,
                                                                     max_length(MAX_TEXT)]))
