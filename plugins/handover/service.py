"""The handover engine: requests for a human, the atomic accept, transfers,
the escalation timer, and the ``handover`` service other plugins get with
``app.service("handover")``.

The socket events (``events.py``) and the HTTP routes (``http.py``) are thin
layers over this object, so a change made from a socket, over HTTP or by
another plugin goes the same way: checked, stored, announced, told to the
customer as a system message of the conversation, and reported to
``switchboard_handover_changed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
import trio
from switchboard.core import (
    App,
    ChatService,
    ClientError,
    HandoverChange,
    HandoverRequest,
    Session,
    agents_room,
    user_room,
    wall_time,
)
from switchboard.core.services import HandoverAction, HandoverPriority

from .payloads import (
    CONVERSATION_PREFIX,
    MAX_PAGE,
    PRIORITIES,
    QUEUE_PREFIX,
    HandoverSettings,
    check_argument,
    check_priority,
    check_text,
)
from .storage import HandoverStorage, conflict

log = logging.getLogger("switchboard.handover")

CHANGED = "switchboard_handover_changed"
Source = Literal["socket", "http", "plugin", "timer"]
#: Pending requests escalated in one pass of the timer, at most.
DUE_BATCH = 100


@attrs.frozen
class Actor:
    """Who asks for a change: a client (checked against its role), or the
    server's side (a backend over HTTP, another plugin: only the state is
    checked)."""

    source: Source
    user: str | None = None
    session: Session | None = None

    @classmethod
    def of(cls, session: Session) -> Actor:
        return cls("socket", session.user_id, session)


def _forbidden(message: str) -> ClientError:
    return ClientError("forbidden", message)


def _fill(template: str, **names: str) -> str:
    """A message template with its ``{agent}`` and ``{to}`` filled in (plain
    replacement: a template is never a format string that could fail)."""
    for name, value in names.items():
        template = template.replace("{" + name + "}", value)
    return template


class Handover:
    """The handover plugin at work; an implementation of
    :class:`switchboard.core.HandoverService`."""

    app: App
    settings: HandoverSettings
    chat: ChatService

    def __init__(self, storage: HandoverStorage,
                 clock: Callable[[], float] | None = None) -> None:
        self.storage = storage
        self._clock = clock
        self._wake = trio.Event()
        self._report = False

    def start(self, app: App, settings: HandoverSettings) -> None:
        """Bind to the running server (the chat service is required)."""
        self.app = app
        self.settings = settings
        self.storage.store = app.store
        try:
            self.chat = app.service("chat")
        except LookupError as exc:
            raise LookupError("the handover plugin keeps its requests in chat conversations: "
                              "enable the plugin that offers the service 'chat' (or disable "
                              "[plugins.handover])") from exc
        if self._clock is None:
            # Times are stored as UNIX timestamps but move on Trio's clock, so
            # that escalations follow trio.testing.MockClock in tests.
            self._clock = wall_time
        self._report = app.implements(CHANGED)

    def now(self) -> float:
        assert self._clock is not None
        return self._clock()

    # -- rooms and announcements ----------------------------------------------------

    @staticmethod
    def announce_room(request: HandoverRequest) -> str:
        """Where a pending request is announced: its queue's room, or the
        tenant's agents room (without a queue, or once widened)."""
        if request.queue is None or request.widened:
            return agents_room(request.tenant_id)
        return QUEUE_PREFIX + request.queue

    async def _concerned(self, request: HandoverRequest, *also: str | None) -> set[str]:
        """The users a change concerns: the requester, the agents who hold (or
        held) it and the participants of the conversation."""
        users = {request.requested_by, request.assignee, *also}
        try:
            conversation = await self.chat.get_conversation(request.tenant_id,
                                                            request.conversation_id)
        except Exception:  # the change is stored: tell whom we can
            log.exception("participants of %s not found", request.conversation_id)
            conversation = None
        if conversation is not None:
            users.update(p.user_id for p in conversation.participants)
        return {u for u in users if u is not None}

    async def _tell(self, tenant: str, users: Iterable[str], event: str, data: Any,
                    actor: Actor) -> None:
        for user in sorted(users):
            await self.app.publish(tenant, user_room(user), event, data, exclude=actor.session)

    async def _say(self, request: HandoverRequest, template: str, **names: str) -> None:
        """Post a system message in the conversation (the customer sees it)."""
        if not template:
            return
        try:
            await self.chat.post_message(
                request.tenant_id, request.conversation_id,
                sender_id=self.settings.system_sender, sender_role="system",
                content={"text": _fill(template, **names)})
        except Exception:  # the change is stored and announced already
            log.exception("system message in %s not posted", request.conversation_id)

    def _reported(self, action: HandoverAction, request: HandoverRequest, actor: Actor,
                  previous: str | None = None) -> None:
        if self._report:
            self.app.notify_soon(CHANGED, change=HandoverChange(
                action, request, actor.user, actor.source, previous))

    async def _seat(self, request: HandoverRequest, agent: str) -> None:
        """Make the agent a participant and put their connections in the room."""
        try:
            await self.chat.add_participant(request.tenant_id, request.conversation_id,
                                            agent, "agent")
        except Exception:
            log.exception("agent %s not added to %s", agent, request.conversation_id)
            return
        room = CONVERSATION_PREFIX + request.conversation_id
        for session in list(self.app.user_sessions(request.tenant_id, agent)):
            try:
                await self.app.join(session, room)
            except ClientError:
                pass  # (too many rooms): the agent can join it later

    async def _unseat(self, request: HandoverRequest, agent: str | None) -> None:
        if agent is None or agent == request.requested_by:
            return
        try:
            await self.chat.remove_participant(request.tenant_id, request.conversation_id,
                                               agent)
        except Exception:
            log.exception("agent %s not removed from %s", agent, request.conversation_id)

    def _due(self, now: float, level: int, expires: float | None) -> float | None:
        """When a pending request at escalation ``level`` is next due."""
        s = self.settings
        times = [expires] if expires is not None else []
        if s.escalate_after > 0 and level < s.max_escalations:
            times.append(now + s.escalate_after)
        return min(times) if times else None

    def _may_assign(self, actor: Actor) -> bool:
        return actor.session is None or actor.session.role in self.settings.assign_roles

    def _agent_only(self, actor: Actor, what: str) -> None:
        if actor.session is not None and not self.app.is_agent(actor.session):
            raise _forbidden(f"only agents {what}")

    # -- the changes ------------------------------------------------------------------

    async def do_request(self, tenant: str, conversation: str, *, requested_by: str,
                         requester_role: str, reason: str | None, priority: HandoverPriority,
                         queue: str | None, actor: Actor) -> HandoverRequest:
        found = await self.chat.get_conversation(tenant, conversation)
        if found is None:
            raise ClientError("not_found", f"no conversation {conversation!r}",
                              conversationId=conversation)
        session = actor.session
        if session is not None and found.participant(session.user_id) is None \
                and not self.app.is_agent(session):
            raise _forbidden("you are not a participant of this conversation")
        now = self.now()
        expires = now + self.settings.expire_after if self.settings.expire_after > 0 else None
        request = await self.storage.create({
            "tenant_id": tenant, "conversation_id": conversation, "requested_by": requested_by,
            "requester_role": requester_role, "reason": reason, "priority": priority,
            "queue": queue, "status": "pending", "assignee": None, "note": None,
            "version": 1, "escalation_level": 0, "widened": False, "created_at": now,
            "updated_at": now, "expires_at": expires, "accepted_at": None,
            "closed_at": None, "due_at": self._due(now, 0, expires)})
        self._wake.set()
        await self.app.publish(tenant, self.announce_room(request), "handover:new_request",
                               request.to_json(), exclude=session)
        await self._say(request, self.settings.message_requested)
        self._reported("requested", request, actor)
        return request

    async def do_accept(self, tenant: str, ref: int | str, agent: str, *,
                        agent_name: str | None, actor: Actor) -> HandoverRequest:
        self._agent_only(actor, "accept handovers")
        if actor.user is not None and agent != actor.user and not self._may_assign(actor):
            raise _forbidden("you may accept a handover only for yourself")
        now = self.now()

        def decide(request: HandoverRequest) -> Mapping[str, Any]:
            if request.status != "pending":
                raise conflict(request)
            return {"status": "accepted", "assignee": agent, "accepted_at": now,
                    "updated_at": now, "due_at": None}

        changed = await self.storage.change(tenant, ref, decide)
        request = changed.after
        await self._seat(request, agent)
        data = request.to_json()
        await self._tell(tenant, await self._concerned(request), "handover:accepted", data,
                         actor)
        await self.app.publish(tenant, self.announce_room(changed.before), "handover:taken",
                               data, exclude=actor.session)
        await self._say(request, self.settings.message_accepted, agent=agent_name or agent)
        self._reported("accepted", request, actor)
        return request

    async def do_transfer(self, tenant: str, ref: int | str, *, to_agent: str | None,
                          to_agent_name: str | None, to_queue: str | None, note: str | None,
                          actor: Actor) -> HandoverRequest:
        self._agent_only(actor, "transfer handovers")
        if (to_agent is None) == (to_queue is None):
            raise ClientError("invalid_payload", "toAgentId: give toAgentId or toQueue",
                              field="toAgentId")
        now = self.now()
        s = self.settings

        def decide(request: HandoverRequest) -> Mapping[str, Any]:
            if request.status != "accepted":
                raise conflict(request)
            if actor.user is not None and request.assignee != actor.user \
                    and not self._may_assign(actor):
                raise _forbidden("only the agent who holds a handover transfers it")
            if to_agent is not None:
                if to_agent == request.assignee:
                    raise conflict(request, f"handover {request.id} is {to_agent}'s already")
                return {"assignee": to_agent, "note": note, "updated_at": now}
            expires = now + s.expire_after if s.expire_after > 0 else None
            return {"status": "pending", "assignee": None, "queue": to_queue, "note": note,
                    "widened": False, "escalation_level": 0, "accepted_at": None,
                    "updated_at": now, "expires_at": expires,
                    "due_at": self._due(now, 0, expires)}

        changed = await self.storage.change(tenant, ref, decide)
        request, previous = changed.after, changed.before.assignee
        await self._unseat(request, previous)
        if to_agent is not None:
            await self._seat(request, to_agent)
        else:
            self._wake.set()
        data = {**request.to_json(), "previousAssignee": previous}
        await self._tell(tenant, await self._concerned(request, previous),
                         "handover:transferred", data, actor)
        if to_queue is not None:
            await self.app.publish(tenant, self.announce_room(request), "handover:new_request",
                                   request.to_json(), exclude=actor.session)
        await self._say(request, s.message_transferred, agent=actor.user or previous or "",
                        to=to_agent_name or to_agent or to_queue or "")
        self._reported("transferred", request, actor, previous)
        return request

    async def do_cancel(self, tenant: str, ref: int | str, *, reason: str | None,
                        actor: Actor) -> HandoverRequest:
        session = actor.session
        if session is not None and not self.app.is_agent(session):
            current = await self.storage.get(tenant, ref)
            conversation = None if current is None else await self.chat.get_conversation(
                tenant, current.conversation_id)
            if current is not None and current.requested_by != session.user_id and (
                    conversation is None or conversation.participant(session.user_id) is None):
                raise _forbidden("only the requester, the conversation's participants "
                                 "and agents cancel a handover")
        now = self.now()

        def decide(request: HandoverRequest) -> Mapping[str, Any]:
            if request.status != "pending":
                raise conflict(request)
            return {"status": "cancelled", "closed_at": now, "updated_at": now,
                    "due_at": None, "note": reason}

        changed = await self.storage.change(tenant, ref, decide)
        request = changed.after
        data = request.to_json()
        await self.app.publish(tenant, self.announce_room(changed.before),
                               "handover:cancelled", data, exclude=actor.session)
        await self._tell(tenant, await self._concerned(request), "handover:cancelled", data,
                         actor)
        self._reported("cancelled", request, actor)
        return request

    async def do_resolve(self, tenant: str, ref: int | str, *, return_to_bot: bool,
                         note: str | None, actor: Actor) -> HandoverRequest:
        self._agent_only(actor, "resolve handovers")
        now = self.now()

        def decide(request: HandoverRequest) -> Mapping[str, Any]:
            if request.status != "accepted":
                raise conflict(request)
            if actor.user is not None and request.assignee != actor.user \
                    and not self._may_assign(actor):
                raise _forbidden("only the agent who holds a handover resolves it")
            return {"status": "resolved", "closed_at": now, "updated_at": now, "note": note}

        changed = await self.storage.change(tenant, ref, decide)
        request = changed.after
        data = {**request.to_json(), "returnedToBot": return_to_bot}
        await self._tell(tenant, await self._concerned(request), "handover:resolved", data,
                         actor)
        if return_to_bot:
            await self._say(request, self.settings.message_returned,
                            agent=request.assignee or "")
        else:
            await self._say(request, self.settings.message_resolved,
                            agent=request.assignee or "")
        self._reported("resolved", request, actor)
        return request

    # -- the escalation timer -----------------------------------------------------------

    async def run_timer(self) -> None:
        """Escalate (or expire) pending requests when they are due, for the
        server's life. Due times are in the store: after a restart, what came
        due meanwhile is escalated once, at once."""
        s = self.settings
        while True:
            wake = self._wake = trio.Event()
            now = self.now()
            batch = await self.storage.due(now, DUE_BATCH)
            for request, expires in batch:
                await self._escalate(request, expires, now)
            if len(batch) == DUE_BATCH:
                continue
            upcoming = await self.storage.next_due()
            delay = s.poll_interval if upcoming is None else \
                min(max(upcoming - self.now(), 0.001), s.poll_interval)
            with trio.move_on_after(delay):
                await wake.wait()

    async def _escalate(self, request: HandoverRequest, expires: float | None,
                        now: float) -> None:
        s = self.settings
        actor = Actor("timer")
        if expires is not None and now >= expires:
            expired = await self.storage.escalate(request, {
                "status": "expired", "closed_at": now, "updated_at": now, "due_at": None})
            if expired is None:
                return
            data = expired.to_json()
            await self.app.publish(expired.tenant_id, self.announce_room(request),
                                   "handover:expired", data)
            await self._tell(expired.tenant_id, await self._concerned(expired),
                             "handover:expired", data, actor)
            await self._say(expired, s.message_expired)
            self._reported("expired", expired, actor)
            return
        level = request.escalation_level + 1
        if s.escalate_after <= 0 or request.escalation_level >= s.max_escalations:
            # (settings changed since it was due): only its expiry is left
            await self.storage.escalate(request, {"due_at": expires})
            return
        priority = request.priority
        if s.raise_priority:
            priority = PRIORITIES[min(PRIORITIES.index(priority) + 1, len(PRIORITIES) - 1)]
        widened = request.widened or (request.queue is not None and s.widen_at > 0
                                      and level >= s.widen_at)
        escalated = await self.storage.escalate(request, {
            "escalation_level": level, "widened": widened, "priority": priority,
            "updated_at": now, "due_at": self._due(now, level, expires)})
        if escalated is None:
            return  # accepted, cancelled or escalated by another node meanwhile
        data = escalated.to_json()
        room = self.announce_room(escalated)
        await self.app.publish(escalated.tenant_id, room, "handover:escalated", data)
        await self.app.publish(escalated.tenant_id, room, "handover:new_request", data)
        await self.app.publish(escalated.tenant_id, user_room(escalated.requested_by),
                               "handover:escalated", data)
        self._reported("escalated", escalated, actor)

    # -- reading ------------------------------------------------------------------------

    async def find(self, tenant: str, ref: int | str) -> HandoverRequest:
        request = await self.storage.get(tenant, ref)
        if request is None:
            raise ClientError("not_found", f"no handover {ref}" if isinstance(ref, int)
                              else f"no open handover in conversation {ref!r}")
        return request

    async def page(self, tenant: str, *, status: str | None = None, queue: str | None = None,
                   conversation: str | None = None, assignee: str | None = None,
                   priority: str | None = None, after: int | None = None,
                   limit: int = 50) -> dict[str, Any]:
        items, next_after = await self.storage.page(
            tenant, status=status, queue=queue, conversation=conversation, assignee=assignee,
            priority=priority, after=after, limit=limit)
        return {"items": [r.to_json() for r in items], "nextAfter": next_after}

    # -- the service (switchboard.core.HandoverService) -------------------------------------

    async def request(self, tenant_id: str, conversation_id: str, *, requested_by: str,
                      requester_role: str = "bot", reason: str | None = None,
                      priority: HandoverPriority = "normal",
                      queue: str | None = None) -> HandoverRequest:
        tenant = _tenant(tenant_id)
        conversation = check_argument(conversation_id, "conversation_id",
                                      room_prefix=CONVERSATION_PREFIX)
        assert conversation is not None
        requester = check_argument(requested_by, "requested_by")
        role = check_argument(requester_role, "requester_role")
        assert requester is not None and role is not None
        return await self.do_request(
            tenant, conversation, requested_by=requester, requester_role=role,
            reason=check_text(reason, "reason"), priority=check_priority(priority),
            queue=check_argument(queue, "queue", room_prefix=QUEUE_PREFIX, optional=True),
            actor=Actor("plugin", requester))

    async def accept(self, tenant_id: str, request_id: int, agent_id: str, *,
                     agent_name: str | None = None) -> HandoverRequest:
        agent = check_argument(agent_id, "agent_id")
        assert agent is not None
        return await self.do_accept(_tenant(tenant_id), _request_id(request_id), agent,
                                    agent_name=check_text(agent_name, "agent_name"),
                                    actor=Actor("plugin", agent))

    async def transfer(self, tenant_id: str, request_id: int, *, by: str | None = None,
                       to_agent: str | None = None, to_agent_name: str | None = None,
                       to_queue: str | None = None,
                       note: str | None = None) -> HandoverRequest:
        if (to_agent is None) == (to_queue is None):
            raise ClientError("invalid_payload", "to_agent: give to_agent or to_queue",
                              field="to_agent")
        return await self.do_transfer(
            _tenant(tenant_id), _request_id(request_id),
            to_agent=check_argument(to_agent, "to_agent", optional=True),
            to_agent_name=check_text(to_agent_name, "to_agent_name"),
            to_queue=check_argument(to_queue, "to_queue", room_prefix=QUEUE_PREFIX,
                                    optional=True),
            note=check_text(note, "note"),
            actor=Actor("plugin", check_argument(by, "by", optional=True)))

    async def cancel(self, tenant_id: str, request_id: int, *, by: str | None = None,
                     reason: str | None = None) -> HandoverRequest:
        return await self.do_cancel(_tenant(tenant_id), _request_id(request_id),
                                    reason=check_text(reason, "reason"),
                                    actor=Actor("plugin", check_argument(by, "by",
                                                                         optional=True)))

    async def resolve(self, tenant_id: str, request_id: int, *, by: str | None = None,
                      return_to_bot: bool = False,
                      note: str | None = None) -> HandoverRequest:
        if not isinstance(return_to_bot, bool):
            raise ClientError("invalid_payload", "return_to_bot: must be a boolean",
                              field="return_to_bot")
        return await self.do_resolve(_tenant(tenant_id), _request_id(request_id),
                                     return_to_bot=return_to_bot,
                                     note=check_text(note, "note"),
                                     actor=Actor("plugin", check_argument(by, "by",
                                                                          optional=True)))

    async def get(self, tenant_id: str, request_id: int) -> HandoverRequest | None:
        return await self.storage.get(_tenant(tenant_id), _request_id(request_id))

    async def open_request(self, tenant_id: str,
                           conversation_id: str) -> HandoverRequest | None:
        conversation = check_argument(conversation_id, "conversation_id",
                                      room_prefix=CONVERSATION_PREFIX)
        assert conversation is not None
        return await self.storage.get(_tenant(tenant_id), conversation)

    async def pending(self, tenant_id: str, *, queue: str | None = None,
                      limit: int = 50) -> list[HandoverRequest]:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ClientError("invalid_payload", f"limit: must be 1 to {MAX_PAGE}",
                              field="limit")
        items, _ = await self.storage.page(
            _tenant(tenant_id), status="pending",
            queue=check_argument(queue, "queue", room_prefix=QUEUE_PREFIX, optional=True),
            conversation=None, assignee=None, priority=None, after=None, limit=limit)
        return items


def _tenant(value: object) -> str:
    tenant = check_argument(value, "tenant_id")
    assert tenant is not None
    return tenant


def _request_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ClientError("invalid_payload", "request_id: must be an integer id",
                          field="request_id")
    return value


__all__ = ["Actor", "Handover"]
