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

from .config import AuthConfig, Config, ConfigError
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


#: The latest ``exp`` accepted (the end of year 9999): beyond it a timestamp is
#: nonsense, and a huge number would overflow the float it becomes.
MAX_EXP = 253_402_300_799
#: The family of each algorithm: a token's ``alg`` must fit the configured key.
_FAMILIES = {"HS": "hmac", "RS": "rsa", "PS": "rsa", "ES": "ec", "Ed": "okp"}


def _family(algorithm: str) -> str:
    return _FAMILIES.get(algorithm[:2], algorithm)


class TokenVerifier:
    """Verifies JWTs with one key (an HS secret or a PEM public key).

    A token is refused (:class:`AuthError`), never an exception of another
    kind, whatever it holds: a signature by an algorithm that is not
    configured or does not fit the key, a claim of the wrong type (user,
    tenant and role are strings, or integers for user and tenant; ``exp`` a
    number up to :data:`MAX_EXP`), or no ``exp`` when ``require_exp``.
    """

    def __init__(self, config: AuthConfig, *, secret: str | None = None,
                 require_exp: bool | None = None) -> None:
        self._config = config
        key = config.public_key
        if not key and config.public_key_file:
            key = Path(config.public_key_file).read_text()
        self._key: str = key or secret or config.secret
        if not self._key:
            raise ValueError("no auth secret or public key configured")
        family = "hmac" if not key else _public_key_family(key)
        #: The configured algorithms this key can verify.
        self._algorithms = [a for a in config.algorithms if _family(a) == family]
        self._require_exp = bool(config.require_exp if require_exp is None else require_exp)

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError("missing token")
        cfg = self._config
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm not in cfg.algorithms:
                raise AuthError(f"invalid token: algorithm {algorithm!r} is not allowed")
            if algorithm not in self._algorithms:
                raise AuthError(f"invalid token: algorithm {algorithm!r} does not fit "
                                "the configured key")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[algorithm],
                audience=cfg.audience or None,
                issuer=cfg.issuer or None,
                leeway=cfg.leeway,
                options={"require": ["exp"] if self._require_exp else []},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:  # InvalidTokenError, InvalidKeyError...
            raise AuthError(f"invalid token: {exc}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # what a key refuses
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        return Identity(
            user_id=self._identifier(claims, cfg.user_claim, None),
            tenant_id=self._identifier(claims, cfg.tenant_claim, cfg.default_tenant),
            role=self._role(claims),
            expires_at=_expiry(claims.get("exp"), cfg.leeway),
            claims=claims,
        )

    @staticmethod
    def _identifier(claims: dict[str, Any], claim: str, default: str | None) -> str:
        value = claims.get(claim, default or None)
        if value is None or value == "":
            raise AuthError(f"token has no {claim!r} claim")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise AuthError(f"invalid token: claim {claim!r} must be a string")
        text = str(value)
        if (problem := check_identifier(text)) is not None:
            raise AuthError(f"invalid token: claim {claim!r} {problem}")
        return text

    def _role(self, claims: dict[str, Any]) -> str:
        claim = self._config.role_claim
        role = claims.get(claim, "")
        if role is None or role == "":
            return ""
        if not isinstance(role, str):
            raise AuthError(f"invalid token: claim {claim!r} must be a string")
        if (problem := check_identifier(role)) is not None:
            raise AuthError(f"invalid token: claim {claim!r} {problem}")
        return role


def _expiry(exp: Any, leeway: float) -> float | None:
    """The expiry of a verified token (``exp`` plus the leeway), checked."""
    if exp is None:
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 <= exp <= MAX_EXP:
        raise AuthError("invalid token: claim 'exp' must be a number of seconds since "
                        "1970 (at most year 9999)")
    return float(exp) + leeway


def _public_key_family(pem: str) -> str:
    """``rsa``, ``ec`` or ``okp`` for a PEM public key (or certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    data = pem.encode()
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ConfigError("auth.public_key",
                              "not a PEM public key or certificate") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "okp"
    raise ConfigError("auth.public_key", f"unsupported key type {type(key).__name__}")


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
    require_exp = config.auth.require_exp
    if require_exp is None:
        require_exp = config.mode == "production"
    if config.auth.public_key or config.auth.public_key_file:
        return TokenVerifier(config.auth, require_exp=require_exp), False
    secret, generated = signing_secret(config)
    return TokenVerifier(config.auth, secret=secret, require_exp=require_exp), generated


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
