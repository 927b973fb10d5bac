"""Identities, and JWT verification (pyjwt): token -> :class:`Identity`.

Who a connection is comes from the ``switchboard_authenticate`` hook; JWT is
its first implementation (the ``jwt`` plugin), with the verifier below.
Tokens come from an ``Authorization: Bearer`` header, a ``token`` query
parameter or (Socket.IO) the ``auth`` object; which claims carry the user,
tenant and role is configurable. Keys are an HS secret, a PEM public key, or
the JSON Web Key Set of an identity provider (:class:`JwksKeys`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import jwt
import trio

from .config import AuthConfig, Config, ConfigError
from .validators import check_identifier

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("switchboard.auth")


class AuthError(Exception):
    """A connection is refused: no credentials, or forged, malformed, expired
    ones, or a backend that said no.

    ``code`` and ``message`` reach the client (an HTTP answer with ``status``
    to a WebSocket handshake, Socket.IO's ``connect_error`` data, an error
    answer to ``auth``); ``data`` is added to what it gets.
    """

    def __init__(self, message: str, *, code: str = "unauthorized", status: int = 401,
                 data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.data = dict(data or {})

    def to_dict(self) -> dict[str, Any]:
        return {**self.data, "code": self.code, "message": self.message}


@attrs.frozen
class Identity:
    """Who a verified token says the client is (``session.identity``); the
    token's other claims are in ``claims``."""

    user_id: str
    tenant_id: str
    role: str
    #: Expiry as a UNIX timestamp, or ``None`` for tokens without ``exp``.
    expires_at: float | None
    claims: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    #: Rooms (of the tenant) the connection joins when it opens, besides the
    #: canonical ones: granted by whoever authenticated it (a connect proxy).
    rooms: tuple[str, ...] = ()
    #: Anything the authenticator passes on to plugins (a proxy's ``data``).
    data: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    #: A confined identity (a website guest) is put in its own user room only,
    #: not in ``tenant:{id}`` (nor its agents' room), and may not join them.
    confined: bool = False


#: Verified tokens remembered by a verifier (the least recently used are forgotten).
VERIFIED_TOKENS = 10_000
#: The latest ``exp`` accepted (the end of year 9999): beyond it a timestamp is
#: nonsense, and a huge number would overflow the float it becomes.
MAX_EXP = 253_402_300_799
#: The family of each algorithm: a token's ``alg`` must fit the configured key.
_FAMILIES = {"HS": "hmac", "RS": "rsa", "PS": "rsa", "ES": "ec", "Ed": "okp"}


