"""What the admin console's tests share: its config and logging in to it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from switchboard.core.config import Config
from switchboard.testing import TEST_API_KEY, make_config

PASSWORD = "correct horse battery staple"
CONSOLE = "/admin"


def console_config(overrides: dict[str, Any] | None = None) -> Config:
    """The test config with the console at ``/admin``, behind :data:`PASSWORD`."""
    rest = dict(overrides or {})
    admin = {"path": CONSOLE, "password": PASSWORD, **rest.pop("admin", {})}
    return make_config({"admin": admin, **rest})


def form_token(html: str) -> str:
    """The CSRF token of the (first) form of a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def page_token(html: str) -> str:
    """The CSRF token the console page gives its script."""
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "no CSRF token in the console page"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    """Fetch the login form and post it: the answer to the post."""
    form = await client.get(f"{CONSOLE}/login")
    assert form.status_code == 200
    return await client.post(f"{CONSOLE}/login",
                             data={"csrf": form_token(form.text), "password": password})


async def logged_in(client: httpx.AsyncClient) -> str:
    """Log ``client`` in; the CSRF token of its session."""
    answer = await log_in(client)
    assert answer.status_code == 303, answer.text
    page = await client.get(f"{CONSOLE}/")
    assert page.status_code == 200
    return page_token(page.text)


__all__ = ["CONSOLE", "PASSWORD", "TEST_API_KEY", "console_config", "form_token",
           "log_in", "logged_in", "page_token"]
