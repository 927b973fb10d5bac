"""The Engine.IO endpoint: its sessions by sid, the long-polling routes and
the WebSocket entry (a new session's, or one probing an upgrade)."""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import trio
from quart import Blueprint, Response, request
from werkzeug.exceptions import MethodNotAllowed

from ..apidocs import documented
from ..errors import CloseCode
from ..handshake import Handshake, from_request, peer_address
from ..http import error_response
from ..origins import origin_allowed
from ..protocol import engineio as eio
from ..protocol.wsframe import close_frame, text_frame
from ..recovery import Recovery
from .engineio import EngineSocket
from .front import RequestHead, UpgradeRefused, json_response, websocket_accept
from .siocodec import SioCodec
from .sionamespaces import Namespaces
from .ws import send_quietly
from .wschannel import WsChannel

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("switchboard.socketio")

#: Seconds a client refused a new session is asked to wait (``Retry-After``).
RETRY_AFTER = 5


class EngineIOServer:
    """The Engine.IO endpoint: session registry, polling routes, WebSocket entry."""

    def __init__(self, app: App, spawn: Callable[..., Any],
                 on_closed: Callable[[], None]) -> None:
        self.app = app
        self.on_closed = on_closed
        self.config = app.config.socketio
        self.namespaces = frozenset(self.config.namespaces)
        self.engines: dict[str, EngineSocket] = {}
        self._spawn = spawn
        self._codecs: dict[tuple[str, bool], SioCodec] = {}
        #: Sessions opened and no namespace connected yet, by client address
        #: (``socketio.max_unconnected_per_address``), and their number.
        self._unconnected: Counter[str | None] = Counter()
        self._unconnected_total = 0
        self.recovery: Recovery | None = None
        if self.config.recovery_window > 0:
            self.recovery = app.hub.recovery = app.hub.broker.recovery(
                self.config.recovery_window, self.config.recovery_max_events)

    def codec(self, namespace: str, websocket: bool) -> SioCodec:
        key = (namespace, websocket)
        codec = self._codecs.get(key)
        if codec is None:
            profile_name = self.config.profiles.get(namespace)
            profile = self.app.plugins.profiles[profile_name] if profile_name else None
            codec = self._codecs[key] = SioCodec(namespace, websocket, profile)
        return codec

    def _open_packet(self, sid: str, upgrades: list[str]) -> str:
        hb = self.app.config.heartbeat
        return eio.open_packet(sid, upgrades=upgrades, ping_interval=hb.interval,
                               ping_timeout=hb.timeout, max_payload=self.config.max_payload)

    def _new_engine(self, handshake: Handshake, sid: str | None = None) -> EngineSocket:
        sid = sid or new_sid()
        engine = EngineSocket(self, sid, handshake=handshake)
        self.engines[sid] = engine
        self._unconnected[handshake.remote_addr] += 1
        self._unconnected_total += 1
        engine.unconnected = True
        return engine

    def _refusal(self, address: str | None) -> tuple[int, str] | None:
        """Why a new session from ``address`` is refused now, if it is: an HTTP
        status and a message (see ``socketio.max_unconnected``)."""
        if self._unconnected[address] >= self.config.max_unconnected_per_address:
            return 429, ("too many Socket.IO sessions of this address have no namespace "
                         "connected: connect one, or retry later")
        if self._unconnected_total >= self.config.max_unconnected:
            return 503, ("too many Socket.IO sessions have no namespace connected: "
                         "retry later")
        return None

    def _refused(self, status: int, message: str) -> dict[str, Any]:
        self.app.metrics.handshake_rejected("too_many_sessions")
        log.info("Socket.IO session refused (%s): %s", status, message)
        return {"code": "too_many_sessions", "message": message, "retry_after": RETRY_AFTER}

    def settled(self, engine: Namespaces) -> None:
        """``engine`` connected its first namespace, or is gone: it no longer
        counts as unconnected."""
        if not engine.unconnected:
            return
        engine.unconnected = False
        address = engine.handshake.remote_addr
        self._unconnected_total -= 1
        if self._unconnected[address] <= 1:
            del self._unconnected[address]
        else:
            self._unconnected[address] -= 1

    def close_all(self) -> None:
        """Server shutdown: every session sends what it owes, then closes."""
        for engine in list(self.engines.values()):
            engine.shut_down()

    # -- websocket ---------------------------------------------------------

    async def serve_websocket(self, stream: trio.abc.Stream,
                              head: RequestHead) -> Awaitable[None] | None:
        """Accept a WebSocket (a new session's, or one probing an upgrade);
        return its work for the caller to await, None when it was refused."""
        target = head.target
        query = parse_qs(urlsplit(target).query)
        try:
            accept = websocket_accept(head)
        except UpgradeRefused:
            await send_quietly(stream, b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return None
        origin = head.headers.get("origin")
        sid = query.get("sid", [None])[0]
        engine = self.engines.get(sid) if sid else None
        if not origin_allowed(self.app.config.server.allowed_origins, origin):
            self.app.metrics.handshake_rejected("origin")
            error: eio.ErrorCode | None = eio.ErrorCode.FORBIDDEN
        else:
            error = _check_query(query, "websocket")
        if error is None and sid:
            error = eio.websocket_refusal(engine.state if engine is not None else None)
        if error is not None:
            body = {"code": int(error), "message": eio.ERROR_MESSAGES[error]}
            status = 403 if error == eio.ErrorCode.FORBIDDEN else 400
            await send_quietly(stream, json_response(status, body))
            return None
        if engine is not None and not eio.takes_websocket(engine.state):
            # (already upgraded, probing, opening or closing: the reference
            # server accepts this WebSocket and closes it at once)
            await send_quietly(stream, accept + close_frame(
                CloseCode.PROTOCOL_ERROR, "the session cannot take a WebSocket now"))
            return None
        if engine is not None:
            # from here a second WebSocket for this sid is closed at once
            engine.begin_upgrade()
            if not await send_quietly(stream, accept):
                engine.end_upgrade()
                return None
        else:
            handshake = from_request("socket.io", target, head.header_pairs(),
                                     remote_addr=peer_address(stream), proxies=self.app.proxies)
            refused = self._refusal(handshake.remote_addr)
            if refused is not None:
                status, message = refused
                await send_quietly(stream, json_response(
                    status, self._refused(status, message),
                    [("retry-after", str(RETRY_AFTER))]))
                return None
            # a new session: its open packet goes out with the handshake's
            # answer, in one write
            sid = new_sid()
            if not await send_quietly(stream, accept + text_frame(self._open_packet(sid, []))):
                return None
        # none of wsproto's state is kept (the channel makes a frame-level
        # connection only for frames it does not parse itself)
        channel = WsChannel(stream,
                            outbox_limit=self.app.config.server.outbox_max_bytes,
                            max_message=self.config.max_payload,
                            linger=self.app.config.server.write_linger)
        # The connection's work is handed back to be awaited by the caller, which
        # closes the stream after it: this frame (and the handshake's state)
        # does not live as long as the connection.
        if engine is not None:
            return engine.serve_channel(channel, upgrade=True)
        engine = self._new_engine(handshake, sid)
        engine.channel = channel
        engine.opened()
        return engine.run(channel)

    # -- long-polling ------------------------------------------------------

    def blueprint(self) -> Blueprint:
        bp = Blueprint("engineio", __name__)
        bp.add_url_rule(self.config.path, "engineio", self._polling,
                        methods=["GET", "POST", "OPTIONS"])
        bp.app_errorhandler(MethodNotAllowed)(self._method_not_allowed)
        return bp

    async def _method_not_allowed(self, exc: MethodNotAllowed) -> Response:
        """Other methods on the Engine.IO path get its JSON error, with 400 (the
        reference server's answer), not the router's 405."""
        if request.path != self.config.path:
            return error_response(405, "method_not_allowed",
                                  exc.description or "method_not_allowed")
        return await self._polling()

    def _cors(self, response: Response) -> Response:
        """The CORS headers of an allowed browser origin (requests from another
        origin are refused before they get here)."""
        origin = request.headers.get("Origin")
        if origin is not None and origin_allowed(self.app.config.server.allowed_origins,
                                                 origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    def _error(self, code: eio.ErrorCode, status: int = 400) -> Response:
        response = Response(
            f'{{"code":{int(code)},"message":"{eio.ERROR_MESSAGES[code]}"}}',
            status=status, content_type="application/json")
        return self._cors(response)

    @documented(
        "Engine.IO v4 long-polling (Socket.IO's HTTP transport)",
        description="GET without `sid` opens an Engine.IO session (the open packet); with "
                    "`sid`, GET waits for the server's packets and POST sends the client's "
                    "(Engine.IO packets separated by `\\x1e`). `socket.io-client` does "
                    "this; authentication is Socket.IO's, in the namespace CONNECT.",
        query={"EIO": {"enum": ["4"]}, "transport": {"enum": ["polling"]}, "sid": str,
               "t": str},
        required_query=("EIO", "transport"),
        body={"type": "string"}, body_media_type="text/plain",
        responses={200: ("Engine.IO packets", "text/plain"),
                   400: "a bad request (Engine.IO's `{code, message}`)",
                   403: "an Origin not in `server.allowed_origins`",
                   429: "`too_many_sessions`: this address has "
                        "`socketio.max_unconnected_per_address` sessions without a namespace",
                   503: "`too_many_sessions`: `socketio.max_unconnected` sessions have no "
                        "namespace"})
    async def _polling(self) -> Response:
        if not origin_allowed(self.app.config.server.allowed_origins,
                              request.headers.get("Origin")):
            # refused here, not only by the browser: no session for it
            self.app.metrics.handshake_rejected("origin")
            return self._error(eio.ErrorCode.FORBIDDEN, 403)
        if request.method == "OPTIONS":
            response = self._cors(Response("", status=204))
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            requested = request.headers.get("Access-Control-Request-Headers")
            if requested:
                response.headers["Access-Control-Allow-Headers"] = requested
            return response
        query = {k: request.args.getlist(k) for k in request.args}
        error = _check_query(query, "polling")
        if error is not None:
            return self._error(error)
        sid = request.args.get("sid")
        if sid is None:
            if request.method != "GET":
                return self._error(eio.ErrorCode.BAD_HANDSHAKE_METHOD)
            # (remote_addr is the client's already: see forwarded_asgi)
            handshake = from_request("socket.io", request.full_path, request.headers.items(),
                                     remote_addr=request.remote_addr)
            refused = self._refusal(handshake.remote_addr)
            if refused is not None:
                status, message = refused
                response = self._cors(Response(json.dumps(self._refused(status, message)),
                                               status=status, content_type="application/json"))
                response.headers["Retry-After"] = str(RETRY_AFTER)
                return response
            engine = self._new_engine(handshake)
            self._spawn(engine.run)
            opening = self._text(self._open_packet(engine.sid, ["websocket"]).encode())
            engine.opened()
            return opening
        found = self.engines.get(sid)
        error = eio.polling_refusal(found.state if found is not None else None,
                                    found.transport_name if found is not None else "polling")
        if error is not None:
            return self._error(error)
        assert found is not None
        if request.method == "GET":
            if found.poll_waiting:
                # two polls at once: the client is broken (the waiting one gets the close)
                found.close("transport_error", kind=eio.CloseKind.ERROR)
                return self._error(eio.ErrorCode.BAD_REQUEST)
            return self._text(await found.poll())
        if request.method == "POST":
            return await self._post(found)
        return self._error(eio.ErrorCode.BAD_REQUEST)

    async def _post(self, engine: EngineSocket) -> Response:
        length = request.content_length
        if length is not None and length > self.config.max_payload:
            engine.close("message_too_big", kind=eio.CloseKind.ERROR)
            return self._cors(Response('{"code":3,"message":"Payload too large"}', status=413,
                                       content_type="application/json"))
        body = await request.get_data(as_text=False)
        if isinstance(body, str):
            body = body.encode()
        if len(body) > self.config.max_payload:
            engine.close("message_too_big", kind=eio.CloseKind.ERROR)
            return self._cors(Response('{"code":3,"message":"Payload too large"}', status=413,
                                       content_type="application/json"))
        try:
            await engine.receive_payload(body.decode("utf-8"))
        except (eio.EngineIOError, UnicodeDecodeError) as exc:
            engine._protocol_error(str(exc))
            return self._error(eio.ErrorCode.BAD_REQUEST)
        return self._cors(Response("ok", content_type="text/html"))

    def _text(self, body: bytes) -> Response:
        return self._cors(Response(body, content_type="text/plain; charset=UTF-8"))


def new_sid() -> str:
    """A new Engine.IO session id."""
    return secrets.token_urlsafe(15)


def _check_query(query: dict[str, list[str]], transport: str) -> eio.ErrorCode | None:
    if query.get("EIO", [""])[0] != "4":
        return eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION
    if query.get("transport", [""])[0] != transport:
        return eio.ErrorCode.UNKNOWN_TRANSPORT
    return None