#: The algorithm family of each JWK key type (``kty``).
_JWK_FAMILIES = {"oct": "hmac", "RSA": "rsa", "EC": "ec", "OKP": "okp"}


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
                 require_exp: bool | None = None, jwks: JwksKeys | None = None) -> None:
        self._config = config
        self._jwks = jwks
        key = config.public_key
        setting = "auth.public_key"
        if not key and config.public_key_file:
            key, setting = _read_key_file(config.public_key_file), "auth.public_key_file"
        self._key: str = key or secret or config.secret
        if not self._key and jwks is None:
            raise ValueError("no auth secret, public key or JWKS URL configured")
        family = "hmac" if not key else _public_key_family(
            key, setting, config.public_key_file if setting.endswith("_file") else "")
        #: The configured algorithms this key can verify.
        self._algorithms = [a for a in config.algorithms if _family(a) == family]
        self._require_exp = bool(config.require_exp if require_exp is None else require_exp)
        #: Tokens verified with the configured key, by a digest of the token's
        #: text (32 bytes instead of a token's hundreds), least recently used
        #: first: a client that reconnects with the same token (a reload, a
        #: dropped network) is not decoded and checked again. Failures are not
        #: cached, and an expired entry is refused (see :meth:`verify`).
        self._verified: dict[bytes, Identity] = {}

    @property
    def jwks(self) -> JwksKeys | None:
        return self._jwks

    async def verify_async(self, token: str | None) -> Identity:
        """:meth:`verify`, with the key from the JWKS when one is configured
        (fetched, or fetched again for a key id it does not know yet)."""
        if self._jwks is None or not token:
            return self.verify(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthError("invalid token: no key id ('kid') to find its key in the JWKS")
        return self.verify(token, key=await self._jwks.key(kid))

    def verify(self, token: str | None, *, key: jwt.PyJWK | None = None) -> Identity:
        """The identity of a token signed with the configured key (or ``key``,
        a key of the JWKS); :class:`AuthError` when it cannot be accepted."""
        if not token:
            raise AuthError("missing token")
        if key is not None:  # (a JWKS key may be withdrawn: checked every time)
            return self._verify_with_key(token, key)
        identity = self._remembered(token)
        if identity.expires_at is not None and identity.expires_at <= time.time():
            raise AuthError("token expired")
        return identity

    def _remembered(self, token: str) -> Identity:
        """The identity of a token verified with the configured key, from the
        cache of :attr:`_verified` when it is there."""
        # (surrogatepass: a token with a lone surrogate, which JSON can carry,
        # gets a digest and is refused by the verification as invalid)
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        verified = self._verified
        identity = verified.pop(digest, None)
        if identity is None:
            identity = self._verify_with_key(token)
            if len(verified) >= VERIFIED_TOKENS:
                del verified[next(iter(verified))]
        verified[digest] = identity  # (the most recently used last)
        return identity

    def _verify_with_key(self, token: str, key: jwt.PyJWK | None = None) -> Identity:
        cfg = self._config
        try:
            if key is not None:
                algorithms = [self._algorithm(token, key)]
            else:
                # the algorithms that fit the key: pyjwt refuses the others (then
                # the header is read again, for the reason)
                algorithms = self._algorithms
            claims: dict[str, Any] = jwt.decode(
                token,
                key if key is not None else self._key,
                algorithms=algorithms,
                audience=cfg.audience or None,
                issuer=cfg.issuer or None,
                leeway=cfg.leeway,
                options={"require": ["exp"] if self._require_exp else []},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAlgorithmError as exc:
            if key is None:
                with contextlib.suppress(jwt.PyJWTError):
                    self._algorithm(token, None)  # raises AuthError with the reason
            raise AuthError(f"invalid token: {exc}") from None
        except jwt.PyJWTError as exc:  # InvalidTokenError, InvalidKeyError...
            raise AuthError(f"invalid token: {exc}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # what a key refuses
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        # the claim names are the same in every token, and so are the tenants
        # and roles of many: one string each, not one per connection
        claims = {sys.intern(name): value for name, value in claims.items()}
        for name in (cfg.tenant_claim, cfg.role_claim):
            if isinstance(value := claims.get(name), str):
                claims[name] = sys.intern(value)
        return Identity(
            user_id=self._identifier(claims, cfg.user_claim, None),
            tenant_id=self._identifier(claims, cfg.tenant_claim, cfg.default_tenant),
            role=self._role(claims),
            expires_at=_expiry(claims.get("exp"), cfg.leeway),
            claims=claims,
        )

    def _algorithm(self, token: str, key: jwt.PyJWK | None) -> str:
        """The token's algorithm (from its header, not verified yet), if it is
        allowed and fits the key; :class:`AuthError` (or pyjwt's errors) if not."""
        algorithm = jwt.get_unverified_header(token).get("alg")
        if algorithm not in self._config.algorithms:
            raise AuthError(f"invalid token: algorithm {algorithm!r} is not allowed")
        fits = (_family(algorithm) == _JWK_FAMILIES.get(key.key_type or "") if key is not None
                else algorithm in self._algorithms)
        if not fits:
            raise AuthError(f"invalid token: algorithm {algorithm!r} does not fit "
                            "the configured key")
        return str(algorithm)

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


def _read_key_file(path: str) -> str:
    """The text of ``auth.public_key_file``; a file that cannot be read is a
    config error naming the file and why."""
    try:
        return Path(path).read_text()
    except UnicodeDecodeError:
        raise ConfigError("auth.public_key_file",
                          f"{path} is not a PEM public key or certificate") from None
    except OSError as exc:
        raise ConfigError("auth.public_key_file",
                          f"cannot read {path}: {exc.strerror or exc}") from None


def _public_key_family(pem: str, setting: str = "auth.public_key", path: str = "") -> str:
    """``rsa``, ``ec`` or ``okp`` for a PEM public key (or certificate), read
    from ``setting`` (the file ``path``)."""
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
            raise ConfigError(setting, f"{path + ' is ' if path else ''}not a PEM public key "
                              "or certificate") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "okp"
    raise ConfigError(setting, f"unsupported key type {type(key).__name__}")


def development_secret_path(data_dir: str | Path) -> Path:
    """Where development mode keeps its generated secret."""
    return Path(data_dir) / "dev-secret"


def development_secret(data_dir: str | Path) -> str:
    """The random HS256 secret of development mode, created once in ``data_dir``."""
    path = development_secret_path(data_dir)
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
    if config.auth.jwks_url:
        jwks = JwksKeys(config.auth.jwks_url, max_age=config.auth.jwks_max_age,
                        timeout=config.auth.jwks_timeout)
        return TokenVerifier(config.auth, require_exp=require_exp, jwks=jwks), False
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


class JwksKeys:
    """The signing keys of an identity provider, from its JWKS URL.

    The key set is fetched on first use and kept ``max_age`` seconds; a token
    whose key id is not in it makes it fetched again at once (the provider
    rotated its keys), at most every ``refetch_after`` seconds. While the
    URL cannot be fetched, keys already known keep working; a token whose key
    is not known then is refused with ``auth_unavailable`` (503), saying why.
    One fetch at a time: while it runs, a token whose key is known is verified
    with that key at once (a slow provider does not hold up every handshake
    when the set is due again); the others wait for its result.

    pyjwt's ``PyJWKClient`` does the same over blocking ``urllib`` (a thread
    per fetch); here the fetch is an ``httpx`` request on Trio and pyjwt
    parses the set (``PyJWKSet``).
    """

    def __init__(self, url: str, *, max_age: float = 300.0, timeout: float = 5.0,
                 refetch_after: float = 10.0) -> None:
        self.url = url
        self.max_age = max_age
        self.timeout = timeout
        #: Seconds between two fetches for an unknown key id, at least.
        self.refetch_after = refetch_after
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._fetching = False
        self._lock: trio.Lock | None = None  # made in the running loop
        self._client: httpx.AsyncClient | None = None  # made on first use
        self._last_error: str | None = None

    async def key(self, kid: str) -> jwt.PyJWK:
        now = trio.current_time()
        stale = self._fetched_at is None or now - self._fetched_at >= self.max_age
        if kid in self._keys and (not stale or self._fetching):
            return self._keys[kid]
        if self._lock is None:
            self._lock = trio.Lock()
        async with self._lock:
            now = trio.current_time()
            fetched_at = self._fetched_at
            due = (fetched_at is None or now - fetched_at >= self.max_age
                   or (kid not in self._keys and now - fetched_at >= self.refetch_after))
            if due:
                self._fetching = True
                try:
                    await self._fetch()
                finally:
                    self._fetching = False
        if kid in self._keys:
            return self._keys[kid]
        if self._last_error is not None:
            raise AuthError(f"the identity provider's keys could not be fetched "
                            f"({self._last_error})", code="auth_unavailable", status=503)
        raise AuthError(f"invalid token: no key {kid!r} in the identity provider's key set")

    async def _fetch(self) -> None:
        import httpx  # (only a server with a JWKS URL needs it: not imported at start)

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        try:
            with trio.fail_after(self.timeout):
                response = await self._client.get(self.url)
            response.raise_for_status()
            found = response.json()
            if not isinstance(found, dict):
                raise ValueError(f"a JSON {type(found).__name__}, not a JWK Set object")
            keys = jwt.PyJWKSet.from_dict(found).keys
        except (httpx.HTTPError, trio.TooSlowError, ValueError, RecursionError,
                jwt.PyJWTError) as exc:
            self._last_error = (f"{self.url}: timed out" if isinstance(exc, trio.TooSlowError)
                                else f"{self.url}: {type(exc).__name__}: {exc}"[:300])
            self._fetched_at = trio.current_time()  # not again before refetch_after
            log.warning("JWKS not fetched: %s", self._last_error)
            return
        self._keys = {key.key_id: key for key in keys if key.key_id}
        self._fetched_at = trio.current_time()
        self._last_error = None
        log.info("JWKS fetched from %s: %d keys", self.url, len(self._keys))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
