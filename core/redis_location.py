"""Where the cluster's Redis is: ``broker.url`` read into a :class:`Location`
(one server, Sentinel, or Redis Cluster). Imports no Redis client, so that a
config is checked without one."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

#: The schemes of ``broker.url`` this broker serves.
SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster", "rediss+cluster")


@attrs.frozen
class Location:
    """Where the cluster's Redis is, as ``broker.url`` says it."""

    kind: Literal["server", "sentinel", "cluster"]
    #: The servers named: one server, the sentinels, or the cluster's seed nodes.
    hosts: tuple[tuple[str, int], ...]
    #: Sentinel: the name of the monitored primary (``mymaster``).
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: Sentinel: the sentinels' own password (``?sentinel_password=``).
    sentinel_password: str | None = None


def parse_url(url: str) -> Location:
    """``broker.url`` -> :class:`Location`; a :class:`ValueError` says what is wrong.

    - ``redis://[user:password@]host[:6379][/db]`` (``rediss://`` for TLS)
    - ``redis+sentinel://[user:password@]host[:26379][,host[:26379]...]/service[/db]
      [?sentinel_password=...]``: the credentials are the primary's
    - ``redis+cluster://[user:password@]host[:6379][,host[:6379]...]``
      (``rediss+cluster://`` for TLS): seed nodes, the rest is discovered
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"expected one of {', '.join(s + '://' for s in SCHEMES)}")
    kind: Literal["server", "sentinel", "cluster"] = (
        "sentinel" if scheme.endswith("+sentinel")
        else "cluster" if scheme.endswith("+cluster") else "server")
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    default_port = 26379 if kind == "sentinel" else 6379
    hosts = []
    for item in hostlist.split(","):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not host:
            raise ValueError(f"no host in {item!r}")
        if port and not port.isdigit():
            raise ValueError(f"bad port in {item!r}")
        hosts.append((host, int(port) if port else default_port))
    if kind == "server" and len(hosts) > 1:
        raise ValueError("several hosts: use redis+sentinel:// or redis+cluster://")
    path = [p for p in parts.path.split("/") if p]
    service, db = "", 0
    if kind == "sentinel":
        if not path:
            raise ValueError("name the primary: redis+sentinel://host:26379/mymaster")
        service, path = path[0], path[1:]
    if path:
        if kind == "cluster":
            raise ValueError("Redis Cluster has no database number")
        if len(path) > 1 or not path[0].isdigit():
            raise ValueError(f"bad database {'/'.join(path)!r}: a number")
        db = int(path[0])
    query = parse_qs(parts.query)
    return Location(kind, tuple(hosts), service, db, username, password,
                    tls=scheme.startswith("rediss"),
                    sentinel_password=query.get("sentinel_password", [None])[0])
