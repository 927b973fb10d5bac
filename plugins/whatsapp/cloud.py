"""The WhatsApp Cloud API, sans-IO: its webhook (verification handshake,
``X-Hub-Signature-256``, messages, statuses, contacts) and its messages
endpoint (the request to POST, and what the answer means).

Nothing here does I/O: ``providers.py`` sends what :func:`send_request`
builds and hands the answer to :func:`send_outcome`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from .model import (
    Contact,
    Event,
    InboundMessage,
    Outgoing,
    SendOutcome,
    StatusUpdate,
    digits,
    ident_of,
    text_of,
)

#: Graph API error codes worth trying again: throttling, "temporarily
#: unavailable", "something went wrong", the per-pair rate limit.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 80007, 130429, 131000, 131016, 131048, 131056,
                             133004})
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` is ``sha256=`` HMAC-SHA256 of the raw
    body with the app secret."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The ``hub.challenge`` to echo for a subscription handshake with the
    right token; None to refuse it."""
    if query.get("hub.mode") != "subscribe":
        return None
    token = query.get("hub.verify_token", "")
    if not verify_token or not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    challenge = query.get("hub.challenge")
    return challenge if challenge and len(challenge) <= 200 else None


def parse_webhook(body: Any, phone_number_id: str, media_base: str) -> list[Event]:
    """The events of a webhook body meant for ``phone_number_id`` (changes for
    other numbers of the same app are left out). Whatever is malformed in it
    is skipped, never raised."""
    events: list[Event] = []
    if not isinstance(body, dict):
        return events
    for entry in _list(body.get("entry")):
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            value = _dict(change.get("value"))
            if change.get("field", "messages") != "messages":
                continue
            metadata = _dict(value.get("metadata"))
            if str(metadata.get("phone_number_id", "")) != phone_number_id:
                continue
            names: dict[str, Contact] = {}
            for item in _list(value.get("contacts")):
                item = _dict(item)
                wa_id = digits(item.get("wa_id"))
                if wa_id is not None:
                    names[wa_id] = Contact(wa_id, text_of(_dict(item.get("profile")).get("name"),
                                                          200))
            for message in _list(value.get("messages")):
                parsed = _message(_dict(message), names, media_base)
                if parsed is not None:
                    events.append(parsed)
            for status in _list(value.get("statuses")):
                update = _status(_dict(status))
                if update is not None:
                    events.append(update)
    return events


def _message(message: dict[str, Any], names: dict[str, Contact],
             media_base: str) -> InboundMessage | None:
    wa_id = digits(message.get("from"))
    provider_id = ident_of(message.get("id"))
    kind = message.get("type")
    if wa_id is None or provider_id is None or not isinstance(kind, str):
        return None
    body = _dict(message.get(kind))
    content: dict[str, Any]
    chat_type = "text"
    if kind == "text":
        text = text_of(body.get("body"))
        content = {"text": text or "(empty)"}
    elif kind in MEDIA_TYPES:
        media_id = ident_of(body.get("id"))
        url = body.get("link") if isinstance(body.get("link"), str) else None
        if url is None and media_id is not None and media_id.replace("_", "").isalnum():
            url = f"{media_base}/{media_id}"
        if url is None or not url.startswith(("http://", "https://")):
            content = {"text": f"({kind})"}
        else:
            chat_type = "image" if kind == "sticker" else kind
            content = {"url": url[:2048]}
            mime = text_of(body.get("mime_type"), 255)
            if mime and (chat_type == "document" or mime.startswith(chat_type + "/")):
                content["mimeType"] = mime
            if (caption := text_of(body.get("caption"))) and chat_type != "audio":
                content["caption"] = caption
            if chat_type == "document":
                content["fileName"] = text_of(body.get("filename"), 255) or "document"
    elif kind == "location":
        parts = [text_of(body.get(k), 500) for k in ("name", "address")]
        where = f"{body.get('latitude')}, {body.get('longitude')}"
        content = {"text": "Location: " + " - ".join([p for p in parts if p] + [where])}
    elif kind == "contacts":
        cards = []
        for card in _list(message.get("contacts")):
            card = _dict(card)
            name = text_of(_dict(card.get("name")).get("formatted_name"), 200) or "?"
            phones = [str(_dict(p).get("phone")) for p in _list(card.get("phones"))
                      if _dict(p).get("phone")]
            cards.append(" ".join([name, *phones]))
        content = {"text": "Contact: " + ("; ".join(cards) or "(empty)")}
    elif kind == "interactive":
        reply = _dict(body.get(str(body.get("type")))) if body.get("type") else {}
        title = text_of(reply.get("title"), 500) or text_of(reply.get("id"), 200)
        content = {"text": title or "(interactive reply)"}
    elif kind == "button":
        content = {"text": text_of(body.get("text"), 500) or text_of(body.get("payload"))
                   or "(button)"}
    elif kind == "reaction":
        content = {"text": f"Reaction: {text_of(body.get('emoji'), 20) or '(removed)'}"}
    else:
        content = {"text": f"({text_of(kind, 50) or 'message'})"}
    contact = names.get(wa_id, Contact(wa_id))
    timestamp = _number(message.get("timestamp"))
    return InboundMessage(provider_id, contact, chat_type, content, timestamp)


def _status(status: dict[str, Any]) -> StatusUpdate | None:
    provider_id = ident_of(status.get("id"))
    value = status.get("status")
    if provider_id is None or value not in ("sent", "delivered", "read", "failed"):
        return None
    error = None
    if value == "failed":
        errors = [_dict(e) for e in _list(status.get("errors"))]
        error = "; ".join(_error_text(e) for e in errors) or "failed"
    return StatusUpdate(provider_id, value, error)


def _error_text(error: dict[str, Any]) -> str:
    details = _dict(error.get("error_data")).get("details")
    words = [f"({error.get('code')})" if error.get("code") is not None else "",
             str(error.get("title") or error.get("message") or "error")]
    if details:
        words.append(f"- {details}")
    return " ".join(w for w in words if w)[:500]


def send_request(graph_base: str, phone_number_id: str, access_token: str,
                 message: Outgoing) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of the Graph API call that sends ``message``."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                            "to": message.to, "type": message.type}
    content = message.content
    if message.type == "text":
        body["text"] = {"preview_url": False, "body": content.get("text", "")}
    else:
        media: dict[str, Any] = {"link": content.get("url")}
        if content.get("caption") and message.type != "audio":
            media["caption"] = content["caption"]
        if message.type == "document":
            media["filename"] = content.get("fileName")
        body[message.type] = media
    headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"}
    return f"{graph_base}/{phone_number_id}/messages", headers, body


def send_outcome(status: int, headers: Mapping[str, str], answer: Any) -> SendOutcome:
    """What the Graph API's answer to a send means."""
    retry_after = _number(headers.get("retry-after"))
    if 200 <= status < 300:
        ids = [_dict(m).get("id") for m in _list(_dict(answer).get("messages"))]
        if ids and isinstance(ids[0], str) and ids[0]:
            return SendOutcome(provider_id=ids[0][:200])
        return SendOutcome(error="answer without a message id", retry=False)
    error = _dict(_dict(answer).get("error"))
    code = error.get("code")
    reason = f"HTTP {status}"
    if error:
        reason = _error_text(error) + f" (HTTP {status})"
    transient = status == 429 or status >= 500 or (
        isinstance(code, int) and code in TRANSIENT_CODES)
    return SendOutcome(error=reason[:500], retry=transient, retry_after=retry_after)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number < 1e12 else None
