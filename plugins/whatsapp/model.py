"""What the providers say, once parsed: the same values whichever provider
said it. Parsers (``cloud.py``, ``bridge.py``) turn webhook bodies into these;
``inbound.py`` and ``sessions.py`` act on them."""

from __future__ import annotations

from typing import Any, Literal

import attrs

#: A session's life: starting, waiting for its QR code to be scanned, linked,
#: unlinked for now, or logged out (a new QR scan is needed).
SessionStatus = Literal["connecting", "qr", "connected", "disconnected", "logged_out"]
SESSION_STATUSES: tuple[str, ...] = ("connecting", "qr", "connected", "disconnected",
                                     "logged_out")
ProviderName = Literal["cloud", "bridge"]
#: Where an outgoing message is: queued, being sent, accepted by WhatsApp, on the phone,
#: seen, or given up (with the provider's reason).
DeliveryStatus = Literal["pending", "sending", "sent", "delivered", "read", "failed"]
#: Order of the statuses a message moves through (failed stands apart).
STATUS_RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}


@attrs.frozen
class Contact:
    """A WhatsApp user as a webhook names them: ``wa_id`` (the number, digits
    only), their profile name and picture when the provider says them."""

    wa_id: str
    name: str | None = None
    picture: str | None = None


@attrs.frozen
class InboundMessage:
    """A message a contact sent: its provider id (unique per session), the
    chat type and content it is stored as, and the sender."""

    provider_id: str
    contact: Contact
    type: str
    content: dict[str, Any]
    timestamp: float | None = None


@attrs.frozen
class StatusUpdate:
    """The provider moved an outgoing message: ``sent``, ``delivered``,
    ``read`` or ``failed`` (with ``error``, the provider's reason)."""

    provider_id: str
    status: Literal["sent", "delivered", "read", "failed"]
    error: str | None = None


@attrs.frozen
class QrUpdate:
    """A (new) QR code to link the session's phone: the raw string to encode."""

    code: str


@attrs.frozen
class ConnectionUpdate:
    status: SessionStatus
    reason: str | None = None


@attrs.frozen
class ContactUpdate:
    """A contact's name or picture changed (no message)."""

    contact: Contact


Event = InboundMessage | StatusUpdate | QrUpdate | ConnectionUpdate | ContactUpdate


@attrs.frozen
class Outgoing:
    """A message to send: to a number, of a chat type, with its content."""

    to: str
    type: str
    content: dict[str, Any]


@attrs.frozen
class SendOutcome:
    """What a send came to: accepted (``provider_id``), worth trying again
    (``retry``, with the provider's ``retry_after`` seconds if it said), or
    refused for good (``error`` without ``retry``)."""

    provider_id: str | None = None
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None

    @property
    def accepted(self) -> bool:
        return self.provider_id is not None


def text_of(value: Any, limit: int = 4096) -> str | None:
    """``value`` if it is a non-blank string (cut to ``limit``, NUL removed)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.replace("\x00", "")[:limit]


def ident_of(value: Any) -> str | None:
    """``value`` as a provider's id: 1 to 200 printable characters, else None."""
    if not isinstance(value, str) or not 1 <= len(value) <= 200 or not value.isprintable():
        return None
    return value


def digits(value: Any) -> str | None:
    """A WhatsApp number as digits (``+55 11 9...``, ``5511...@s.whatsapp.net``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    number = value.split("@", 1)[0].split(":", 1)[0].lstrip("+")
    if not number.isascii() or not number.isdigit() or not 5 <= len(number) <= 20:
        return None
    return number
