"""The whatsapp plugin's socket events: what it announces to the tenant's
agents, and the session commands of admin roles."""

from __future__ import annotations

import attrs
from switchboard.core import identifier, max_length

#: To ``tenant:{id}:agents``: a session's state moved.
SESSION = "whatsapp:session"
#: To ``tenant:{id}:agents``: a (new) QR code to scan.
QR = "whatsapp:qr"
#: To ``tenant:{id}:agents``: the QR code shown is no longer valid.
QR_EXPIRED = "whatsapp:qr_expired"
#: To ``tenant:{id}:agents``: a contact was created, or its name or picture changed.
CONTACT = "whatsapp:contact"
#: To ``tenant:{id}:agents``: a message of a WhatsApp conversation, in or out.
MESSAGE = "whatsapp:message"
#: To ``conversation:{id}``: a sent message's delivery status moved.
STATUS = "message:status"

COMMANDS = ("start", "restart", "logout", "delete")


def _session_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.isascii() or not value.replace("-", "").replace("_", "").isalnum() \
            or not 1 <= len(value) <= 64:
        raise ValueError("must be 1 to 64 letters, digits, - and _", attribute)


@attrs.frozen
class SessionRef:
    sessionId: str = attrs.field(validator=[identifier, max_length(64), _session_id])
