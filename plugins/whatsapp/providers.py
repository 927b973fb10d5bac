"""The two providers behind one interface: the Cloud API and a QR bridge.

A :class:`Provider` is made from a session's stored settings. It checks a
webhook's authenticity, parses it into :mod:`model` events (the sans-IO
parts are ``cloud.py`` and ``bridge.py``), sends messages and, for a bridge,
drives the linked device (connect, restart, log out). Calls go out with
httpx on Trio, bounded by ``timeout``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs
import httpx
import trio
from attrs.validators import instance_of
from switchboard.core import identifier, max_length

from . import bridge, cloud
from .model import ConnectionUpdate, Event, Outgoing, SendOutcome
from .settings import WhatsAppSettings, bridge_host_problem


def _http_url(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith(("http://", "https://")) or len(value) > 500:
        raise ValueError("must be an http(s) URL of at most 500 characters", attribute)


def _secret(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not 1 <= len(value) <= 1000 or not value.isprintable():
        raise ValueError("must be 1 to 1000 printable characters", attribute)


def _digits(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.isascii() or not value.isdigit() or not 1 <= len(value) <= 30:
        raise ValueError("must be 1 to 30 digits", attribute)


@attrs.frozen
class CloudConfig:
    """A number of the WhatsApp Cloud API."""

    phoneNumberId: str = attrs.field(validator=[instance_of(str), _digits])
    accessToken: str = attrs.field(validator=[instance_of(str), _secret])
    #: The Meta app's secret: webhooks are signed with it.
    appSecret: str = attrs.field(validator=[instance_of(str), _secret])
    #: What the subscription handshake must present as ``hub.verify_token``.
    verifyToken: str = attrs.field(validator=[instance_of(str), _secret])


@attrs.frozen
class BridgeConfig:
    """An instance of a QR-linked device bridge (Evolution API's shape)."""

    url: str = attrs.field(validator=[instance_of(str), _http_url])
    apiKey: str = attrs.field(validator=[instance_of(str), _secret])
    instance: str = attrs.field(validator=[instance_of(str), identifier, max_length(100)])


async def bridge_url_problem(url: str, settings: WhatsAppSettings) -> str | None:
    """Why the server may not call a bridge at ``url``, or None: its host must
    be public or listed in ``bridge_hosts`` (checked on every call too, so a
    name that later resolves to an inner address is refused then)."""
    host = urlsplit(url).hostname
    if not host:
        return "the URL has no host"
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host.lower().rstrip(".") in (h.lower() for h in settings.bridge_hosts):
            return None
        try:
            found = await trio.socket.getaddrinfo(host, None, type=trio.socket.SOCK_STREAM)
        except OSError:
            return None  # not resolvable (yet): the call fails as unreachable
        addresses = [str(info[4][0]) for info in found]
    return bridge_host_problem(host, addresses, settings.bridge_hosts)


class ProviderError(Exception):
    """A provider call that did not work: ``retry`` if worth trying again."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class MediaNotFound(Exception):
    """The provider knows no such media (or no longer: Cloud API media expire)."""


class MediaTooLarge(Exception):
    """The media is larger than ``max_media_bytes``."""


class Provider(Protocol):
    name: str

    def authentic(self, body: bytes, headers: Mapping[str, str], parsed: Any) -> bool:
        """Whether a webhook really comes from this session's provider."""
        ...

    def parse(self, parsed: Any) -> list[Event]:
        """The events of an authentic webhook body."""
        ...

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendOutcome:
        ...

    async def start(self, client: httpx.AsyncClient) -> list[Event]:
        """Start (or link) the session; the events that says at once."""
        ...

    async def restart(self, client: httpx.AsyncClient) -> list[Event]:
        ...

    async def logout(self, client: httpx.AsyncClient) -> None:
        ...


class CloudProvider:
    name = "cloud"

    def __init__(self, config: CloudConfig, settings: WhatsAppSettings) -> None:
        self.config = config
        self.settings = settings
        self.base = f"{settings.graph_url.rstrip('/')}/{settings.graph_version}"

    def authentic(self, body: bytes, headers: Mapping[str, str], parsed: Any) -> bool:
        return cloud.signature_ok(self.config.appSecret, body,
                                  headers.get("X-Hub-Signature-256"))

    def parse(self, parsed: Any) -> list[Event]:
        return cloud.parse_webhook(parsed, self.config.phoneNumberId, self.base)

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendOutcome:
        url, headers, body = cloud.send_request(self.base, self.config.phoneNumberId,
                                                self.config.accessToken, message)
        status, answer_headers, answer = await _call(client, "POST", url, headers, body,
                                                     self.settings.timeout)
        return cloud.send_outcome(status, answer_headers, answer)

    async def media(self, client: httpx.AsyncClient, media_id: str,
                    limit: int) -> tuple[str, bytes]:
        """A customer's media: its MIME type and bytes (the Graph API says
        where to download it, with the same token)."""
        auth = {"Authorization": f"Bearer {self.config.accessToken}"}
        try:
            status, _, answer = await _call(client, "GET", f"{self.base}/{media_id}", auth,
                                            None, self.settings.timeout)
        except _Unreachable as exc:
            raise ProviderError(str(exc), retry=True) from None
        url = answer.get("url") if isinstance(answer, dict) else None
        if status in (400, 404) or (200 <= status < 300 and not isinstance(url, str)):
            raise MediaNotFound(media_id)
        if not 200 <= status < 300 or not isinstance(url, str) \
                or not url.startswith(("http://", "https://")):
            raise ProviderError(f"the Graph API answered HTTP {status} for the media",
                                retry=status >= 500)
        mime = answer.get("mime_type") if isinstance(answer.get("mime_type"), str) \
            else "application/octet-stream"
        try:
            with trio.fail_after(self.settings.timeout):
                async with client.stream("GET", url, headers=auth) as response:
                    if not 200 <= response.status_code < 300:
                        raise ProviderError(f"the media download answered HTTP "
                                            f"{response.status_code}", retry=True)
                    data = await _read_at_most(response, limit, lambda: MediaTooLarge(limit))
        except trio.TooSlowError:
            raise ProviderError(f"no media within {self.settings.timeout} s",
                                retry=True) from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}"[:300], retry=True) from None
        return mime, data

    async def start(self, client: httpx.AsyncClient) -> list[Event]:
        # A Cloud API number has no device to link: it is there once the Graph
        # API knows it with this token.
        url = f"{self.base}/{self.config.phoneNumberId}?fields=display_phone_number"
        try:
            status, _, answer = await _call(
                client, "GET", url, {"Authorization": f"Bearer {self.config.accessToken}"},
                None, self.settings.timeout)
        except _Unreachable as exc:
            raise ProviderError(str(exc), retry=True) from None
        if not 200 <= status < 300:
            refused = cloud.send_outcome(status, {}, answer)
            raise ProviderError(f"the Graph API refused the number: {refused.error}",
                                retry=refused.retry)
        return [ConnectionUpdate("connected")]

    async def restart(self, client: httpx.AsyncClient) -> list[Event]:
        return await self.start(client)

    async def logout(self, client: httpx.AsyncClient) -> None:
        return None


