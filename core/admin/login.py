"""The console's login: password check, signed session cookies, CSRF tokens
and the login rate limit (no I/O: the routes carry the cookies).

A session is a cookie signed with ``admin.secret`` (itsdangerous), holding a
random session id and the session's CSRF token; it expires after
``admin.session_ttl`` and a logout revokes it. The login form has its own
short-lived signed cookie and token, so that another site cannot log a
browser in either. Every comparison of a secret is in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterable

import attrs
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..config import AdminConfig, ApiKey
from ..ratelimit import TokenBucket

#: The session cookie and the login form's cookie.
SESSION_COOKIE = "switchboard_admin"
LOGIN_COOKIE = "switchboard_admin_login"
#: Seconds a login form may be used.
LOGIN_FORM_TTL = 900
#: Client addresses whose login attempts are counted at once, at most.
MAX_TRACKED = 10_000


@attrs.frozen
class AdminSession:
    """A logged-in console: its id and the CSRF token its forms carry."""

    id: str
    csrf: str


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def same_secret(a: str, b: str) -> bool:
    """Whether two secrets are equal, in time independent of where they differ
    (and of their lengths: digests are compared)."""
    return hmac.compare_digest(_digest(a), _digest(b))


class Logins:
    """Checks passwords and cookies of one console."""

    def __init__(self, config: AdminConfig, api_keys: Iterable[ApiKey]) -> None:
        self._password = config.password
        self._keys = [key.key for key in api_keys if key.tenant == "*"] if config.api_keys else []
        self._ttl = config.session_ttl
        secret = config.secret or secrets.token_urlsafe(32)
        signer = {"digest_method": hashlib.sha256}
        self._sessions = URLSafeTimedSerializer(secret, salt="switchboard-admin-session",
                                                signer_kwargs=signer)
        self._forms = URLSafeTimedSerializer(secret, salt="switchboard-admin-login",
                                             signer_kwargs=signer)
        self._rate = config.login_rate
        self._buckets: dict[str, TokenBucket] = {}
        #: Session id -> UNIX time its cookie expires anyway (then forgotten).
        self._revoked: dict[str, float] = {}

    # -- passwords -----------------------------------------------------------

    def password_ok(self, presented: str) -> bool:
        """Whether ``presented`` is the console's password (or an API key for
        every tenant, with ``admin.api_keys``); every candidate is compared."""
        ok = False
        for candidate in [self._password, *self._keys]:
            if candidate and same_secret(candidate, presented):
                ok = True
        return ok and bool(presented)

    def attempt(self, address: str) -> float | None:
        """Count a login attempt from ``address``: None when allowed, else the
        seconds to wait."""
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._buckets.clear()  # a flood of addresses: start counting again
            bucket = self._buckets[address] = TokenBucket.of(self._rate)
        if bucket.try_take():
            return None
        return max(bucket.retry_after(), 1.0)

    # -- the login form --------------------------------------------------------

    def new_form(self) -> tuple[str, str]:
        """A login form's (cookie, token): the form posts the token back."""
        token = secrets.token_urlsafe(24)
        return self._forms.dumps(token), token

    def form_ok(self, cookie: str | None, token: str) -> bool:
        """Whether a posted login form carries the token of its cookie."""
        if not cookie or not token:
            return False
        try:
            expected = self._forms.loads(cookie, max_age=LOGIN_FORM_TTL)
        except BadSignature:
            return False
        return isinstance(expected, str) and same_secret(expected, token)

    # -- sessions --------------------------------------------------------------

    def open(self) -> tuple[str, AdminSession]:
        """A new session and its cookie's value."""
        session = AdminSession(secrets.token_urlsafe(18), secrets.token_urlsafe(24))
        return self._sessions.dumps([session.id, session.csrf]), session

    def session(self, cookie: str | None) -> AdminSession | None:
        """The session of a cookie: None when there is none, it is forged,
        expired or logged out."""
        if not cookie:
            return None
        try:
            value = self._sessions.loads(cookie, max_age=math.ceil(self._ttl))
        except BadSignature:
            return None
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, str) for v in value)):
            return None
        if value[0] in self._revoked:
            return None
        return AdminSession(value[0], value[1])

    def close(self, session: AdminSession) -> float:
        """Log a session out: its cookie is refused from now on. Returns the UNIX
        time until which it must be remembered (its cookie expires then anyway)."""
        until = time.time() + self._ttl
        self.revoke(session.id, until)
        return until

    def revoke(self, session_id: str, until: float) -> None:
        """Refuse the cookies of session ``session_id`` until ``until`` (UNIX
        time): a logout here, or on another node of the cluster."""
        now = time.time()
        self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
        if until > now:
            self._revoked[session_id] = min(until, now + self._ttl)

    @staticmethod
    def csrf_ok(session: AdminSession, presented: str | None) -> bool:
        """Whether a request of ``session`` carries its CSRF token."""
        return bool(presented) and same_secret(session.csrf, presented or "")
