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
    object_schema,
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


#: A stored message, as ``message:new``, the ``message:send`` ack and the history give it.
MESSAGE = object_schema("conversationId", "senderRole", "type", "content", id=int,
                        senderId=str, clientId=str, createdAt=float,
                        status={"enum": ["sent", "delivered", "read"]},
                        optional=["clientId"])
#: The answer of a join: ``success`` false with the error when refused.
JOINED = object_schema(success=bool, conversationId=str,
                       error={"$ref": "#/components/schemas/Error"}, optional=["error"])
RECEIPT = object_schema(conversationId=str, messageId=int, userId=str,
                        status={"enum": ["delivered", "read"]})


class ChatEvents:
    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def specs(self) -> list[EventSpec]:
        return [
            incoming("conversation:join", ConversationRef, self.join, ack=JOINED,
                     doc="Join conversation:{id}; ack {success, conversationId, error?}."),
            incoming("conversation:leave", ConversationRef, self.leave,
                     ack=object_schema(success=bool, conversationId=str),
                     doc="Leave conversation:{id}; ack {success, conversationId}."),
            incoming("message:send", SendMessage, self.send, rate=Rate(rate=20.0, burst=40.0),
                     ack=MESSAGE,
                     doc="Store and broadcast a message; ack the stored message."),
            incoming("message:history", HistoryRequest, self.history,
                     ack=object_schema("nextBefore", messages={"type": "array", "items": MESSAGE},
                                       hasMore=bool),
                     doc="Ack {messages, hasMore, nextBefore}; `after` catches up."),
            incoming("message:delivered", Receipt, self.delivered, ack=RECEIPT,
                     doc="Mark messages up to messageId delivered to you."),
            incoming("message:read", Receipt, self.read, ack=RECEIPT,
                     doc="Mark messages up to messageId read by you."),
            outgoing("message:new", rooms=["conversation:{conversationId}"], schema=MESSAGE,
                     doc="To conversation:{id}: a stored message."),
            outgoing("message:status", rooms=["conversation:{conversationId}"], schema=RECEIPT,
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
