"""The durable send outbox: messages of agents (and bots) in WhatsApp
conversations, sent through their session's provider.

A message is written to ``whatsapp_outbox`` (one row per chat message, so it
is sent once) before anything is sent. One sender per number takes its
messages in order, at most ``rate_per_number`` a second. A 429, a 5xx, a
transient Graph error or a network failure is tried again after a back-off
(``retry_first`` doubling up to ``retry_longest``, or the provider's
``Retry-After``) on Trio's clock, holding that number's later messages so
they keep their order; after ``max_attempts`` tries, or at once for a
refusal, the message is ``failed`` with the provider's reason. After a
restart every pending message is sent at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio
from switchboard.core import ClientError, StoreUnavailable

from .inbound import conversation_id
from .model import Outgoing
from .providers import send
from .storage import OutboxRow

if TYPE_CHECKING:
    from .engine import WhatsApp

log = logging.getLogger("switchboard.whatsapp")
#: Seconds after a contact's last message in which a business may answer freely.
SERVICE_WINDOW = 24 * 3600.0
#: Seconds between looks for sends a stopped node left half done.
STALE_CHECK = 60.0


class Outbox:
    def __init__(self, engine: WhatsApp) -> None:
        self.engine = engine
        #: (tenant, session) -> the event that wakes its sender.
        self._wake: dict[tuple[str, str], trio.Event] = {}
        #: Sends tried (for stats and tests).
        self.tries = 0

    def wake(self, tenant: str, session: str) -> None:
        """New messages for a number: wake its sender (started on first use)."""
        key = (tenant, session)
        event = self._wake.get(key)
        if event is None:
            self._wake[key] = trio.Event()
            self.engine.app.nursery.start_soon(self._sender, tenant, session)
        else:
            event.set()

    async def resume(self) -> None:
        """At start-up: the messages a stop cut off between the chat storing
        them and this plugin queueing them, then the senders of numbers with
        messages waiting; then, every ``STALE_CHECK`` seconds, the messages a
        sender took and never finished (its node stopped mid-send) are pending
        again and sent."""
        delay = 1.0
        while True:
            try:
                await self._catch_up()
                break
            except StoreUnavailable:
                await trio.sleep(delay)
                delay = min(delay * 2, 30.0)
        while True:
            try:
                # a send takes at most `timeout`: older claims are a stopped node's
                await self.engine.storage.release_stale(
                    time.time() - 2 * self.engine.settings.timeout - 5.0)
                for tenant, session in await self.engine.storage.senders_due():
                    self.wake(tenant, session)
            except StoreUnavailable:
                pass
            await trio.sleep(STALE_CHECK)

    async def _catch_up(self) -> None:
        """Queue the agents' messages of recent conversations (the contact
        wrote within WhatsApp's 24-hour service window, the only ones that can
        be answered freely) stored after the last message this plugin
        recorded for their number, and not queued yet."""
        chat = self.engine.app.service("chat")
        since = time.time() - SERVICE_WINDOW
        for tenant, session, wa_id, watermark in await self.engine.storage.recent_contacts(
                since):
            conversation = conversation_id(session, wa_id)
            after = watermark
            while True:
                try:
                    page = await chat.history(tenant, conversation, after=after, limit=200)
                except ClientError:
                    break  # (no such conversation)
                for message in page.messages:
                    await self.engine.message_stored(message, wake=False)
                if not page.has_more or not page.messages:
                    break
                after = page.messages[-1].id

    async def _sender(self, tenant: str, session: str) -> None:
        key = (tenant, session)
        settings = self.engine.settings
        interval = 1.0 / settings.rate_per_number
        next_slot = trio.current_time()
        while True:
            self._wake[key] = trio.Event()
            try:
                rows = await self.engine.storage.pending(tenant, session)
            except Exception as exc:  # the store: look again in a moment
                if not isinstance(exc, StoreUnavailable):
                    self.engine.app.task_failed(f"whatsapp sender {tenant}/{session}", exc)
                await trio.sleep(settings.retry_first)
                continue
            for row in rows:
                await trio.sleep_until(next_slot)
                try:
                    wait = await self._send(row)
                except Exception as exc:  # the store, most likely: this row again later
                    self.engine.app.task_failed(f"whatsapp sender {tenant}/{session}", exc)
                    wait = settings.retry_first
                next_slot = trio.current_time() + interval
                if wait is not None:
                    await trio.sleep(wait)
                    break  # read the queue again: this row first
            else:
                if not rows:
                    await self._wake[key].wait()

    async def _send(self, row: OutboxRow) -> float | None:
        """Try one message; the back-off before trying it again, or None."""
        engine = self.engine
        settings = engine.settings
        session = await engine.storage.session(row.tenant, row.session)
        if session is None:
            await engine.storage.attempted(row.id, row.attempts, "the session was deleted",
                                           failed=True)
            return None
        provider = engine.sessions.provider(session)
        if not await engine.storage.claim(row.id):
            return None  # another sender has it
        self.tries += 1
        outcome = await send(provider, engine.client, Outgoing(row.to, row.type, row.content))
        attempts = row.attempts + 1
        # What the provider said is recorded whatever it takes: a message left
        # claimed would wait for the stale check, and then be sent again.
        if outcome.provider_id is not None:
            await self._record(engine.storage.sent, row.id, attempts, outcome.provider_id)
            await engine.announce_status(row, "sent", None)
            await engine.inbound.apply_early(row.tenant, attrs.evolve(
                row, status="sent", provider_id=outcome.provider_id))
            return None
        error = outcome.error or "refused"
        if outcome.retry and attempts < settings.max_attempts:
            await self._record(engine.storage.attempted, row.id, attempts, error,
                               failed=False)
            wait = min(settings.retry_first * 2.0 ** (attempts - 1), settings.retry_longest)
            if outcome.retry_after is not None:
                wait = max(wait, min(outcome.retry_after, settings.retry_longest))
            log.info("whatsapp send %s failed (%s); try %d in %g s", row.id, error,
                     attempts + 1, wait)
            return wait
        await self._record(engine.storage.attempted, row.id, attempts, error, failed=True)
        log.warning("whatsapp send %s failed for good after %d tries: %s", row.id,
                    attempts, error)
        await engine.announce_status(row, "failed", error)
        return None

    async def _record(self, write: Callable[..., Awaitable[None]], *args: Any,
                      **kwargs: Any) -> None:
        """Run a write of the outbox, again and again while the store is
        unavailable (this number's sender waits meanwhile, keeping its order)."""
        delay = 0.5
        while True:
            try:
                await write(*args, **kwargs)
                return
            except StoreUnavailable as exc:
                log.warning("whatsapp outbox not written (%s); again in %g s", exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 10.0)
