"""The chat plugin's socket events: thin handlers over the :class:`Chat` engine."""

from __future__ import annotations

import time
from typing import Any

from switchboard.core import (
    ClientError,
    Deferred,
    EventSpec,
    Rate,
    Session,
    incoming,
    outgoing,
)

from .payloads import (
    ROOM_PREFIX,
    ConversationRef,
    HistoryRequest,
    Receipt,
    SendMessage,
    check_content,
)
from .service import Chat
from .storage import NewMessage, Stored


def _stored_message(stored: Stored) -> dict[str, Any]:
    return stored.message


class ChatEvents:
    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def specs(self) -> list[EventSpec]:
        return [
            incoming("conversation:join", ConversationRef, self.join,
                     doc="Join conversation:{id}; ack {success, conversationId, error?}."),
            incoming("conversation:leave", ConversationRef, self.leave,
                     doc="Leave conversation:{id}; ack {success, conversationId}."),
            incoming("message:send", SendMessage, self.send, rate=Rate(rate=20.0, burst=40.0),
                     doc="Store and broadcast a message; ack the stored message."),
            incoming("message:history", HistoryRequest, self.history,
                     doc="Ack {messages, hasMore, nextBefore}; `after` catches up."),
            incoming("message:delivered", Receipt, self.delivered,
                     doc="Mark messages up to messageId delivered to you."),
            incoming("message:read", Receipt, self.read,
                     doc="Mark messages up to messageId read by you."),
            outgoing("message:new", doc="To conversation:{id}: a stored message."),
            outgoing("message:status",
                     doc="To conversation:{id}: {conversationId, messageId, userId, status}."),
        ]

    async def join(self, session: Session, ref: ConversationRef) -> dict[str, Any]:
        try:
            await self.chat.app.join(session, ROOM_PREFIX + ref.conversationId)
        except ClientError as exc:
            return {"success": False, "conversationId": ref.conversationId,
                    "error": exc.to_dict()}
        return {"success": True, "conversationId": ref.conversationId}

    async def leave(self, session: Session, ref: ConversationRef) -> dict[str, Any]:
        await self.chat.app.leave(session, ROOM_PREFIX + ref.conversationId)
        return {"success": True, "conversationId": ref.conversationId}

    async def send(self, session: Session, request: SendMessage) -> Deferred:
        chat = self.chat
        await chat.check_access(session, request.conversationId)
        pending = chat.enqueue(NewMessage(
            session.tenant_id, request.conversationId, session.user_id, session.role,
            request.clientId, request.type,
            check_content(request.type, request.content, chat.settings.max_text_length),
            time.time(), exclude=session.id))
        # The ack waits for the batch (and leaves with its broadcast); the
        # client's next messages need not wait.
        return Deferred.of(pending, _stored_message)

    async def history(self, session: Session, request: HistoryRequest) -> dict[str, Any]:
        await self.chat.check_access(session, request.conversationId)
        return await self.chat.page(session.tenant_id, request.conversationId,
                                    before=request.before, after=request.after,
                                    limit=request.limit)

    async def delivered(self, session: Session, receipt: Receipt) -> dict[str, Any]:
        return await self.chat.receipt(session, receipt.conversationId, receipt.messageId,
                                       "delivered")

    async def read(self, session: Session, receipt: Receipt) -> dict[str, Any]:
        return await self.chat.receipt(session, receipt.conversationId, receipt.messageId,
                                       "read")
