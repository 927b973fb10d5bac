"""The ``syszap`` profile: seed 003's sysZap frontend on the plain WebSocket.

Bind it to ``/ws`` (``[server] ws_profile = "syszap"``). The frontend gets
the whatsapp plugin's announcements in its own names and shapes, as its
Fastify server sent them:

- ``whatsapp:qr`` -> ``qr_code {sessionId, qrCode, timestamp}`` (``qrCode``
  the PNG as a base64 data URL);
- ``whatsapp:session`` -> ``session_status {sessionId, status, timestamp}``
  (``logged_out`` and ``deleted`` as ``disconnected``, sysZap's four states);
- ``whatsapp:message`` -> ``new_message {Id, Chat_Id, Direction, Type, Body,
  Chat: {WA_Chat_Id}, Client: {Name, WhatsApp_Number}, timestamp}``;
- ``whatsapp:contact`` -> ``new_client`` for a new contact, ``client_update``
  for a changed name or picture.

Canonical events still reach the frontend under their own names (it ignores
what it does not know).
"""

from __future__ import annotations

import datetime
from typing import Any

from switchboard.core import Profile

from . import events

#: sysZap's message types, as numbers.
MESSAGE_TYPES = {"text": 0, "image": 1, "audio": 2, "video": 3, "document": 4}
SYSZAP_STATUSES = {"connecting": "connecting", "qr": "qr", "connected": "connected"}


def _iso(timestamp: Any) -> str:
    moment = timestamp if isinstance(timestamp, int | float) else 0
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


def _qr_code(data: dict[str, Any]) -> tuple[str, Any]:
    return "qr_code", {"sessionId": data["sessionId"], "qrCode": data["png"],
                       "timestamp": _iso(data.get("timestamp"))}


def _session_status(data: dict[str, Any]) -> tuple[str, Any]:
    return "session_status", {"sessionId": data["sessionId"],
                              "status": SYSZAP_STATUSES.get(data["status"], "disconnected"),
                              "timestamp": _iso(data.get("timestamp"))}


def _new_message(data: dict[str, Any]) -> tuple[str, Any]:
    message = data["message"]
    contact = data["contact"]
    content = message.get("content") or {}
    number = contact["waId"]
    return "new_message", {
        "Id": str(message["id"]),
        "Chat_Id": message["conversationId"],
        "Direction": 0 if data["direction"] == "in" else 1,
        "Type": MESSAGE_TYPES.get(message.get("type", "text"), 0),
        "Body": content.get("text") or content.get("caption") or content.get("url", ""),
        "Chat": {"WA_Chat_Id": f"{number}@c.us"},
        "Client": {"Name": contact.get("name") or f"+{number}", "WhatsApp_Number": number},
        "timestamp": _iso(message.get("createdAt")),
    }


def _client(data: dict[str, Any]) -> tuple[str, Any]:
    client = {"Id": data["userId"], "Name": data.get("name") or f"+{data['waId']}",
              "WhatsApp_Number": data["waId"], "Profile_Pic_URL": data.get("picture")}
    if data.get("created"):
        return "new_client", client | {"Company_Id": data.get("tenant"),
                                       "timestamp": _iso(data.get("lastContactAt"))}
    return "client_update", client | {"Last_Contact_At": _iso(data.get("lastContactAt")),
                                      "timestamp": _iso(data.get("lastContactAt"))}


SYSZAP = Profile(
    name="syszap",
    doc="sysZap frontend (plain WebSocket): qr_code, session_status, new_message, "
        "new_client, client_update.",
    outbound={
        events.QR: _qr_code,
        events.SESSION: _session_status,
        events.MESSAGE: _new_message,
        events.CONTACT: _client,
    },
)