class BridgeProvider:
    name = "bridge"

    def __init__(self, config: BridgeConfig, settings: WhatsAppSettings) -> None:
        self.config = config
        self.settings = settings
        self.base = config.url.rstrip("/")
        self.headers = {"apikey": config.apiKey, "Content-Type": "application/json"}

    def authentic(self, body: bytes, headers: Mapping[str, str], parsed: Any) -> bool:
        return bridge.key_ok(parsed, self.config.apiKey)

    def parse(self, parsed: Any) -> list[Event]:
        return bridge.parse_webhook(parsed, self.config.instance)

    async def _check(self) -> None:
        problem = await bridge_url_problem(self.base, self.settings)
        if problem is not None:
            raise ProviderError(f"refused: {problem}", retry=False)

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendOutcome:
        await self._check()
        url, headers, body = bridge.send_request(self.base, self.config.instance,
                                                 self.config.apiKey, message)
        status, answer_headers, answer = await _call(client, "POST", url, headers, body,
                                                     self.settings.timeout)
        return bridge.send_outcome(status, answer_headers, answer)

    async def _instance(self, client: httpx.AsyncClient, method: str, path: str) -> Any:
        await self._check()
        try:
            status, _, answer = await _call(
                client, method, f"{self.base}/instance/{path}/{self.config.instance}",
                self.headers, None, self.settings.timeout)
        except _Unreachable as exc:
            raise ProviderError(str(exc), retry=True) from None
        if not 200 <= status < 300:
            raise ProviderError(f"the bridge answered HTTP {status} to {path}",
                                retry=status >= 500)
        return answer

    async def start(self, client: httpx.AsyncClient) -> list[Event]:
        answer = await self._instance(client, "GET", "connect")
        qr = bridge.connect_qr(answer)
        instance = answer.get("instance") if isinstance(answer, dict) else None
        state = instance.get("state") if isinstance(instance, dict) else None
        if state == "open":
            return [ConnectionUpdate("connected")]
        return [ConnectionUpdate("connecting"), *([qr] if qr else [])]

    async def restart(self, client: httpx.AsyncClient) -> list[Event]:
        await self._instance(client, "POST", "restart")
        return [ConnectionUpdate("connecting")]

    async def logout(self, client: httpx.AsyncClient) -> None:
        await self._instance(client, "DELETE", "logout")


