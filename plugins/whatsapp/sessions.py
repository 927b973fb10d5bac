"""Sessions (numbers) of a tenant and their life: ``connecting``, ``qr``,
``connected``, ``disconnected``, ``logged_out``.

Commands (start, restart, log out, delete) come from HTTP or from admin
sockets; state changes come from the provider (its answers and webhooks).
Each change is stored and announced to the tenant's agents as
``whatsapp:session``; each QR code as ``whatsapp:qr`` with SVG and PNG
renderings, and ``whatsapp:qr_expired`` once it outlived ``qr_lifetime``
without the bridge rotating it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs
import trio
from switchboard.core import ClientError, agents_room

from . import events
from .model import ConnectionUpdate, Event, QrUpdate
from .providers import Provider, ProviderError, make_provider
from .qr import render
from .storage import SessionRow

if TYPE_CHECKING:
    from .engine import WhatsApp


@attrs.frozen
class LiveQr:
    code: str
    svg: str
    png: str
    #: Wall-clock time it expires (for clients), and its number for the expiry timer.
    expires_at: float
    generation: int


class Sessions:
    def __init__(self, engine: WhatsApp) -> None:
        self.engine = engine
        self._providers: dict[tuple[str, str], tuple[str, Provider]] = {}
        self._qr: dict[tuple[str, str], LiveQr] = {}
        self._generation = 0

    # -- lookups ------------------------------------------------------------------

    async def get(self, tenant: str, session: str) -> SessionRow:
        row = await self.engine.storage.session(tenant, session)
        if row is None:
            raise ClientError("not_found", f"no WhatsApp session {session!r}",
                              sessionId=session)
        return row

    def provider(self, row: SessionRow) -> Provider:
        key = (row.tenant, row.id)
        cached = self._providers.get(key)
        if cached is None or cached[0] != row.provider:
            cached = (row.provider, make_provider(row.provider, row.config,
                                                  self.engine.settings))
            self._providers[key] = cached
        return cached[1]

    def describe(self, row: SessionRow) -> dict[str, Any]:
        """A session as clients see it (no secrets)."""
        qr = self._qr.get((row.tenant, row.id))
        out: dict[str, Any] = {
            "id": row.id, "tenant": row.tenant, "provider": row.provider,
            "status": row.status, "reason": row.reason, "updatedAt": row.updated_at,
            "webhookPath": f"/api/v1/whatsapp/webhooks/{row.tenant}/{row.id}",
            "qr": None if qr is None or row.status != "qr" else self._qr_json(row, qr),
        }
        if row.provider == "cloud":
            out["phoneNumberId"] = row.config.get("phoneNumberId")
        else:
            out["instance"] = row.config.get("instance")
            out["url"] = row.config.get("url")
        return out

    # -- commands -------------------------------------------------------------------

    async def create(self, tenant: str, session: str, provider: str,
                     config: dict[str, Any]) -> dict[str, Any]:
        if not await self.engine.storage.create_session(tenant, session, provider, config):
            current = await self.get(tenant, session)
            raise ClientError("conflict", f"WhatsApp session {session!r} exists",
                              sessionId=session, state=current.status)
        row = await self.get(tenant, session)
        await self._announce(tenant, events.SESSION, {
            "sessionId": session, "status": row.status, "provider": provider, "reason": None,
            "timestamp": time.time()})
        return self.describe(row)

    async def command(self, tenant: str, session: str, command: str) -> dict[str, Any]:
        """Run ``start``, ``restart``, ``logout`` or ``delete``; the session after it."""
        row = await self.get(tenant, session)
        provider = self.provider(row)
        client = self.engine.client
        try:
            if command == "start":
                if row.status in ("connecting", "qr", "connected"):
                    raise ClientError("conflict", f"the session is {row.status} already",
                                      sessionId=session, state=row.status)
                await self._set(row, "connecting", None)
                await self.apply(tenant, session, await provider.start(client))
            elif command == "restart":
                await self._set(row, "connecting", "restarted")
                await self.apply(tenant, session, await provider.restart(client))
            elif command == "logout":
                if row.status == "logged_out":
                    raise ClientError("conflict", "the session is logged out already",
                                      sessionId=session, state=row.status)
                await provider.logout(client)
                await self.apply(tenant, session, [ConnectionUpdate("logged_out", "logged out")])
            elif command == "delete":
                if row.status != "logged_out":
                    try:
                        await provider.logout(client)
                    except ProviderError:
                        pass  # deleting a session must not wait for its provider
                await self.engine.storage.delete_session(tenant, session)
                await self.engine.storage.forget_session(tenant, session)
                self._providers.pop((tenant, session), None)
                self._qr.pop((tenant, session), None)
                gone = self.describe(row) | {"status": "deleted", "qr": None}
                await self._announce(tenant, events.SESSION, {
                    "sessionId": session, "status": "deleted", "provider": row.provider,
                    "reason": None, "timestamp": time.time()})
                return gone
        except ProviderError as exc:
            await self._set(await self.get(tenant, session), "disconnected", str(exc))
            raise ClientError("provider_unavailable", f"the provider failed: {exc}",
                              sessionId=session) from None
        return self.describe(await self.get(tenant, session))

    # -- what the provider says ---------------------------------------------------------

    async def apply(self, tenant: str, session: str, happened: list[Event]) -> None:
        for event in happened:
            if isinstance(event, QrUpdate):
                await self._qr_update(tenant, session, event.code)
            elif isinstance(event, ConnectionUpdate):
                row = await self.engine.storage.session(tenant, session)
                if row is not None:
                    await self._set(row, event.status, event.reason)

    async def _set(self, row: SessionRow, status: str, reason: str | None) -> None:
        if status != "qr":
            self._qr.pop((row.tenant, row.id), None)
        if row.status == status and row.reason == reason:
            return
        await self.engine.storage.set_status(row.tenant, row.id, status, reason)
        await self._announce(row.tenant, events.SESSION, {
            "sessionId": row.id, "status": status, "provider": row.provider,
            "reason": reason, "timestamp": time.time()})

    async def _qr_update(self, tenant: str, session: str, code: str) -> None:
        row = await self.engine.storage.session(tenant, session)
        if row is None or row.status == "connected":
            return  # a late QR of a session linked meanwhile
        svg, png = render(code)
        self._generation += 1
        lifetime = self.engine.settings.qr_lifetime
        qr = LiveQr(code, svg, png, time.time() + lifetime, self._generation)
        await self._set(row, "qr", None)
        self._qr[(tenant, session)] = qr
        await self._announce(tenant, events.QR, self._qr_json(row, qr))
        self.engine.app.nursery.start_soon(self._expire, tenant, session, qr.generation)

    async def _expire(self, tenant: str, session: str, generation: int) -> None:
        await trio.sleep(self.engine.settings.qr_lifetime)
        qr = self._qr.get((tenant, session))
        if qr is None or qr.generation != generation:
            return  # rotated, linked or gone meanwhile
        del self._qr[(tenant, session)]
        await self._announce(tenant, events.QR_EXPIRED,
                             {"sessionId": session, "timestamp": time.time()})

    def _qr_json(self, row: SessionRow, qr: LiveQr) -> dict[str, Any]:
        return {"sessionId": row.id, "qr": qr.code, "svg": qr.svg, "png": qr.png,
                "expiresAt": qr.expires_at, "timestamp": time.time()}

    async def _announce(self, tenant: str, event: str, data: dict[str, Any]) -> None:
        await self.engine.app.publish(tenant, agents_room(tenant), event, data)
