"""The chat engine: who may see a conversation, the batched writer, receipts,
history, and the service other plugins get with ``app.service("chat")``.

The socket events (``events.py``) and the HTTP routes (``http.py``) are thin
layers over this object, so a message stored from a socket, from HTTP or by
another plugin goes the same way: validated, written in a batch, broadcast as
``message:new``, and reported to ``switchboard_chat_message_stored``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from switchboard.core import (
    MAX_ROW_ID,
    Announcement,
    App,
    Batcher,
    BrokerUnavailable,
    ChatConversation,
    ChatHistory,
    ChatMessage,
    ChatParticipant,
    ChatStatusChange,
    ClientError,
    LockKey,
    MessageSource,
    Pending,
    Publication,
    Session,
    StoreUnavailable,
)

from .payloads import (
    MAX_TITLE_LENGTH,
    ROOM_PREFIX,
    ChatSettings,
    check_argument,
    check_content,
    conversation_id_problem,
)
from .storage import ChatStorage, NewMessage, Page, Stored, wire_message

log = logging.getLogger("switchboard.chat")

T = TypeVar("T")

MESSAGE_STORED = "switchboard_chat_message_stored"
STATUS_CHANGED = "switchboard_chat_status_changed"
#: Control-channel topic: the participants of [tenant, conversation] changed.
MEMBERS_TOPIC = "chat:members"


def chat_message(tenant: str, message: Mapping[str, Any]) -> ChatMessage:
    """A message as clients get it, as the service gives it."""
    return ChatMessage(
        id=message["id"], tenant_id=tenant, conversation_id=message["conversationId"],
        sender_id=message["senderId"], sender_role=message["senderRole"],
        client_id=message["clientId"], type=message["type"], content=dict(message["content"]),
        created_at=message["createdAt"], status=message["status"])


def _with_status(message: dict[str, Any], marks: list[tuple[str, int, int]]) -> dict[str, Any]:
    others = [m for m in marks if m[0] != message["senderId"]]
    if others and all(read >= message["id"] for _, _, read in others):
        message["status"] = "read"
    elif others and all(delivered >= message["id"] for _, delivered, _ in others):
        message["status"] = "delivered"
    return message


def _not_found(conversation: str) -> ClientError:
    return ClientError("not_found", f"no conversation {conversation!r}",
                       conversationId=conversation)


class Chat:
    """The chat plugin at work; an implementation of
    :class:`switchboard.core.ChatService`."""

    app: App
    settings: ChatSettings

    def __init__(self, storage: ChatStorage) -> None:
        self.storage = storage
        #: (tenant, conversation) -> participants (user id -> role); only existing ones.
        self._members: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
        #: Changes of participants so far (see forget).
        self._changes = 0
        self._writer: Batcher[NewMessage, Stored] | None = None
        self._report_stored = False
        self._report_status = False

    def start(self, app: App, settings: ChatSettings) -> Batcher[NewMessage, Stored]:
        """Bind to the running server; return the writer, for the plugin to run."""
        self.app = app
        self.settings = settings
        self.storage.store = app.store
        app.on_announcement(MEMBERS_TOPIC, self._dropped_elsewhere)
        # A batch the database refused (not one it could not take) is written
        # again message by message: a bad message fails alone, not its neighbours.
        self._writer = Batcher(self._write_batch, max_batch=self.settings.max_batch,
                               linger=self.settings.batch_linger,
                               retry_alone=lambda exc: not isinstance(exc, StoreUnavailable))
        # nothing is prepared for hooks that no plugin implements
        self._report_stored = app.implements(MESSAGE_STORED)
        self._report_status = app.implements(STATUS_CHANGED)
        return self._writer

    def _running(self) -> Batcher[NewMessage, Stored]:
        if self._writer is None:
            raise RuntimeError("the chat service is used before the chat plugin started: "
                               "call it from events, routes, hooks or background tasks")
        return self._writer

    # -- who may see a conversation --------------------------------------------------

    async def members(self, tenant: str, conversation: str) -> dict[str, str] | None:
        """user id -> role of a conversation's participants; None if it does not exist."""
        if conversation_id_problem(conversation) is not None:
            return None  # no such id can have been created
        key = (tenant, conversation)
        cached = self._members.get(key)
        if cached is not None:
            self._members.move_to_end(key)
            return cached
        changes = self._changes
        found = await self.storage.conversation(tenant, conversation)
        # A change committed while this load ran may be missing from what it read:
        # then its answer serves this caller but is not kept for the others.
        if found is not None and changes == self._changes:
            self._remember(key, found.members)
        return None if found is None else found.members

    def _remember(self, key: tuple[str, str], members: dict[str, str]) -> None:
        self._members[key] = members
        while len(self._members) > self.settings.cache_size:
            self._members.popitem(last=False)

    def forget(self, tenant: str, conversation: str) -> None:
        """After a change of participants: drop the cached ones, and keep loads
        that started before the change from caching what they read; the other
        nodes of a cluster are told to do the same (``chat:members``)."""
        self._drop(tenant, conversation)
        self.app.nursery.start_soon(self._tell_other_nodes, tenant, conversation)

    def _drop(self, tenant: str, conversation: str) -> None:
        self._changes += 1
        self._members.pop((tenant, conversation), None)

    async def _tell_other_nodes(self, tenant: str, conversation: str) -> None:
        try:
            await self.app.announce(MEMBERS_TOPIC, [tenant, conversation])
        except BrokerUnavailable:  # (each node's cache is bounded; its entries age out)
            log.warning("participants of %s/%s changed: other nodes not told (the "
                        "broker is unreachable)", tenant, conversation)

    def _dropped_elsewhere(self, announcement: Announcement) -> None:
        data = announcement.data
        if announcement.node != self.app.node_id and isinstance(data, list) and len(data) == 2:
            self._drop(str(data[0]), str(data[1]))

    async def check_access(self, session: Session, conversation: str) -> dict[str, str]:
        """The participants, if ``session`` may see the conversation: ``not_found``
        for an unknown (or another tenant's) id, ``forbidden`` for a customer
        who is not a participant."""
        members = await self.members(session.tenant_id, conversation)
        if members is None:
            raise _not_found(conversation)
        if session.user_id not in members and not self.app.is_agent(session):
            raise ClientError("forbidden", "you are not a participant of this conversation",
                              conversationId=conversation)
        return members

    async def _existing(self, tenant: str, conversation: str) -> dict[str, str]:
        members = await self.members(tenant, conversation)
        if members is None:
            raise _not_found(conversation)
        return members

    # -- storing messages ----------------------------------------------------------

    def enqueue(self, message: NewMessage) -> Pending[NewMessage, Stored]:
        """Queue a message for the next batch (the socket's fast path)."""
        return self._running().enqueue(message)

    async def store(self, message: NewMessage) -> Stored:
        """Store (batched) and broadcast ``message:new`` unless it was a resend."""
        return await self._running().submit(message)

    async def _write_batch(self, batch: Sequence[NewMessage]) -> list[Stored]:
        """Write a batch in one transaction, then broadcast the new messages in
        the order of their ids (the batch's order), before anyone is acknowledged;
        then queue the ``switchboard_chat_message_stored`` hook of each."""
        results = await self.storage.write(batch)
        created = [(message, stored) for message, stored in zip(batch, results, strict=True)
                   if stored.created]
        if not created:
            return results
        try:
            # one call for the batch (one round trip on a Redis broker)
            await self.app.hub.publish_many([
                Publication(message.tenant_id, ROOM_PREFIX + message.conversation_id,
                            "message:new", stored.message, message.exclude)
                for message, stored in created])
        except Exception:  # stored is stored: the batch must not be written again
            log.exception("broadcasting messages %s to %s failed",
                          created[0][1].message["id"], created[-1][1].message["id"])
        if self._report_stored:
            for message, stored in created:
                self.app.notify_soon(MESSAGE_STORED,
                                     message=chat_message(message.tenant_id, stored.message),
                                     source=message.source)
        return results

    async def post(self, tenant: str, conversation: str, *, sender_id: str, sender_role: str,
                   type: object, content: object, client_id: str | None,
                   source: MessageSource) -> Stored:
        """Validate and store a message of a sender who is not a session."""
        await self._existing(tenant, conversation)
        return await self.store(NewMessage(
            tenant, conversation, sender_id, sender_role, client_id, str(type),
            check_content(type, content, self.settings.max_text_length), time.time(),
            source=source))

    # -- receipts and history ---------------------------------------------------------

    async def receipt(self, session: Session, conversation: str, message_id: int,
                      status: Literal["delivered", "read"]) -> dict[str, Any]:
        members = await self.check_access(session, conversation)
        if session.user_id not in members:
            raise ClientError("forbidden", "only participants send receipts")
        return await self._receipt(session.tenant_id, conversation, session.user_id,
                                   message_id, status)

    async def _receipt(self, tenant: str, conversation: str, user: str, message_id: int,
                       status: Literal["delivered", "read"]) -> dict[str, Any]:
        marks = await self.storage.mark(tenant, conversation, user, message_id, status)
        if marks is None:
            raise ClientError("not_found", f"no message {message_id} in this conversation",
                              field="messageId")
        read_id, moved = marks
        # what this participant has now, not what this (possibly late) receipt said
        current: Literal["delivered", "read"] = "read" if read_id >= message_id else "delivered"
        event = {"conversationId": conversation, "messageId": message_id, "userId": user,
                 "status": current}
        if moved:
            await self.app.publish(tenant, ROOM_PREFIX + conversation, "message:status", event)
            if self._report_status:
                self.app.notify_soon(STATUS_CHANGED, change=ChatStatusChange(
                    tenant, conversation, message_id, user, current))
        return event

    async def page(self, tenant: str, conversation: str, *, before: int | None = None,
                   after: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page of history as clients get it, oldest first. ``after`` pages
        forward from an id (catching up); otherwise pages backward from
        ``before`` (or the newest)."""
        if before is not None and after is not None:
            raise ClientError("invalid_payload", "after: give before or after, not both",
                              field="after")
        size = min(self.settings.history_page if limit is None else limit,
                   self.settings.history_max)
        if size < 1:
            raise ClientError("invalid_payload", "limit: must be positive", field="limit")
        page: Page = await self.storage.page(tenant, conversation, before=before, after=after,
                                             size=size)
        has_more = len(page.rows) > size
        rows = page.rows[:size]
        if after is None:
            rows.reverse()
        items = [_with_status(wire_message(r), page.marks) for r in rows]
        return {
            "messages": items,
            "hasMore": has_more,
            "nextBefore": items[0]["id"] if has_more and after is None and items else None,
            "nextAfter": items[-1]["id"] if has_more and after is not None and items else None,
        }

    # -- the service (switchboard.core.ChatService) -------------------------------------

    async def post_message(self, tenant_id: str, conversation_id: str, *, sender_id: str,
                           content: Mapping[str, Any], type: str = "text",
                           sender_role: str = "system",
                           client_id: str | None = None) -> ChatMessage:
        check_argument(tenant_id, "tenant_id")
        check_argument(conversation_id, "conversation_id", conversation=True)
        check_argument(sender_id, "sender_id")
        check_argument(sender_role, "sender_role")
        if client_id is not None:
            check_argument(client_id, "client_id")
        stored = await self.post(tenant_id, conversation_id, sender_id=sender_id,
                                 sender_role=sender_role, type=type,
                                 content=dict(content) if isinstance(content, Mapping)
                                 else content,
                                 client_id=client_id, source="plugin")
        return chat_message(tenant_id, stored.message)

    async def get_conversation(self, tenant_id: str,
                               conversation_id: str) -> ChatConversation | None:
        check_argument(tenant_id, "tenant_id")
        if conversation_id_problem(conversation_id) is not None:
            return None
        found = await self.storage.conversation(tenant_id, conversation_id)
        if found is None:
            return None
        return ChatConversation(tenant_id, conversation_id, found.title, tuple(
            ChatParticipant(user, role) for user, role in found.members.items()))

    async def create_conversation(
            self, tenant_id: str, conversation_id: str | None = None, *,
            title: str | None = None,
            participants: Iterable[ChatParticipant] = ()) -> ChatConversation:
        conversation, created = await self.make_conversation(tenant_id, conversation_id,
                                                             title, participants)
        if not created:
            raise ClientError("conflict", f"conversation {conversation.id!r} exists",
                              conversationId=conversation.id)
        return conversation

    async def get_or_create_conversation(
            self, tenant_id: str, conversation_id: str, *, title: str | None = None,
            participants: Iterable[ChatParticipant] = ()) -> tuple[ChatConversation, bool]:
        check_argument(conversation_id, "conversation_id", conversation=True)
        conversation, created = await self.make_conversation(tenant_id, conversation_id,
                                                             title, participants)
        if created:
            return conversation, True
        existing = await self.get_conversation(tenant_id, conversation_id)
        if existing is None:  # conversations are never deleted
            raise RuntimeError(f"conversation {conversation_id!r} vanished")
        return existing, False

    @staticmethod
    def _checked(tenant_id: str, conversation_id: str | None, title: str | None,
                 participants: Iterable[ChatParticipant], prefix: str = "") -> dict[str, str]:
        """The participants (user -> role) of a conversation to create, or
        ``invalid_payload`` naming the bad argument (after ``prefix``)."""
        check_argument(tenant_id, prefix + "tenant_id")
        if conversation_id is not None:
            check_argument(conversation_id, prefix + "conversation_id", conversation=True)
        if title is not None and (not isinstance(title, str) or "\x00" in title
                                  or len(title) > MAX_TITLE_LENGTH):
            raise ClientError("invalid_payload",
                              f"{prefix}title: at most {MAX_TITLE_LENGTH} characters, no NUL",
                              field=prefix + "title")
        members: dict[str, str] = {}
        for i, participant in enumerate(participants):
            if not isinstance(participant, ChatParticipant):
                raise ClientError("invalid_payload",
                                  f"{prefix}participants.{i}: not a ChatParticipant",
                                  field=f"{prefix}participants.{i}")
            check_argument(participant.user_id, f"{prefix}participants.{i}.user_id")
            check_argument(participant.role, f"{prefix}participants.{i}.role")
            members[participant.user_id] = participant.role
        return members

    async def create_conversations(self, conversations: Sequence[ChatConversation]
                                   ) -> list[bool]:
        if not conversations:
            return []
        created, _ = await self.create_conversations_with(conversations, lambda conn: None)
        return created

    async def create_conversations_with(self, conversations: Sequence[ChatConversation],
                                        write: Callable[[sa.Connection], T], *,
                                        serialize_on: list[LockKey] | None = None
                                        ) -> tuple[list[bool], T]:
        rows = []
        for i, conversation in enumerate(conversations):
            if not isinstance(conversation, ChatConversation):
                raise ClientError("invalid_payload",
                                  f"conversations.{i}: not a ChatConversation",
                                  field=f"conversations.{i}")
            prefix = f"conversations.{i}."
            check_argument(conversation.id, prefix + "id", conversation=True)
            members = self._checked(conversation.tenant_id, conversation.id,
                                    conversation.title, conversation.participants, prefix)
            rows.append((conversation.tenant_id, conversation.id, conversation.title,
                         members))
        created, written = await self.storage.create_many_with(rows, time.time(), write,
                                                               serialize_on=serialize_on)
        for (tenant, conversation_id, _, _), made in zip(rows, created, strict=True):
            if made:  # (no node keeps "no such conversation": nothing to tell them)
                self._drop(tenant, conversation_id)
        return created, written

    async def make_conversation(self, tenant_id: str, conversation_id: str | None,
                                title: str | None, participants: Iterable[ChatParticipant]
                                ) -> tuple[ChatConversation, bool]:
        """Create a conversation unless it exists: it as asked for, and whether
        it was created."""
        members = self._checked(tenant_id, conversation_id, title, participants)
        conversation = conversation_id or secrets.token_hex(8)
        created = await self.storage.create(tenant_id, conversation, title, members.items(),
                                            time.time())
        if created:  # (no node keeps "no such conversation": nothing to tell them)
            self._drop(tenant_id, conversation)
        return ChatConversation(tenant_id, conversation, title, tuple(
            ChatParticipant(user, role) for user, role in members.items())), created

    async def add_participant(self, tenant_id: str, conversation_id: str, user_id: str,
                              role: str = "customer") -> ChatParticipant:
        check_argument(tenant_id, "tenant_id")
        check_argument(user_id, "user_id")
        check_argument(role, "role")
        await self._existing(tenant_id, conversation_id)
        await self.storage.add_participant(tenant_id, conversation_id, user_id, role)
        self.forget(tenant_id, conversation_id)
        return ChatParticipant(user_id, role)

    async def remove_participant(self, tenant_id: str, conversation_id: str,
                                 user_id: str) -> bool:
        check_argument(tenant_id, "tenant_id")
        check_argument(user_id, "user_id")
        await self._existing(tenant_id, conversation_id)
        removed = await self.storage.remove_participant(tenant_id, conversation_id, user_id)
        self.forget(tenant_id, conversation_id)
        if removed:
            room = ROOM_PREFIX + conversation_id
            for session in list(self.app.user_sessions(tenant_id, user_id)):
                if room in session.rooms:
                    await self.app.recheck_rooms(session, [room])
        return removed

    async def mark_receipt(self, tenant_id: str, conversation_id: str, user_id: str,
                           message_id: int, status: Literal["delivered", "read"]
                           ) -> ChatStatusChange:
        check_argument(tenant_id, "tenant_id")
        check_argument(user_id, "user_id")
        if status not in ("delivered", "read"):
            raise ClientError("invalid_payload", "status: must be delivered or read",
                              field="status")
        if not isinstance(message_id, int) or isinstance(message_id, bool) \
                or not 0 <= message_id <= MAX_ROW_ID:
            raise ClientError("invalid_payload",
                              f"message_id: must be an integer from 0 to {MAX_ROW_ID}",
                              field="message_id")
        members = await self._existing(tenant_id, conversation_id)
        if user_id not in members:
            raise ClientError("invalid_payload", f"user_id: {user_id!r} is not a participant",
                              field="user_id")
        event = await self._receipt(tenant_id, conversation_id, user_id, message_id, status)
        return ChatStatusChange(tenant_id, conversation_id, message_id, user_id,
                                event["status"])

    async def history(self, tenant_id: str, conversation_id: str, *,
                      before: int | None = None, after: int | None = None,
                      limit: int | None = None) -> ChatHistory:
        check_argument(tenant_id, "tenant_id")
        for name, value in (("before", before), ("after", after), ("limit", limit)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 0 <= value <= MAX_ROW_ID):
                raise ClientError("invalid_payload",
                                  f"{name}: must be an integer from 0 to {MAX_ROW_ID}",
                                  field=name)
        await self._existing(tenant_id, conversation_id)
        page = await self.page(tenant_id, conversation_id, before=before, after=after,
                               limit=limit)
        return ChatHistory([chat_message(tenant_id, m) for m in page["messages"]],
                           page["hasMore"], page["nextBefore"], page["nextAfter"])
