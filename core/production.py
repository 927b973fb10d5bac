"""Production configs: the file ``switchboard genconfig`` writes, and the
warnings of ``switchboard check-config`` about a config that loads but is not
fit for production (placeholder or weak secrets, development mode listening
on every interface)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from .config import Config
from .server import is_loopback

#: Shortest ``auth.secret`` not warned about: HS256 wants a key of at least
#: the hash's 256 bits (RFC 7518, section 3.2); 32 characters of a random
#: URL-safe string hold more than that.
MIN_SECRET_LENGTH = 32
#: The origin ``genconfig`` writes; check-config says to replace it.
PLACEHOLDER_ORIGIN = "https://app.example.com"
#: Words that give a value away as a placeholder, not a secret.
_PLACEHOLDER_WORDS = ("replace", "change", "example", "placeholder", "your-", "your_",
                      "xxxx", "todo", "secret", "password")
#: Plugin settings that hold a secret, by the end of their name.
_SECRET_NAMES = ("secret", "password", "token", "api_key", "key")
#: Addresses that listen on every interface.
_EVERY_INTERFACE = ("0.0.0.0", "::", "")


def generate_config(now: datetime | None = None) -> str:
    """A production config with new random secrets, as TOML text."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    secret = secrets.token_urlsafe(48)
    api_key = secrets.token_urlsafe(32)
    admin_password = secrets.token_urlsafe(18)
    admin_secret = secrets.token_urlsafe(48)
    return f'''\
# Switchboard production config, written by `switchboard genconfig` on {when}.
# It holds secrets: keep it readable by the service's user only.
# Check it with `switchboard check-config FILE`, then run
# `switchboard serve --config FILE`. Every setting, with its default, is in
# config/switchboard.toml of the source; SWITCHBOARD_SECTION__KEY variables
# override this file (e.g. SWITCHBOARD_AUTH__SECRET).

mode = "production"
# SQLite database (unless store.url is set); relative to this file's directory.
data_dir = "data"

# Keys of your backend for the HTTP API (POST /api/v1/emit, stats, plugin
# routes): send it as `Authorization: Bearer KEY`. tenant = "*" may use every
# tenant; add one entry per backend or per tenant.
api_keys = [
  {{ key = "{api_key}", tenant = "*", name = "backend" }},
]

[server]
# 127.0.0.1 behind a reverse proxy on the same machine (TLS at the proxy);
# "0.0.0.0" to listen on every interface (in a container).
host = "127.0.0.1"
port = 8080
# Browser origins allowed to connect: replace with your frontends' origins.
allowed_origins = ["{PLACEHOLDER_ORIGIN}"]
# The reverse proxy's address (the one in front, as Switchboard sees it):
# its X-Forwarded-For then names each client, for the limits kept per
# address (new guests, admin logins) and the logs. Empty: no proxy.
trusted_proxies = ["127.0.0.1"]

[auth]
# HS256 secret the tokens of your users are signed with: your backend signs
# them with the same secret (or use public_key / jwks_url instead).
secret = "{secret}"

[store]
# Empty: SQLite in data_dir (one node). PostgreSQL for production:
# url = "postgresql+psycopg://switchboard:PASSWORD@db.internal:5432/switchboard"
url = ""

[broker]
# memory:// for one node; redis://host:6379/0 for several.
url = "memory://"

[admin]
# The admin console (live connections, rooms, presence, errors): off while
# path is empty. To turn it on, set path = "/admin" and serve it over HTTPS
# (a proxy in front). Give every node behind one address the same secret.
path = ""
password = "{admin_password}"
secret = "{admin_secret}"
secure_cookie = true
'''


def warnings(config: Config) -> list[str]:
    """What is wrong with a valid config for production, one line each."""
    found: list[str] = []
    auth = config.auth
    if auth.secret:
        if _placeholder(auth.secret):
            found.append("auth.secret looks like a placeholder: set a random secret "
                         "(switchboard genconfig writes one)")
        elif len(auth.secret) < MIN_SECRET_LENGTH:
            found.append(f"auth.secret is weak: {len(auth.secret)} characters, use at least "
                         f"{MIN_SECRET_LENGTH} random ones")
    for i, key in enumerate(config.api_keys):
        if _placeholder(key.key):
            found.append(f"api_keys.{i}.key{_named(key.name)} looks like a placeholder: "
                         "set a random key")
    for setting, value in _plugin_secrets(config.plugins):
        if _placeholder(value):
            found.append(f"{setting} looks like a placeholder: set a random value")
    if config.mode == "development" and config.server.host in _EVERY_INTERFACE:
        found.append(f"development mode listening on {config.server.host or 'every address'}: "
                     "other machines reach a server with development settings (tokens "
                     "without expiry accepted, no secret required); set mode = "
                     "\"production\" with auth.secret, or listen on 127.0.0.1")
    if PLACEHOLDER_ORIGIN in config.server.allowed_origins:
        found.append(f"server.allowed_origins holds the placeholder {PLACEHOLDER_ORIGIN}: "
                     "list your frontends' origins")
    if config.mode == "production" and "*" in config.server.allowed_origins:
        found.append("server.allowed_origins allows every origin (\"*\"): any web page may "
                     "connect with a user's token; list your frontends' origins")
    found += _admin_warnings(config)
    return found


def _admin_warnings(config: Config) -> list[str]:
    """What makes a console that is on (``admin.path`` set) unfit for production."""
    admin = config.admin
    if not admin.path:
        return []
    found = []
    if admin.password and _placeholder(admin.password):
        found.append("admin.password looks like a placeholder: set a random password "
                     "(switchboard genconfig writes one)")
    if admin.secret and _placeholder(admin.secret):
        found.append("admin.secret looks like a placeholder: set a random value")
    if config.mode == "production":
        if not admin.secret:
            found.append("admin.secret is empty: a random one is made at every start, so "
                         "console logins end with a restart and work on one node only; "
                         "set the same random secret on every node")
        if not admin.secure_cookie and not is_loopback(config.server.host):
            found.append(f"admin.secure_cookie is false while listening on "
                         f"{config.server.host or 'every address'}: the console's login "
                         "cookie may travel unencrypted; serve it over HTTPS and set "
                         "admin.secure_cookie = true")
    return found


def _named(name: str) -> str:
    return f" ({name})" if name else ""


def _placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(word in lowered for word in _PLACEHOLDER_WORDS)


def _plugin_secrets(plugins: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(dotted key, value)`` of every string plugin setting named like a secret."""
    def walk(prefix: str, table: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        for name, value in table.items():
            key = f"{prefix}.{name}"
            if isinstance(value, Mapping):
                yield from walk(key, value)
            elif isinstance(value, str) and value and name.lower().endswith(_SECRET_NAMES):
                yield key, value

    for name, section in plugins.items():
        if isinstance(section, Mapping):
            yield from walk(f"plugins.{name}", section)
