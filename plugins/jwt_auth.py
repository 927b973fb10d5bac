"""JWT authentication: the first implementation of ``switchboard_authenticate``.

A connection that presents a token (Socket.IO's ``auth.token``, an
``Authorization: Bearer`` header or a ``token`` query parameter) is who the
token says, or is refused; one without a token is left to the next plugin
(a connect proxy, guests), and refused when none takes it. The keys and
claims are the ``[auth]`` settings: an HS secret, a PEM public key, or an
identity provider's JWKS URL (``auth.jwks_url``).
"""

from __future__ import annotations

from switchboard.core import App, Handshake, Identity, hookimpl


class JwtPlugin:
    app: App

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app

    @hookimpl(tryfirst=True)
    async def switchboard_authenticate(self, handshake: Handshake) -> Identity | None:
        token = handshake.token()
        if token is None:
            return None
        return await self.app.verifier.verify_async(token)

    @hookimpl
    async def switchboard_shutdown(self) -> None:
        jwks = self.app.verifier.jwks
        if jwks is not None:
            await jwks.aclose()
