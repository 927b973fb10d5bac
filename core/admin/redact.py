"""Settings as the console shows them: every secret replaced (sans-IO).

A value is hidden when its key names a secret (``secret``, ``password``,
``token``, ``key``, ``headers``...), with everything under it; a URL keeps
its scheme, host and path but loses its user, password and query.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

#: What a hidden value is shown as.
HIDDEN = "(hidden)"
#: Key names (or parts of them, between ``_``) whose values are secrets.
_SECRET_WORDS = frozenset({
    "secret", "secrets", "password", "passwd", "passphrase", "token", "tokens", "key", "keys",
    "apikey", "credential", "credentials", "private", "auth", "authorization", "cookie",
    "cookies", "signature", "headers", "dsn", "salt", "pin",
})
#: Keys that end in a secret word without holding one.
_NOT_SECRET = re.compile(r".*_(ttl|ttls|length|lifetime|claim|size|count|header_name)$")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether a setting named ``key`` holds a secret (``api_key``,
    ``webhook_secret``, ``headers``; not ``token_ttl``)."""
    lowered = key.lower()
    if _NOT_SECRET.fullmatch(lowered):
        return False
    words = set(re.split(r"[_\-.]", lowered))
    return bool(words & _SECRET_WORDS) or lowered.replace("_", "") in _SECRET_WORDS


def redact_url(value: str) -> str:
    """``value`` without the user, password and query of a URL in it."""
    if not _URL.match(value):
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return HIDDEN
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = f"{HIDDEN}@{netloc}"
    query = HIDDEN if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact(value: Any, key: str = "") -> Any:
    """A JSON-able copy of ``value`` (attrs instances, dicts, lists, scalars)
    with the secrets hidden; ``key`` is the name it is held under."""
    if key and is_secret_key(key) and value not in (None, "", [], {}, False):
        return HIDDEN
    if attrs.has(type(value)):
        return {field.name: redact(getattr(value, field.name), field.name)
                for field in attrs.fields(type(value))}
    if isinstance(value, dict):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item, key) for item in value]
    if isinstance(value, str):
        return redact_url(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return repr(value)
