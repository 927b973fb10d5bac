"""Auto-reply: a customer's message that no agent answers in time gets a bot reply.

What a user sees:

- A customer writes in a conversation (from a socket, from a WhatsApp
  webhook through ``POST /api/v1/conversations/{id}/messages``, or through
  another plugin). If no agent writes in that conversation within ``delay``
  seconds, the bot posts ``text`` into it: a stored message with an id, in
  the history like any other, broadcast as ``message:new`` with
  ``senderRole: "bot"``.
- The bot answers once per wait: the customer's further messages do not
  make it answer again until an agent has written.
- A wait survives a restart of the server: it keeps the time it had left.

Server to server: ``GET /api/v1/autoreply/<tenant>`` (API key) lists the
conversations waiting for an agent and when the bot will answer each.

Everything here goes through ``switchboard.core`` only: the ``chat`` service
and the ``switchboard_chat_message_stored`` hook, a table written with the
store's portable upsert, a background task on Trio's clock, an API-key route
and a config section whose every check names its setting.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import sqlalchemy as sa
import trio
from quart import Blueprint
from switchboard.core import (
    App,
    ChatMessage,
    ClientError,
    MessageSource,
    StoreUnavailable,
    api_key_tenant_allowed,
    documented,
    error_response,
    hookimpl,
    identifier,
    max_length,
    require_api_key,
    text,
)

log = logging.getLogger("switchboard.autoreply")
#: Seconds before trying again to post a reply the database refused.
RETRY_AFTER = 5.0

Key = tuple[str, str]  # (tenant, conversation)


def _not_blank(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


def _roles(instance: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError("must name at least one role")
    for role in value:
        identifier(instance, attribute, role)


@attrs.frozen
class AutoReplySettings:
    """``[plugins.autoreply]``."""

    #: Seconds a customer's message waits for an agent before the bot answers.
    delay: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    #: What the bot says.
    text: str = attrs.field(
        default="Thanks for your message! An agent will be with you shortly.",
        validator=[text, max_length(4096), _not_blank])
    #: The bot's user id in the conversation (its role is ``bot``).
    sender_id: str = attrs.field(default="autoreply", validator=identifier)
    #: Roles of the senders whose messages wait for an answer.
    customer_roles: list[str] = attrs.field(factory=lambda: ["customer"], validator=_roles)


@attrs.define
class _Wait:
    """A conversation waiting for an agent, as the timer task sees it."""

    message_id: int
    #: When the bot answers, on Trio's clock.
    deadline: float


class AutoReplyPlugin:
    app: App
    settings: AutoReplySettings

    def __init__(self) -> None:
        self.table: sa.Table | None = None
        self._waits: dict[Key, _Wait] = {}
        self._changed = trio.Event()

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return AutoReplySettings

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        self.table = sa.Table(
            "autoreply_waits", metadata,
            sa.Column("tenant_id", sa.String(200), primary_key=True),
            sa.Column("conversation_id", sa.String(200), primary_key=True),
            #: The first customer message of the wait.
            sa.Column("message_id", sa.BigInteger, nullable=False),
            #: When it was stored (wall clock, so that a restart keeps the time left).
            sa.Column("since", sa.Float, nullable=False),
            #: The bot has answered: no answer again until an agent writes.
            sa.Column("replied", sa.Boolean, nullable=False, default=False),
        )

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("autoreply", __name__)

        @bp.get("/api/v1/autoreply/<tenant>")
        @documented("The tenant's conversations waiting for an agent after the bot's "
                    "answer", responses={200: "`{tenant, waiting}`",
                                         403: "the key may not use this tenant"})
        @require_api_key
        async def waiting(tenant: str) -> Any:
            if not api_key_tenant_allowed(tenant):
                return error_response(403, "forbidden", "API key not valid for this tenant")
            return {"tenant": tenant, "waiting": await self.waiting(tenant)}

        return bp

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        app.service("chat")  # fails the start-up, naming it, without the chat plugin

    @hookimpl
    def switchboard_background_tasks(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.answer_when_due]

    # -- what happens in chat --------------------------------------------------

    @hookimpl
    async def switchboard_chat_message_stored(self, message: ChatMessage,
                                              source: MessageSource) -> None:
        key = (message.tenant_id, message.conversation_id)
        if message.sender_role in self.settings.customer_roles:
            await self._customer_wrote(key, message)
        elif self.app.is_agent(message.sender_role):
            await self._agent_wrote(key)

    async def _customer_wrote(self, key: Key, message: ChatMessage) -> None:
        assert self.table is not None
        # the first message of a wait stays: a wait already there (or already
        # answered by the bot) is kept as it is
        inserted = await self.app.store.execute(self.app.store.upsert(
            self.table, {"tenant_id": key[0], "conversation_id": key[1],
                         "message_id": message.id, "since": message.created_at,
                         "replied": False},
            key=["tenant_id", "conversation_id"], update=[]))
        if inserted:
            left = self.settings.delay - max(0.0, time.time() - message.created_at)
            self._track(key, message.id, trio.current_time() + left)

    async def _agent_wrote(self, key: Key) -> None:
        assert self.table is not None
        t = self.table
        await self.app.store.execute(t.delete().where(
            t.c.tenant_id == key[0], t.c.conversation_id == key[1]))
        if self._waits.pop(key, None) is not None:
            self._changed.set()

    def _track(self, key: Key, message_id: int, deadline: float) -> None:
        self._waits[key] = _Wait(message_id, deadline)
        self._changed.set()

    # -- the timer ---------------------------------------------------------------

    async def answer_when_due(self) -> None:
        """Answer each wait ``delay`` seconds after it began (on Trio's clock)."""
        await self._load_waits()
        while True:
            deadline = min((w.deadline for w in self._waits.values()), default=math.inf)
            with trio.move_on_at(deadline):
                await self._changed.wait()
                self._changed = trio.Event()
            now = trio.current_time()
            for key, wait in sorted(self._waits.items(), key=lambda kw: kw[1].deadline):
                if wait.deadline <= now:
                    await self._answer(key, wait)

    async def _load_waits(self) -> None:
        """Waits left unanswered by a previous run keep the time they had left."""
        assert self.table is not None
        t = self.table
        rows = await self.app.store.fetch_all(sa.select(t).where(t.c.replied.is_(False)))
        now, wall = trio.current_time(), time.time()
        for row in rows:
            left = max(0.0, self.settings.delay - (wall - row["since"]))
            self._waits.setdefault((row["tenant_id"], row["conversation_id"]),
                                   _Wait(int(row["message_id"]), now + left))

    async def _answer(self, key: Key, wait: _Wait) -> None:
        assert self.table is not None
        tenant, conversation = key
        try:
            # the client id makes the reply idempotent: a retry, or a second
            # node answering the same wait, stores it once
            await self.app.service("chat").post_message(
                tenant, conversation, sender_id=self.settings.sender_id, sender_role="bot",
                content={"text": self.settings.text}, client_id=f"autoreply:{wait.message_id}")
            t = self.table
            await self.app.store.execute(t.update().where(
                t.c.tenant_id == tenant, t.c.conversation_id == conversation,
                t.c.message_id == wait.message_id).values(replied=True))
        except StoreUnavailable as exc:
            log.warning("auto-reply in %s of %s not posted (%s); trying again in %g s",
                        conversation, tenant, exc, RETRY_AFTER)
            wait.deadline = trio.current_time() + RETRY_AFTER
            return
        except ClientError as exc:  # the conversation is gone or refuses the reply
            log.warning("auto-reply in %s of %s refused: %s", conversation, tenant, exc)
        if self._waits.get(key) is wait:
            del self._waits[key]

    # -- the route -----------------------------------------------------------------

    async def waiting(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's conversations waiting for an agent, oldest first."""
        assert self.table is not None
        t = self.table
        rows = await self.app.store.fetch_all(
            sa.select(t).where(t.c.tenant_id == tenant, t.c.replied.is_(False))
            .order_by(t.c.since))
        return [{"conversationId": r["conversation_id"], "messageId": r["message_id"],
                 "since": r["since"], "replyAt": r["since"] + self.settings.delay}
                for r in rows]

