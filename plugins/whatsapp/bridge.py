"""A QR-linked device bridge speaking the Evolution API (v2), sans-IO: its
webhooks (``qrcode.updated``, ``connection.update``, ``messages.upsert``,
``messages.update``, ``contacts.update``), its send endpoints and its instance calls (connect,
restart, log out).

The bridge puts its API key in every webhook body (``apikey``); a webhook
without the session's key is refused. Event names come as ``qrcode.updated``
or, with webhooks by event, ``QRCODE_UPDATED``: both are understood.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from .cloud import _dict, _number
from .model import (
    ConnectionUpdate,
    Contact,
    ContactUpdate,
    Event,
    InboundMessage,
    Outgoing,
    QrUpdate,
    SendOutcome,
    StatusUpdate,
    digits,
    ident_of,
    text_of,
)

#: The bridge's message acks, as delivery statuses.
ACKS = {"SERVER_ACK": "sent", "DELIVERY_ACK": "delivered", "READ": "read", "PLAYED": "read",
        "ERROR": "failed"}
MEDIA = {"imageMessage": "image", "videoMessage": "video", "audioMessage": "audio",
         "documentMessage": "document", "stickerMessage": "image"}


def event_name(body: Any) -> str:
    name = _dict(body).get("event")
    return name.lower().replace("_", ".") if isinstance(name, str) else ""


def key_ok(body: Any, api_key: str) -> bool:
    """Whether the webhook body carries the session's API key."""
    given = _dict(body).get("apikey")
    return isinstance(given, str) and bool(api_key) and hmac.compare_digest(
        given.encode(), api_key.encode())


def parse_webhook(body: Any, instance: str) -> list[Event]:
    """The events of a webhook body of ``instance`` (another instance's body,
    or anything malformed, gives none)."""
    body = _dict(body)
    if body.get("instance") not in (instance, None):
        return []
    name = event_name(body)
    data = body.get("data")
    events: list[Event] = []
    if name == "qrcode.updated":
        qrcode = _dict(_dict(data).get("qrcode")) or _dict(data)
        code = text_of(qrcode.get("code"), 2000)
        if code:
            events.append(QrUpdate(code))
    elif name == "connection.update":
        data = _dict(data)
        state = data.get("state")
        reason = data.get("statusReason")
        if state == "open":
            events.append(ConnectionUpdate("connected"))
        elif state == "connecting":
            events.append(ConnectionUpdate("connecting"))
        elif state == "close":
            events.append(ConnectionUpdate("logged_out" if reason == 401 else "disconnected",
                                           f"closed ({reason})" if reason else None))
    elif name == "logout.instance":
        events.append(ConnectionUpdate("logged_out", "logged out on the phone"))
    elif name == "messages.upsert":
        for item in (data if isinstance(data, list) else [data]):
            message = _message(_dict(item))
            if message is not None:
                events.append(message)
    elif name == "messages.update":
        for item in (data if isinstance(data, list) else [data]):
            item = _dict(item)
            provider_id = ident_of(item.get("keyId") or _dict(item.get("key")).get("id"))
            status = ACKS.get(str(item.get("status")))
            if provider_id and status:
                error = text_of(item.get("error"), 500) or "the bridge reported an error" \
                    if status == "failed" else None
                events.append(StatusUpdate(provider_id, status, error))  # type: ignore[arg-type]
    elif name in ("contacts.update", "contacts.upsert"):
        for item in (data if isinstance(data, list) else [data]):
            item = _dict(item)
            jid = item.get("remoteJid") or item.get("id")
            wa_id = digits(jid) if isinstance(jid, str) and jid.endswith(
                "@s.whatsapp.net") else None
            if wa_id:
                picture = item.get("profilePicUrl")
                events.append(ContactUpdate(Contact(
                    wa_id, text_of(item.get("pushName"), 200),
                    picture[:2048] if isinstance(picture, str)
                    and picture.startswith(("http://", "https://")) else None)))
    return events


