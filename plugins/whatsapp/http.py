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
    error_response,
    identifier,
    max_length,
    read_json,
    require_api_key,
    structure_body,
)

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


def blueprint(engine: WhatsApp) -> Blueprint:
    bp = Blueprint("whatsapp", __name__)

    @bp.post(f"{PREFIX}/sessions")
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
    @require_api_key
    async def list_sessions() -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        rows = await engine.storage.sessions_of(tenant)
        return {"sessions": [engine.sessions.describe(r) for r in rows]}

    @bp.get(f"{PREFIX}/sessions/<session>")
    @require_api_key
    async def show(session: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        _check_session_id(session)
        return engine.sessions.describe(await engine.sessions.get(tenant, session))

    @bp.post(f"{PREFIX}/sessions/<session>/<command>")
    @require_api_key
    async def command(session: str, command: str) -> Any:
        if command not in COMMANDS or command == "delete":
            return error_response(404, "not_found", f"no command {command[:50]!r}")
        body = await request.get_data(as_text=False)
        data = await read_json() if body.strip() else {}
        given = data.get("tenant") if isinstance(data, dict) else None
        tenant = api_key_tenant(given if isinstance(given, str) else request.args.get("tenant"))
        _check_session_id(session)
        return await _run(engine, tenant, session, command)

    @bp.delete(f"{PREFIX}/sessions/<session>")
    @require_api_key
    async def delete(session: str) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        _check_session_id(session)
        await _run(engine, tenant, session, "delete")
        return "", 204

    @bp.get(f"{PREFIX}/sessions/<session>/media/<media_id>")
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
    @require_api_key
    async def delivery(message_id: int) -> Any:
        tenant = api_key_tenant(request.args.get("tenant"))
        if message_id > MAX_ROW_ID:
            raise ClientError("not_found", "no such message")
        return await engine.delivery(tenant, message_id)

    @bp.get(f"{PREFIX}/webhooks/<tenant>/<session>")
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
