"""The ``[plugins.whatsapp]`` settings."""

from __future__ import annotations

import attrs


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

    def __attrs_post_init__(self) -> None:
        if not self.graph_url.startswith(("http://", "https://")):
            raise ValueError("graph_url: must be an http(s) URL")
        if self.qr_lifetime <= 0 or self.timeout <= 0 or self.rate_per_number <= 0 \
                or self.max_media_bytes <= 0:
            raise ValueError("qr_lifetime, timeout, rate_per_number and max_media_bytes "
                             "must be positive")
        if self.max_attempts < 1 or not 0 < self.retry_first <= self.retry_longest:
            raise ValueError("max_attempts must be at least 1, and "
                             "0 < retry_first <= retry_longest")