def _message(item: dict[str, Any]) -> InboundMessage | None:
    key = _dict(item.get("key"))
    jid = key.get("remoteJid")
    if key.get("fromMe") or not isinstance(jid, str) or not jid.endswith("@s.whatsapp.net"):
        return None  # our own messages, groups, broadcasts
    wa_id = digits(jid)
    provider_id = ident_of(key.get("id"))
    if wa_id is None or provider_id is None:
        return None
    message = _dict(item.get("message"))
    content: dict[str, Any] | None = None
    chat_type = "text"
    text = (text_of(message.get("conversation"))
            or text_of(_dict(message.get("extendedTextMessage")).get("text")))
    if text:
        content = {"text": text}
    for field, kind in MEDIA.items():
        media = _dict(message.get(field))
        if content is None and media:
            url = media.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                content = {"text": f"({kind})"}
                break
            chat_type = kind
            content = {"url": url[:2048]}
            mime = text_of(media.get("mimetype"), 255)
            if mime and (kind == "document" or mime.startswith(kind + "/")):
                content["mimeType"] = mime
            if (caption := text_of(media.get("caption"))) and kind != "audio":
                content["caption"] = caption
            if kind == "document":
                content["fileName"] = text_of(media.get("fileName"), 255) or "document"
    if content is None and (location := _dict(message.get("locationMessage"))):
        parts = [text_of(location.get(k), 500) for k in ("name", "address")]
        where = f"{location.get('degreesLatitude')}, {location.get('degreesLongitude')}"
        content = {"text": "Location: " + " - ".join([p for p in parts if p] + [where])}
    if content is None and (card := _dict(message.get("contactMessage"))):
        content = {"text": "Contact: " + (text_of(card.get("displayName"), 200) or "?")}
    if content is None:
        reply = (text_of(_dict(message.get("buttonsResponseMessage")).get("selectedDisplayText"))
                 or text_of(_dict(message.get("listResponseMessage")).get("title")))
        content = {"text": reply or f"({text_of(item.get('messageType'), 50) or 'message'})"}
    contact = Contact(wa_id, text_of(item.get("pushName"), 200))
    return InboundMessage(provider_id, contact, chat_type, content,
                          _number(item.get("messageTimestamp")))


def send_request(base: str, instance: str, api_key: str,
                 message: Outgoing) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of the bridge call that sends ``message``."""
    headers = {"apikey": api_key, "Content-Type": "application/json"}
    content = message.content
    if message.type == "text":
        return (f"{base}/message/sendText/{instance}", headers,
                {"number": message.to, "text": content.get("text", "")})
    body: dict[str, Any] = {"number": message.to, "mediatype": message.type,
                            "media": content.get("url")}
    for ours, theirs in (("caption", "caption"), ("fileName", "fileName"),
                         ("mimeType", "mimetype")):
        if content.get(ours):
            body[theirs] = content[ours]
    return f"{base}/message/sendMedia/{instance}", headers, body


def send_outcome(status: int, headers: Mapping[str, str], answer: Any) -> SendOutcome:
    """What the bridge's answer to a send means."""
    if 200 <= status < 300:
        provider_id = _dict(_dict(answer).get("key")).get("id")
        if isinstance(provider_id, str) and provider_id:
            return SendOutcome(provider_id=provider_id[:200])
        return SendOutcome(error="answer without a message id")
    response = _dict(_dict(answer).get("response"))
    message = response.get("message", _dict(answer).get("error"))
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    reason = f"{message} (HTTP {status})" if message else f"HTTP {status}"
    return SendOutcome(error=reason[:500], retry=status == 429 or status >= 500,
                       retry_after=_number(headers.get("retry-after")))


def connect_qr(answer: Any) -> QrUpdate | None:
    """The QR code in the answer of ``GET /instance/connect/{instance}``, if any."""
    answer = _dict(answer)
    code = text_of(answer.get("code") or _dict(answer.get("qrcode")).get("code"), 2000)
    return QrUpdate(code) if code else None
