"""The ``[plugins.whatsapp]`` settings."""

from __future__ import annotations

import ipaddress

import attrs


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def bridge_host_problem(host: str, addresses: list[str], allowed: list[str]) -> str | None:
    """Why a bridge on ``host`` (resolved to ``addresses``) may not be called,
    or None: every address must be public, or ``host`` or the address listed
    in ``allowed`` (``bridge_hosts``)."""
    if host.lower().rstrip(".") in (a.lower() for a in allowed):
        return None
    networks = [n for n in map(_network, allowed) if n is not None]
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if address.is_global or any(address in network for network in networks):
            continue
        return (f"{host} is on a non-public address ({address}): list it in "
                "plugins.whatsapp.bridge_hosts to allow it")
    return None


@attrs.frozen
class WhatsAppSettings:
    #: Base URL of the Graph API (the Cloud API provider sends there).
    graph_url: str = "https://graph.facebook.com"
    #: Graph API version in the messages endpoint's path.
    graph_version: str = "v21.0"
    #: Roles that may start, restart, log out and delete sessions over sockets.
    admin_roles: list[str] = attrs.Factory(lambda: ["admin"])
    #: Seconds a QR code is shown before it expires (unless the bridge rotates it).
    qr_lifetime: float = 60.0
    #: Seconds one call of a provider may take.
    timeout: float = 10.0
    #: Sends per second per number, at most.
    rate_per_number: float = 20.0
    #: Back-off after a failed send (429, 5xx, network): first and longest wait.
    retry_first: float = 1.0
    retry_longest: float = 300.0
    #: Tries of a send before it is marked failed.
    max_attempts: int = 12
    #: Largest media passed through ``GET .../media/{mediaId}``, in bytes.
    max_media_bytes: int = 16 * 1024 * 1024
    #: With the service desk on: the queue (its id in each tenant) in which a
    #: new contact's first message opens a ticket; "" opens none.
    ticket_queue: str = ""
    #: Where QR bridges may be besides the public internet: host names and
    #: networks (``"evolution.internal"``, ``"10.0.0.0/8"``, ``"127.0.0.1"``).
    #: A bridge URL (given over the HTTP API) on a loopback, private or
    #: link-local address not listed here is refused, so that an API key
    #: cannot make the server call into its own network.
    bridge_hosts: list[str] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        if not self.graph_url.startswith(("http://", "https://")):
            raise ValueError("graph_url: must be an http(s) URL")
        if self.qr_lifetime <= 0 or self.timeout <= 0 or self.rate_per_number <= 0 \
                or self.max_media_bytes <= 0:
            raise ValueError("qr_lifetime, timeout, rate_per_number and max_media_bytes "
                             "must be positive")
        for entry in self.bridge_hosts:
            if not isinstance(entry, str) or not entry or (
                    "/" in entry and _network(entry) is None):
                raise ValueError(f"bridge_hosts: {entry!r} is not a host name or a network")
        if self.max_attempts < 1 or not 0 < self.retry_first <= self.retry_longest:
            raise ValueError("max_attempts must be at least 1, and "
                             "0 < retry_first <= retry_longest")
