"""JWT authentication (pyjwt): token -> :class:`Identity`.

Tokens come from an ``Authorization: Bearer`` header, a ``token`` query
parameter or (Socket.IO) the ``auth`` object; which claims carry the user,
tenant and role is configurable.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import attrs
import jwt

from .config import AuthConfig, Config
from .validators import check_identifier


class AuthError(Exception):
    """The token is missing, forged, malformed or expired."""


@attrs.frozen
class Identity:
    user_id: str
    tenant_id: str
    role: str
    #: Expiry as a UNIX timestamp, or ``None`` for tokens without ``exp``.
    expires_at: float | None
    claims: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


class TokenVerifier:
    def __init__(self, config: AuthConfig, *, secret: str | None = None) -> None:
        self._config = config
        key = config.public_key
        if not key and config.public_key_file:
            key = Path(config.public_key_file).read_text()
        self._key: str = key or secret or config.secret
        if not self._key:
            raise ValueError("no auth secret or public key configured")
        self._algorithms = list(config.algorithms)

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError("missing token")
        cfg = self._config
        options: dict[str, Any] = {"require": []}
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=cfg.audience or None,
                issuer=cfg.issuer or None,
                leeway=cfg.leeway,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        user = claims.get(cfg.user_claim)
        tenant = claims.get(cfg.tenant_claim, cfg.default_tenant or None)
        if user is None or user == "":
            raise AuthError(f"token has no {cfg.user_claim!r} claim")
        if tenant is None or tenant == "":
            raise AuthError(f"token has no {cfg.tenant_claim!r} claim")
        role = claims.get(cfg.role_claim, "")
        for claim, value in ((cfg.user_claim, user), (cfg.tenant_claim, tenant),
                             (cfg.role_claim, role)):
            if value != "" and (problem := check_identifier(str(value))) is not None:
                raise AuthError(f"invalid token: claim {claim!r} {problem}")
        exp = claims.get("exp")
        return Identity(
            user_id=str(user),
            tenant_id=str(tenant),
            role=str(role or ""),
            expires_at=float(exp) + cfg.leeway if exp is not None else None,
            claims=claims,
        )


def development_secret(data_dir: str | Path) -> str:
    """The random HS256 secret of development mode, created once in ``data_dir``."""
    path = Path(data_dir) / "dev-secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def signing_secret(config: Config) -> tuple[str, bool]:
    """The HS256 secret to verify (and mint development) tokens with.

    Returns ``(secret, generated)``; ``generated`` is true in development mode
    when no secret is configured and one was taken from ``data_dir``.
    """
    if config.auth.secret:
        return config.auth.secret, False
    return development_secret(config.data_dir), True


def make_verifier(config: Config) -> tuple[TokenVerifier, bool]:
    if config.auth.public_key or config.auth.public_key_file:
        return TokenVerifier(config.auth), False
    secret, generated = signing_secret(config)
    return TokenVerifier(config.auth, secret=secret), generated


def mint_token(config: Config, *, sub: str, tenant: str, role: str, ttl: float | None,
               now: float) -> str:
    """A development token signed with the configured (or generated) HS256 secret."""
    secret, _ = signing_secret(config)
    claims: dict[str, Any] = {
        config.auth.user_claim: sub,
        config.auth.tenant_claim: tenant,
        config.auth.role_claim: role,
        "iat": int(now),
    }
    if ttl is not None:
        claims["exp"] = int(now + ttl)
    if config.auth.audience:
        claims["aud"] = config.auth.audience
    if config.auth.issuer:
        claims["iss"] = config.auth.issuer
    return jwt.encode(claims, secret, algorithm="HS256")
