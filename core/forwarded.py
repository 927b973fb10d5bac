"""The client's address behind a reverse proxy (``server.trusted_proxies``).

Behind a proxy or load balancer every connection comes from the proxy's
address, and what is kept per address (the guests' limit on new visitors,
the admin console's login attempts) would be kept for all clients at once.
A proxy tells the client's address in ``X-Forwarded-For``, appending the
address it was connected from to what the request already held; a client
can put anything there itself. So the header is read only when the
connection comes from a trusted proxy, and from the right: the rightmost
address that is not a trusted proxy's is the client's (each trusted proxy
vouches for the entry it appended, nobody vouches for those further left).
Entries that are not IP addresses (``unknown``, an obfuscated identifier) end
the walk at the last address known. Sans-IO but for :func:`forwarded_asgi`,
an ASGI wrapper that does the same for the web framework's requests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Entries of ``X-Forwarded-For`` looked at, from the right, at most.
MAX_HOPS = 32


def parse_network(entry: str) -> Network:
    """A trusted proxy as configured: an address or a network (``10.0.0.0/8``);
    :class:`ValueError` if it is neither."""
    return ipaddress.ip_network(entry.strip(), strict=False)


def parse_address(entry: str) -> Address | None:
    """An ``X-Forwarded-For`` entry as an address (``203.0.113.7``,
    ``203.0.113.7:4711``, ``2001:db8::1``, ``[2001:db8::1]:4711``, quoted or
    not); None for anything else."""
    text = entry.strip().strip('"')
    if text.startswith("["):
        text, bracket, _port = text[1:].partition("]")
        if not bracket:
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed."""

    __slots__ = ("_networks",)

    def __init__(self, entries: Sequence[str] = ()) -> None:
        self._networks = tuple(parse_network(entry) for entry in entries)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self._networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address, given the connection's ``peer`` address and the
        request's ``X-Forwarded-For`` (its lines joined with commas)."""
        if not self._networks or peer is None or not forwarded_for:
            return peer
        current = parse_address(peer)
        if current is None or not self.trusts(current):
            return peer
        for entry in forwarded_for.split(",")[-MAX_HOPS:][::-1]:
            address = parse_address(entry)
            if address is None:
                break
            current = address
            if not self.trusts(current):
                break
        return str(current)


ASGIApp = Callable[[MutableMapping[str, Any], Callable[..., Awaitable[Any]],
                    Callable[..., Awaitable[Any]]], Awaitable[None]]


def forwarded_asgi(app: ASGIApp, proxies: TrustedProxies) -> ASGIApp:
    """``app`` seeing the client's address as its requests' ``client`` (what
    ``request.remote_addr`` reads), when they come from a trusted proxy."""

    async def asgi(scope: MutableMapping[str, Any], receive: Callable[..., Awaitable[Any]],
                   send: Callable[..., Awaitable[Any]]) -> None:
        peer = scope.get("client")
        if scope.get("type") in ("http", "websocket") and peer:
            values = [value.decode("latin-1") for name, value in scope.get("headers", ())
                      if name.lower() == b"x-forwarded-for"]
            client = proxies.client(peer[0], ", ".join(values))
            if client != peer[0]:
                scope = {**scope, "client": (client, 0)}
        await app(scope, receive, send)

    return asgi


__all__ = ["MAX_HOPS", "TrustedProxies", "forwarded_asgi", "parse_address", "parse_network"]
