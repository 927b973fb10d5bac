"""What the desk accepts: its settings, the payloads of its socket events and
HTTP bodies, and the checks of ticket fields."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import attrs
from attrs.validators import optional
from switchboard.core import (
    INVALID_PAYLOAD,
    ClientError,
    between,
    check_identifier,
    identifier,
    max_length,
    row_id,
    text,
)

TICKET_STATUSES = ("open", "pending", "in_progress", "resolved", "closed")
#: A queue member's capacity at most (stored in a 32-bit integer column).
MAX_CAPACITY = 100_000
#: Statuses of a ticket that still needs work (and counts against capacity).
ACTIVE = ("open", "pending", "in_progress")
AgentStatus = Literal["online", "busy", "away", "offline"]
Strategy = Literal["round_robin", "least_busy"]
StatusName = Literal["open", "pending", "in_progress", "resolved", "closed"]
MAX_SUBJECT = 500
MAX_NOTE = 2000
MAX_TAGS = 20
MAX_PAGE = 100
#: Tickets one ``POST /api/v1/tickets/bulk`` may open.
MAX_BULK = 500
QUEUE_ROOM = "queue:"
TICKET_ROOM = "ticket:"
#: The id of a ticket's chat conversation: this prefix and the ticket id.
CONVERSATION_PREFIX = "ticket-"


# -- settings ----------------------------------------------------------------


@attrs.frozen
class QueueSettings:
    """A queue (department) declared in config."""

    tenant: str
    id: str
    name: str = ""
    strategy: Strategy = "round_robin"
    members: list[str] = attrs.Factory(list)


@attrs.frozen
class SlaTarget:
    """Seconds to the first agent reply and to resolution (None: no target)."""

    first_response: float | None = None
    resolution: float | None = None


def _batch_interval(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError("batch_interval: seconds from 0 to 1")


@attrs.frozen
class DeskSettings:
    #: Priorities a ticket may have, lowest first.
    priorities: list[str] = attrs.Factory(lambda: ["low", "normal", "high", "urgent"])
    #: Active tickets an agent may hold before auto-assignment passes them by
    #: (a queue member's own ``capacity`` overrides it).
    default_capacity: int = attrs.field(default=5,
                                        validator=between(0, MAX_CAPACITY))
    #: Roles that may join every queue room of their tenant.
    supervisor_roles: list[str] = attrs.Factory(lambda: ["supervisor", "admin"])
    #: Auto-assign new and returned tickets of a queue to its online members.
    auto_assign: bool = True
    #: Seconds after an agent's last connection closed before they are offline
    #: (``agent:offline``); a reconnection within it announces nothing.
    offline_grace: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    #: Seconds an assignee may then stay offline before their active tickets
    #: go back to their queues.
    reassign_after: float = attrs.field(default=120.0, validator=attrs.validators.ge(0))
    #: Queues created (or updated) at start-up.
    queues: list[QueueSettings] = attrs.Factory(list)
    #: SLA targets per priority.
    sla: dict[str, SlaTarget] = attrs.Factory(dict)
    #: Seconds before a target that ``sla:warning`` is sent.
    sla_warning: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))
    #: A join of ``ticket:{id}`` for an id the desk does not know: ``defer`` to
    #: the other join policies (agents may join any room of their tenant, a
    #: join proxy may decide, as before the desk: a deployment whose tickets
    #: live in its own backend), or refuse it ``not_found`` (the desk owns
    #: the tenant's tickets).
    unknown_tickets: Literal["defer", "not_found"] = "defer"
    #: Seconds at least between the starts of two transactions of new tickets.
    #: Under a steady stream the tickets of that time share one transaction
    #: and go out to each agent in one write instead of one each (200 agents
    #: are 200 socket writes per batch); a ticket after a quiet moment is
    #: written at once. 0: a batch starts as soon as the one before is done.
    batch_interval: float = attrs.field(default=0.02, validator=_batch_interval)


# -- checks --------------------------------------------------------------------


def invalid(field: str, problem: str) -> ClientError:
    return ClientError(INVALID_PAYLOAD, f"{field}: {problem}", field=field)


def check_id(value: object, field: str) -> str:
    """``value`` as an identifier, or ``invalid_payload`` naming ``field``."""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if (problem := check_identifier(value)) is not None:
        raise invalid(field, problem)
    return value


def check_subject(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("subject", "must be a non-empty string")
    if len(value) > MAX_SUBJECT:
        raise invalid("subject", f"longer than {MAX_SUBJECT} characters")
    if "\x00" in value:
        raise invalid("subject", "must not contain NUL characters")
    return value


def check_note(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("note", "must be a string")
    if len(value) > MAX_NOTE:
        raise invalid("note", f"longer than {MAX_NOTE} characters")
    if "\x00" in value:
        raise invalid("note", "must not contain NUL characters")
    return value


def check_tags(values: Iterable[object]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise invalid("tags", "must be a list of strings")
    tags = tuple(dict.fromkeys(check_id(tag, "tags") for tag in values))
    if len(tags) > MAX_TAGS:
        raise invalid("tags", f"at most {MAX_TAGS} tags")
    return tags


def check_status(value: object) -> StatusName:
    if value not in TICKET_STATUSES:
        raise invalid("status", f"must be one of {', '.join(TICKET_STATUSES)}")
    return value  # type: ignore[return-value]


# -- socket payloads -------------------------------------------------------------

_id = attrs.field(validator=identifier)
_optional_id: Any = attrs.field(default=None, validator=optional(identifier))
_version: Any = attrs.field(default=None, validator=optional(row_id))
_note: Any = attrs.field(default=None, validator=optional([text, max_length(MAX_NOTE)]))

_capacity: Any = attrs.field(default=None, validator=optional(between(0, MAX_CAPACITY)))


@attrs.frozen
class TicketRef:
    ticketId: str = _id


@attrs.frozen
class CreateTicket:
    subject: str
    customerId: str = _id
    channel: str = attrs.field(default="web", validator=identifier)
    priority: str = attrs.field(default="normal", validator=identifier)
    queueId: str | None = _optional_id
    assigneeId: str | None = _optional_id
    tags: list[str] = attrs.Factory(list)


@attrs.frozen
class ListTickets:
    status: str | None = None
    queueId: str | None = _optional_id
    assigneeId: str | None = _optional_id
    customerId: str | None = _optional_id
    before: int | None = attrs.field(default=None, validator=optional(row_id))
    limit: int = 50


@attrs.frozen
class UpdateTicket:
    ticketId: str = _id
    version: int | None = _version
    subject: str | None = None
    priority: str | None = _optional_id
    tags: list[str] | None = None


@attrs.frozen
class SetStatus:
    status: str
    ticketId: str = _id
    version: int | None = _version


@attrs.frozen
class AssignTicket:
    """``userId`` absent: take the ticket yourself (refused ``conflict`` when
    someone holds it); ``null`` with ``unassign``: back to the queue."""

    ticketId: str = _id
    userId: str | None = _optional_id
    unassign: bool = False
    version: int | None = _version


@attrs.frozen
class TransferTicket:
    ticketId: str = _id
    queueId: str | None = _optional_id
    userId: str | None = _optional_id
    note: str | None = _note
    version: int | None = _version


@attrs.frozen
class CloseTicket:
    ticketId: str = _id
    note: str | None = _note
    version: int | None = _version


@attrs.frozen
class ReopenTicket:
    ticketId: str = _id
    version: int | None = _version


@attrs.frozen
class SetAgentStatus:
    status: AgentStatus


# -- HTTP bodies -------------------------------------------------------------------


@attrs.frozen
class FirstMessage:
    text: str = attrs.field(validator=[text, max_length(10_000)])
    clientId: str | None = _optional_id


@attrs.frozen
class CreateTicketBody:
    subject: str
    customerId: str = _id
    tenant: str | None = _optional_id
    channel: str = attrs.field(default="web", validator=identifier)
    priority: str = attrs.field(default="normal", validator=identifier)
    queueId: str | None = _optional_id
    assigneeId: str | None = _optional_id
    tags: list[str] = attrs.Factory(list)
    #: The customer's first message, posted into the ticket's conversation.
    message: FirstMessage | None = None


@attrs.frozen
class BulkCreateBody:
    #: Each as the body of ``POST /api/v1/tickets`` (checked one by one).
    tickets: list[dict[str, Any]] = attrs.field(validator=[
        attrs.validators.min_len(1), attrs.validators.max_len(MAX_BULK)])


@attrs.frozen
class UpdateTicketBody:
    tenant: str | None = _optional_id
    version: int | None = _version
    subject: str | None = None
    priority: str | None = _optional_id
    tags: list[str] | None = None
    status: str | None = None
    by: str | None = _optional_id


@attrs.frozen
class AssignBody:
    assigneeId: str | None = _optional_id
    tenant: str | None = _optional_id
    version: int | None = _version
    by: str | None = _optional_id


@attrs.frozen
class TransferBody:
    tenant: str | None = _optional_id
    queueId: str | None = _optional_id
    assigneeId: str | None = _optional_id
    note: str | None = _note
    version: int | None = _version
    by: str | None = _optional_id


@attrs.frozen
class CloseBody:
    tenant: str | None = _optional_id
    note: str | None = _note
    version: int | None = _version
    by: str | None = _optional_id


@attrs.frozen
class QueueMember:
    userId: str = _id
    capacity: int | None = _capacity


@attrs.frozen
class QueueBody:
    id: str = _id
    tenant: str | None = _optional_id
    name: str = attrs.field(default="", validator=[text, max_length(200)])
    strategy: Strategy = "round_robin"
    members: list[QueueMember] = attrs.Factory(list)


@attrs.frozen
class MemberBody:
    tenant: str | None = _optional_id
    capacity: int | None = _capacity
