"""What the chat plugin accepts: its settings, the payloads of its events and
HTTP bodies, and the checks of message contents and ids."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs.validators import optional
from switchboard.core import (
    MAX_ROW_ID,
    ClientError,
    check_identifier,
    identifier,
    is_room_name,
    max_length,
    row_id,
    structure_payload,
    text,
    unstructure,
)

MessageType = Literal["text", "image", "video", "audio", "document"]
ROOM_PREFIX = "conversation:"
MAX_TITLE_LENGTH = 500
MAX_URL_LENGTH = 2048
MAX_FILE_NAME_LENGTH = 255
MAX_MIME_TYPE_LENGTH = 255


def conversation_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a conversation id: an identifier that also
    makes a room name (``conversation:{id}``); None if nothing."""
    problem = check_identifier(value)
    if problem is None and not is_room_name(ROOM_PREFIX + value):
        problem = "must be letters, digits and _.:@+-"
    return problem


def _conversation_id(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if (problem := conversation_id_problem(value)) is not None:
        raise ValueError(problem, attribute)


def check_argument(value: object, field: str, *, conversation: bool = False) -> str:
    """``value`` as an identifier (a conversation id with ``conversation``), or
    ``invalid_payload`` naming ``field``: for arguments of the service."""
    if not isinstance(value, str):
        raise ClientError("invalid_payload", f"{field}: must be a string", field=field)
    problem = conversation_id_problem(value) if conversation else check_identifier(value)
    if problem is not None:
        raise ClientError("invalid_payload", f"{field}: {problem}", field=field)
    return value


@attrs.frozen
class ChatSettings:
    #: Messages written in one transaction, at most.
    max_batch: int = attrs.field(default=500, validator=attrs.validators.ge(1))
    #: Seconds the writer waits after a first message for more to write with it.
    batch_linger: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    #: Default and largest page of history.
    history_page: int = attrs.field(default=50, validator=attrs.validators.ge(1))
    history_max: int = attrs.field(default=200, validator=attrs.validators.ge(1))
    max_text_length: int = attrs.field(default=4096, validator=attrs.validators.ge(1))
    #: Conversations whose participants are kept in memory.
    cache_size: int = attrs.field(default=10_000, validator=attrs.validators.ge(0))
    #: A join of ``conversation:{id}`` for an id this plugin does not know:
    #: ``not_found``, or ``defer`` to the other join policies (a join proxy,
    #: when the deployment's conversations live in its own backend).
    unknown_conversations: Literal["not_found", "defer"] = "not_found"


@attrs.frozen
class TextContent:
    text: str


@attrs.frozen
class MediaContent:
    url: str
    caption: str | None = None
    mimeType: str | None = None
    fileName: str | None = None
    size: int | None = None


@attrs.frozen
class DocumentContent:
    url: str
    fileName: str
    caption: str | None = None
    mimeType: str | None = None
    size: int | None = None


CONTENT: dict[str, type[TextContent | MediaContent | DocumentContent]] = {
    "text": TextContent,
    "image": MediaContent,
    "video": MediaContent,
    "audio": MediaContent,
    "document": DocumentContent,
}


def check_content(kind: object, content: object, max_text_length: int) -> dict[str, Any]:
    """The content of a message of type ``kind`` as stored, or ``invalid_payload``
    naming the field (``type``, ``content.url``...)."""
    if not isinstance(kind, str) or kind not in CONTENT:
        raise ClientError("invalid_payload",
                          f"type: must be one of {', '.join(CONTENT)}", field="type")
    value = structure_payload(content, CONTENT[kind], "content")
    if isinstance(value, TextContent):
        if not value.text.strip():
            raise ClientError("invalid_payload", "content.text: must not be empty",
                              field="content.text")
        if len(value.text) > max_text_length:
            raise ClientError("invalid_payload", f"content.text: longer than {max_text_length}",
                              field="content.text")
    else:
        if not value.url.startswith(("https://", "http://")):
            raise ClientError("invalid_payload", "content.url: must be an http(s) URL",
                              field="content.url")
        limits = {"url": MAX_URL_LENGTH, "caption": max_text_length,
                  "fileName": MAX_FILE_NAME_LENGTH, "mimeType": MAX_MIME_TYPE_LENGTH}
        for name, limit in limits.items():
            given = getattr(value, name)
            if given is not None and not 0 < len(given) <= limit:
                raise ClientError("invalid_payload",
                                  f"content.{name}: must be 1 to {limit} characters",
                                  field=f"content.{name}")
        if value.size is not None and not 0 <= value.size <= MAX_ROW_ID:
            raise ClientError("invalid_payload", "content.size: must not be negative",
                              field="content.size")
        family = kind if kind != "document" else None
        if family and value.mimeType and not value.mimeType.startswith(family + "/"):
            raise ClientError("invalid_payload",
                              f"content.mimeType: must be {family}/* for {kind}",
                              field="content.mimeType")
    stored: dict[str, Any] = unstructure(value)
    return {k: v for k, v in stored.items() if v is not None}


# -- payloads of events ----------------------------------------------------------------


@attrs.frozen
class ConversationRef:
    conversationId: str = attrs.field(validator=_conversation_id)


@attrs.frozen
class SendMessage:
    conversationId: str = attrs.field(validator=_conversation_id)
    content: dict[str, Any] = attrs.field()
    type: MessageType = "text"
    clientId: str | None = attrs.field(default=None, validator=optional(identifier))


@attrs.frozen
class HistoryRequest:
    conversationId: str = attrs.field(validator=_conversation_id)
    before: int | None = attrs.field(default=None, validator=optional(row_id))
    after: int | None = attrs.field(default=None, validator=optional(row_id))
    limit: int | None = None


@attrs.frozen
class Receipt:
    conversationId: str = attrs.field(validator=_conversation_id)
    messageId: int = attrs.field(validator=row_id)


# -- bodies of HTTP requests --------------------------------------------------------------


@attrs.frozen
class Participant:
    userId: str = attrs.field(validator=identifier)
    role: str = attrs.field(default="customer", validator=identifier)


@attrs.frozen
class CreateConversation:
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    id: str | None = attrs.field(default=None, validator=optional(_conversation_id))
    title: str | None = attrs.field(default=None, validator=optional(
        [text, max_length(MAX_TITLE_LENGTH)]))
    participants: list[Participant] = attrs.Factory(list)


@attrs.frozen
class AddParticipant:
    userId: str = attrs.field(validator=identifier)
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    role: str = attrs.field(default="customer", validator=identifier)


@attrs.frozen
class PostMessage:
    senderId: str = attrs.field(validator=identifier)
    content: dict[str, Any] = attrs.field()
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    type: MessageType = "text"
    senderRole: str = attrs.field(default="system", validator=identifier)
    clientId: str | None = attrs.field(default=None, validator=optional(identifier))
