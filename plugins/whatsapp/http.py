"""The whatsapp plugin's HTTP routes: sessions (API key), the providers'
webhooks (authenticated by the provider's signature or key), deliveries."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs.validators import optional
from quart import Blueprint, Response, request
from switchboard.core import (
    MAX_ROW_ID,
    ClientError,
    api_key_tenant,
    check_identifier,
    documented,
    error_response,
    identifier,
    max_length,
    read_json,
    require_api_key,
    structure_body,
)
from switchboard.core.apidocs import IDENTIFIER

from . import cloud
from .engine import WebhookRefused, WhatsApp
from .events import COMMANDS, _session_id
from .providers import (
    BridgeConfig,
    CloudConfig,
    CloudProvider,
    MediaNotFound,
    MediaTooLarge,
    ProviderError,
    bridge_url_problem,
)

PREFIX = "/api/v1/whatsapp"


@attrs.frozen
class CreateSession:
    id: str = attrs.field(validator=[identifier, max_length(64), _session_id])
    provider: Literal["cloud", "bridge"]
    tenant: str | None = attrs.field(default=None, validator=optional(identifier))
    cloud: CloudConfig | None = None
    bridge: BridgeConfig | None = None


def _check_tenant(tenant: str) -> None:
    if check_identifier(tenant) is not None:
        raise ClientError("not_found", "no such tenant")


def _check_session_id(session: str) -> None:
    try:
        _session_id(None, attrs.fields(CreateSession).id, session)
    except ValueError:
        raise ClientError("not_found", f"no WhatsApp session {session[:64]!r}") from None


TENANT = {"tenant": IDENTIFIER}
SESSION = "the session `{id, tenant, provider, status, ...}`"


@attrs.frozen
class CommandBody:
    """Body of a session command (optional: the tenant may be in the query)."""

    tenant: str | None = attrs.field(default=None, validator=optional(identifier))


def blueprint(engine: WhatsApp) -> Blueprint:
    bp = Blueprint("whatsapp", __name__)

    @bp.post(f"{PREFIX}/sessions")
    @documented(
        "Register a WhatsApp number (Cloud API or a bridge)",
        body=CreateSession,
        responses={201: SESSION, 409: "a session of that id exists"},
    )
    @require_api_key
    async def create() -> Any:
        body = structure_body(await read_json(), CreateSession)
        tenant = api_key_tenant(body.tenant)
        config = body.cloud if body.provider == "cloud" else body.bridge
        if config is None:
            raise ClientError("invalid_payload", f"{body.provider}: required for this provider",
                              field=body.provider)
        if isinstance(config, BridgeConfig):
            problem = await bridge_url_problem(config.url, engine.settings)
            if problem is not None:
                raise ClientError("invalid_payload", f"bridge.url: {problem}",
                                  field="bridge.url")
        return await engine.sessions.create(tenant, body.id, body.provider,
                                            attrs.asdict(config)), 201

    @bp.get(f"{PREFIX}/sessions")
    @documented("The tenant's sessions", query=TENANT, responses={200: "`{sessions}`"})
    @require_api_key
    async def list_sessions() -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        rows = await engine.storage.sessions_of(tenant)
        return {"sessions": [engine.sessions.describe(r) for r in rows]}

    @bp.get(f"{PREFIX}/sessions/<session>")
    @documented(
        "A session and its status", query=TENANT, responses={200: SESSION, 404: "no such session"}
    )
    @require_api_key
    async def show(session: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        _check_session_id(session)
        return engine.sessions.describe(await engine.sessions.get(tenant, session))

    @bp.post(f"{PREFIX}/sessions/<session>/<command>")
    @documented(
        "Run a command on a session: start, restart or logout",
        description="`command` is `start`, `restart` or `logout`; the body is optional.",
        body=CommandBody,
        body_required=False,
        query=TENANT,
        responses={200: SESSION, 404: "no such session or command", 502: "`provider_unavailable`"},
    )
    @require_api_key
    async def command(session: str, command: str) -> Any:
        if command not in COMMANDS or command == "delete":
            return error_response(404, "not_found", f"no command {command[:50]!r}")
        body = await request.get_data(as_text=False)
        data = structure_body(await read_json(), CommandBody) if body.strip() else CommandBody()
        tenant = api_key_tenant(data.tenant or request.args.get("tenant"))
        _check_session_id(session)
        return await _run(engine, tenant, session, command)

    @bp.delete(f"{PREFIX}/sessions/<session>")
    @documented(
        "Delete a session (logging it out of the provider)",
        query=TENANT,
        responses={204: "deleted", 404: "no such session", 502: "`provider_unavailable`"},
    )
    @require_api_key
    async def delete(session: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        _check_session_id(session)
        await _run(engine, tenant, session, "delete")
        return "", 204

    @bp.get(f"{PREFIX}/sessions/<session>/media/<media_id>")
    @documented(
        "Download a media file a customer sent (Cloud API sessions)",
        query=TENANT,
        responses={
            200: ("the media, with its content type", bytes),
            404: "no such media",
            413: "over `max_media_bytes`",
            502: "`provider_unavailable`",
        },
    )
    @require_api_key
    async def media(session: str, media_id: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        _check_session_id(session)
        if not media_id.isascii() or not media_id.replace("_", "").isalnum() \
                or len(media_id) > 200:
            raise ClientError("not_found", "no such media")
        row = await engine.sessions.get(tenant, session)
        provider = engine.sessions.provider(row)
        if not isinstance(provider, CloudProvider):
            return error_response(404, "not_found",
                                  "media are fetched from Cloud API sessions only")
        limit = engine.settings.max_media_bytes
        try:
            mime, data = await provider.media(engine.client, media_id, limit)
        except MediaNotFound:
            return error_response(404, "not_found", f"no media {media_id!r}")
        except MediaTooLarge:
            return error_response(413, "payload_too_large", f"the media is over {limit} bytes")
        except ProviderError as exc:
            return error_response(502, "provider_unavailable", f"the provider failed: {exc}")
        return Response(data, status=200, content_type=mime)

    @bp.get(f"{PREFIX}/messages/<int:message_id>")
    @documented(
        "The delivery status of an outbound message",
        query=TENANT,
        responses={200: "`{id, status, ...}`", 404: "no such message"},
    )
    @require_api_key
    async def delivery(message_id: int) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        if message_id > MAX_ROW_ID:
            raise ClientError("not_found", "no such message")
        return await engine.delivery(tenant, message_id)

    @bp.get(f"{PREFIX}/webhooks/<tenant>/<session>")
    @documented(
        "The Cloud API's webhook verification",
        query={"hub.mode": str, "hub.verify_token": str, "hub.challenge": str},
        responses={
            200: ("the challenge", str),
            403: "verification refused",
            404: "no such session",
        },
        auth="the session's `verifyToken`",
    )
    async def verify(tenant: str, session: str) -> Any:
        _check_tenant(tenant)
        _check_session_id(session)
        row = await engine.sessions.get(tenant, session)
        challenge = None
        if row.provider == "cloud":
            challenge = cloud.verify_challenge(request.args, row.config["verifyToken"])
        if challenge is None:
            return error_response(403, "forbidden", "verification refused")
        return Response(challenge, status=200, content_type="text/plain")

    @bp.post(f"{PREFIX}/webhooks/<tenant>/<session>")
    @documented(
        "A provider's webhook: messages and statuses",
        body={"description": "The provider's own JSON (Cloud API or bridge)."},
        responses={200: "`{received}`", 401: "a bad signature or key", 404: "no such session"},
        auth="the provider's signature (`X-Hub-Signature-256`) or the bridge's key",
    )
    async def webhook(tenant: str, session: str) -> Any:
        _check_tenant(tenant)
        _check_session_id(session)
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        try:
            count = await engine.webhook(tenant, session, body, dict(request.headers))
        except WebhookRefused as exc:
            return error_response(exc.status, exc.code, str(exc))
        return {"received": count}

    return bp


async def _run(engine: WhatsApp, tenant: str, session: str, command: str) -> Any:
    try:
        return await engine.sessions.command(tenant, session, command)
    except ClientError as exc:
        if exc.code == "provider_unavailable":
            return error_response(502, exc.code, exc.message, sessionId=session)
        raise