class _Unreachable(Exception):
    pass


#: Bytes of a provider's answer to a call, at most (its JSON is small: a
#: message id, a session's state, a QR code).
MAX_ANSWER = 1 << 20


async def _read_at_most(response: httpx.Response, limit: int,
                        too_large: Callable[[], Exception]) -> bytes:
    """The body of a streamed ``response``; ``too_large()`` is raised as soon as
    it passes ``limit`` bytes (what came is not kept)."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            raise too_large()
        parts.append(part)
    return b"".join(parts)


async def _call(client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str],
                body: Any, timeout: float) -> tuple[int, Mapping[str, str], Any]:
    """One HTTP call: its status, headers and JSON answer (None if not JSON).
    A network error or no answer within ``timeout`` is an :class:`_Unreachable`
    (which a send turns into a retry)."""
    try:
        with trio.fail_after(timeout):
            async with client.stream(method, url, headers=headers,
                                     content=None if body is None
                                     else json.dumps(body).encode()) as response:
                # (a bridge is a tenant's: its answer must not fill the memory)
                content = await _read_at_most(response, MAX_ANSWER, lambda: _Unreachable(
                    f"an answer over {MAX_ANSWER} bytes"))
    except trio.TooSlowError:
        raise _Unreachable(f"no answer within {timeout} s") from None
    except httpx.HTTPError as exc:
        raise _Unreachable(f"{type(exc).__name__}: {exc}"[:300]) from None
    try:
        answer = json.loads(content) if content else None
    except (ValueError, RecursionError):  # (not JSON, or nested past the parser's depth)
        answer = None
    return response.status_code, response.headers, answer


async def send(provider: Provider, client: httpx.AsyncClient,
               message: Outgoing) -> SendOutcome:
    """Send through ``provider``; a network failure is an outcome worth a retry,
    a refused destination one that is not."""
    try:
        return await provider.send(client, message)
    except _Unreachable as exc:
        return SendOutcome(error=str(exc), retry=True)
    except ProviderError as exc:
        return SendOutcome(error=str(exc), retry=exc.retry)


def make_provider(name: str, config: Mapping[str, Any],
                  settings: WhatsAppSettings) -> Provider:
    """The provider of a stored session."""
    if name == "cloud":
        return CloudProvider(CloudConfig(**config), settings)
    return BridgeProvider(BridgeConfig(**config), settings)
