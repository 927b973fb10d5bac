"""Guests: anonymous website visitors (a chat widget) without an account.

A page holds a public widget key (``[plugins.guests] widgets``: the key, its
tenant, the origins of the pages allowed to use it). A visitor either
exchanges the key for a guest token over HTTP (``POST /api/v1/guests``) and
connects with it, or connects with the key itself and gets its token in a
``guest:token`` event. The token is resumable: presented again (to the HTTP
route, or when connecting), it keeps the visitor's id. A guest is a
``customer`` of the widget's tenant, confined to its own user room (not in
the tenant's rooms), and new guests are limited per IP address.

``guest:start`` (a guest's event) opens the guest's conversation with the
tenant (``guest:{id}``, through the chat service: stored, with a history),
joins it and tells the tenant's agents (``guest:started`` to
``tenant:{id}:agents``); started again, it is the same conversation. A guest
can only be in the conversations it started, as a chat participant.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from typing import Any

import attrs
import jwt
from quart import Blueprint, request
from switchboard.core import (
    App,
    AuthError,
    ChatParticipant,
    ChatService,
    ClientError,
    ConfigError,
    Handshake,
    Identity,
    Rate,
    Session,
    agents_room,
    documented,
    hookimpl,
    incoming,
    object_schema,
    outgoing,
)
from switchboard.core.auth import signing_secret
from switchboard.core.http import error_response, read_json, structure_body
from switchboard.core.origins import origin_allowed
from switchboard.core.ratelimit import TokenBucket
from switchboard.core.validators import max_length, text

ISSUER = "switchboard/guests"
#: IP addresses whose buckets are kept, at most (the least recent go first).
BUCKETS = 10_000


@attrs.frozen
class GuestRequest:
    """Body of ``POST /api/v1/guests``: the page's widget key and, to stay the
    same guest, the token it was given before."""

    widget: str = attrs.field(validator=max_length(200))
    guest: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        max_length(4096)))


@attrs.frozen
class Widget:
    #: The public key a page holds (not a secret: it only names the widget).
    key: str
    #: The tenant its guests belong to.
    tenant: str
    #: Origins of the pages that may use it (glob patterns; ``*``: any).
    origins: list[str] = attrs.Factory(lambda: ["*"])

    def __attrs_post_init__(self) -> None:
        if len(self.key) < 8:
            raise ValueError("key: must be at least 8 characters")


@attrs.frozen
class GuestStart:
    title: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        [text, max_length(200)]))


@attrs.frozen
class GuestSettings:
    widgets: list[Widget] = attrs.Factory(list)
    #: Signs guest tokens; empty: derived from the HS secret of ``[auth]``.
    secret: str = ""
    #: Seconds a guest token is valid (presented again, it is renewed).
    token_ttl: float = attrs.field(default=86_400.0, validator=attrs.validators.gt(0))
    #: Seconds during which an expired token still resumes its guest's id.
    resume_within: float = attrs.field(default=30 * 86_400.0, validator=attrs.validators.ge(0))
    #: New guests per IP address (tokens issued, anonymous connects).
    per_ip: Rate = attrs.Factory(lambda: Rate(rate=0.2, burst=10.0))


class GuestsPlugin:
    app: App
    settings: GuestSettings

    def __init__(self) -> None:
        self._widgets: dict[str, Widget] = {}
        self._secret = ""
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    # -- declaration -------------------------------------------------------

    @hookimpl
    def switchboard_config_class(self) -> type:
        return GuestSettings

    @hookimpl
    def switchboard_events(self) -> list[Any]:
        return [
            incoming("guest:start", GuestStart, self.start, rate=Rate(rate=0.2, burst=3.0),
                     ack=object_schema(conversationId=str, room=str, created=bool),
                     doc="A guest opens its conversation ({title?}): ack {conversationId, "
                         "room, created}; the guest is in its room."),
            outgoing("guest:token", None, rooms=["session"],
                     schema=object_schema(token=str, userId=str, tenant=str, expiresAt=int),
                     doc="To a guest that connected with a widget key: {token, userId, "
                         "expiresAt}, to connect with next time."),
            outgoing("guest:started", None, rooms=["tenant:{tenantId}:agents"],
                     schema=object_schema("widget", "title", conversationId=str, userId=str),
                     doc="To tenant:{id}:agents: a guest opened a conversation "
                         "{conversationId, userId, widget, title}."),
        ]

    async def start(self, session: Session, request: GuestStart) -> dict[str, Any]:
        if not session.identity.data.get("guest"):
            raise ClientError("forbidden", "only a website guest starts a guest conversation")
        chat: ChatService = self.app.service("chat")
        conversation, created = await chat.get_or_create_conversation(
            session.tenant_id, f"guest:{session.user_id}", title=request.title,
            participants=[ChatParticipant(session.user_id, "customer")])
        await self.app.join(session, conversation.room)
        if created:
            await self.app.publish(session.tenant_id, agents_room(session.tenant_id),
                                   "guest:started",
                                   {"conversationId": conversation.id,
                                    "userId": session.user_id,
                                    "widget": session.identity.data.get("widget"),
                                    "title": request.title})
        return {"conversationId": conversation.id, "room": conversation.room,
                "created": created}

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("guests", __name__)

        @bp.post("/api/v1/guests")
        @documented("A token for a website visitor (a new guest, or the same one again)",
                    body=GuestRequest, responses={
                        201: "`{token, userId, tenant, expiresAt}`",
                        403: "`forbidden_origin`: the page's Origin may not use the key",
                        404: "`unknown_widget`", 429: "`rate_limited`: too many new guests"},
                    auth="the widget key in the body (no API key)")
        async def issue() -> Any:
            body = structure_body(await read_json(), GuestRequest)
            widget = self._widgets.get(body.widget)
            if widget is None:
                return error_response(404, "unknown_widget", "no such widget key")
            if not origin_allowed(widget.origins, request.headers.get("Origin")):
                return error_response(403, "forbidden_origin",
                                      "this page may not use this widget key")
            previous = body.guest
            user = self._resumed(previous, widget) if previous is not None else None
            if user is None:
                limited = self._limited(request.remote_addr)
                if limited is not None:
                    response = error_response(429, "rate_limited",
                                              "too many new guests from this address",
                                              retry_after=limited)
                    response.headers["Retry-After"] = str(max(1, round(limited)))
                    return response
                user = self._new_id()
            return self._token_answer(user, widget), 201

        return bp

    # -- lifecycle ---------------------------------------------------------

    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        self.app = app
        self.settings = app.settings(self)
        self._widgets = {w.key: w for w in self.settings.widgets}
        if not self._widgets:
            return
        secret = self.settings.secret
        if not secret:
            if app.config.auth.public_key or app.config.auth.public_key_file \
                    or app.config.auth.jwks_url:
                raise ConfigError("plugins.guests.secret",
                                  "required when tokens are not signed with auth.secret")
            base, _ = signing_secret(app.config)
            secret = hashlib.sha256(b"switchboard-guests\0" + base.encode()).hexdigest()
        self._secret = secret

    # -- connecting --------------------------------------------------------

    @hookimpl(tryfirst=True)
    def switchboard_authenticate(self, handshake: Handshake) -> Identity | None:
        """A guest token (``auth.guest`` or ``?guest=``) or a widget key
        (``auth.widget`` or ``?widget=``); anything else is not a guest."""
        if not self._widgets or handshake.token() is not None:
            return None
        auth = handshake.auth or {}
        token = auth.get("guest") or handshake.query.get("guest")
        key = auth.get("widget") or handshake.query.get("widget")
        if not isinstance(token, str) and not isinstance(key, str):
            return None
        if isinstance(token, str):
            return self._identity_of(token, handshake)
        assert isinstance(key, str)
        widget = self._widgets.get(key)
        if widget is None:
            raise AuthError("no such widget key", code="unknown_widget", status=404)
        self._check_origin(widget, handshake)
        limited = self._limited(handshake.remote_addr)
        if limited is not None:
            raise AuthError("too many new guests from this address", code="rate_limited",
                            status=429, data={"retry_after": limited})
        answer = self._token_answer(self._new_id(), widget)
        return self._identity(answer["userId"], widget, answer["expiresAt"],
                              new_token=answer)

    def _identity_of(self, token: str, handshake: Handshake) -> Identity:
        claims = self._claims(token, verify_exp=True)
        if claims is None:
            raise AuthError("invalid or expired guest token")
        widget = self._widgets.get(claims.get("wid", ""))
        if widget is None or widget.tenant != claims.get("tenant"):
            raise AuthError("this guest token's widget is gone")
        self._check_origin(widget, handshake)
        return self._identity(claims["sub"], widget, float(claims["exp"]))

    @staticmethod
    def _check_origin(widget: Widget, handshake: Handshake) -> None:
        if not origin_allowed(widget.origins, handshake.headers.get("origin")):
            raise AuthError("this page may not use this widget key", code="forbidden_origin",
                            status=403)

    @staticmethod
    def _identity(user: str, widget: Widget, expires_at: float, *,
                  new_token: dict[str, Any] | None = None) -> Identity:
        data: dict[str, Any] = {"guest": True, "widget": widget.key}
        if new_token is not None:
            data["guest_token"] = new_token
        return Identity(user, widget.tenant, "customer", expires_at, data=data, confined=True)

    @hookimpl
    def switchboard_session_opened(self, session: Session) -> None:
        token = session.identity.data.get("guest_token")
        if token is not None:
            session.emit("guest:token", token, raw=True)

    # -- tokens ------------------------------------------------------------

    @staticmethod
    def _new_id() -> str:
        return "guest-" + secrets.token_urlsafe(16)

    def _token_answer(self, user: str, widget: Widget) -> dict[str, Any]:
        now = time.time()
        expires_at = int(now + self.settings.token_ttl)
        token = jwt.encode({"iss": ISSUER, "sub": user, "tenant": widget.tenant,
                            "wid": widget.key, "iat": int(now), "exp": expires_at},
                           self._secret, algorithm="HS256")
        return {"token": token, "userId": user, "tenant": widget.tenant,
                "expiresAt": expires_at}

    def _claims(self, token: str, *, verify_exp: bool) -> dict[str, Any] | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=["HS256"], issuer=ISSUER,
                options={"verify_exp": verify_exp, "require": ["exp", "sub"]})
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        if not isinstance(claims.get("sub"), str) or not claims["sub"].startswith("guest-"):
            return None
        return claims

    def _resumed(self, token: str, widget: Widget) -> str | None:
        """The guest id of a previous token of this widget (expired within
        ``resume_within`` seconds at most), or None."""
        claims = self._claims(token, verify_exp=False)
        if claims is None or claims.get("wid") != widget.key:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp + self.settings.resume_within < time.time():
            return None
        return str(claims["sub"])

    def _limited(self, address: str | None) -> float | None:
        """Take a new-guest token from ``address``'s bucket; seconds to wait when empty."""
        key = address or "?"
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.of(self.settings.per_ip)
            while len(self._buckets) > BUCKETS:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        if bucket.try_take():
            return None
        return round(bucket.retry_after(), 3)
