"""The admin console's routes and its live socket (see docs/admin-console.md).

Everything is under ``admin.path`` (``/admin`` below):

- ``GET /admin/``: the page (the login page's address when not logged in);
  ``GET /admin/login`` and ``POST /admin/login``; ``POST /admin/logout``.
- ``GET /admin/state.json``: what the panels show, as JSON.
- ``POST /admin/publish``: publish a test event (CSRF token required).
- ``GET /admin/static/{name}``: the script and the styles.
- ``/admin/socket``: the console's WebSocket: the live panels, re-rendered
  every ``admin.refresh`` seconds and sent when they changed, and the tail
  of a chosen room. Messages are JSON ``{"type", "data"}``: ``panels``
  (name -> HTML), ``tail`` (``html``, ``event``), ``tailing`` (``tenant``,
  ``room``), ``dropped`` (``count``), ``error`` (``message``),
  ``logged_out``; the page sends ``{"type": "tail", "tenant", "room"}``
  (both empty: stop).

Pages are rendered on the server with Jinja (autoescaped: every user id,
room and event shown came from a client); the script only puts that HTML in
place. Every answer forbids framing, caching and any script but the
console's own.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
import trio
from markupsafe import Markup
from quart import Blueprint, Response, request, websocket

from ..apidocs import documented
from ..broker import Announcement, BrokerUnavailable, Publication
from ..config import ApiKey
from ..errors import INVALID_PAYLOAD, ClientError
from ..http import error_response, publish_emits, read_json
from ..protocol import jsontext
from ..rooms import ALL_TENANTS, is_room_name, tenant_room
from ..store import StoreError
from ..validators import check_identifier
from . import panels
from .login import LOGIN_COOKIE, LOGIN_FORM_TTL, SESSION_COOKIE, AdminSession, Logins
from .logouts import Logouts
from .recent import RecentErrors

#: How the console's routes are authenticated, for the OpenAPI document.
COOKIE_AUTH = "the console's session cookie (and its CSRF token on POST)"

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("switchboard.admin")

#: Tail events queued for one console socket; past it they are dropped (and counted).
TAIL_BUFFER = 256
#: Control-channel topic on which a logout is told to every node.
LOGOUT_TOPIC = "admin:logout"
#: Close code of the console socket when its login has ended.
LOGGED_OUT = 4401
#: Security headers of every answer of the console.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # (no-referrer makes a form post's Origin "null")
    "Cache-Control": "no-store",
}
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@functools.cache
def _templates() -> jinja2.Environment:
    """The console's templates (read once per process, from the package)."""
    folder = files(__package__ or "switchboard.core.admin") / "templates"
    sources = {item.name: item.read_text("utf-8") for item in folder.iterdir()
               if item.name.endswith(".html")}
    return jinja2.Environment(loader=jinja2.DictLoader(sources), autoescape=True,
                              undefined=jinja2.StrictUndefined)


@functools.cache
def _static() -> dict[str, tuple[bytes, str]]:
    """name -> (content, type) of the console's static files."""
    folder = files(__package__ or "switchboard.core.admin") / "static"
    out = {}
    for item in folder.iterdir():
        kind = _STATIC_TYPES.get("." + item.name.rpartition(".")[2])
        if kind is not None:
            out[item.name] = (item.read_bytes(), kind)
    return out


def _error(message: str) -> dict[str, Any]:
    return {"type": "error", "data": {"message": message}}


def render(name: str, **context: Any) -> str:
    return _templates().get_template(name).render(**context)


class AdminConsole:
    """The console of one server: its login, its routes, its socket, the
    ring buffer of the last errors and the taps of the tailed rooms."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.config = app.config.admin
        #: URL path of the console and of its socket.
        self.path = self.config.path
        self.socket_path = f"{self.path}/socket"
        self.logins = Logins(self.config, app.config.api_keys)
        self.logouts = Logouts(app.store)
        self.errors = RecentErrors(self.config.max_errors)
        self._started = 0.0
        #: (tenant, room) -> the channels of the sockets tailing it.
        self._tails: dict[tuple[str, str], set[trio.MemorySendChannel[dict[str, Any]]]] = {}
        #: channel -> events dropped since it was last told.
        self._dropped: dict[trio.MemorySendChannel[dict[str, Any]], int] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Collect errors and tap publications while the server runs."""
        self._started = trio.current_time()
        logger = logging.getLogger("switchboard")
        logger.addHandler(self.errors)
        self.app.hub.taps.append(self._tap)
        self.app.on_announcement(LOGOUT_TOPIC, self._logged_out)
        try:
            for session_id, until in await self.logouts.current():
                self.logins.revoke(session_id, until)
        except StoreError as exc:
            log.error("admin console: the logouts could not be read (%s): a cookie "
                      "logged out before this start is accepted until it expires", exc)
        try:
            self._warn_of_risks()
            log.info("admin console at %s", self.path + "/")
            task_status.started()
            await trio.sleep_forever()
        finally:
            logger.removeHandler(self.errors)
            self.app.hub.taps.remove(self._tap)

    def _logged_out(self, announcement: Announcement) -> None:
        """A logout on any node (this one included): refuse that cookie here too."""
        data = announcement.data
        if not (isinstance(data, dict) and isinstance(data.get("id"), str)
                and isinstance(data.get("until"), int | float)):
            log.warning("admin console: ignored a malformed logout announcement from %s",
                        announcement.node)
            return
        self.logins.revoke(data["id"], float(data["until"]))

    def _warn_of_risks(self) -> None:
        """Say at start-up what makes the console less safe or less useful."""
        config = self.app.config
        if config.mode == "production" and not self.config.secure_cookie:
            log.warning("admin console: its cookie is not marked Secure: serve it over "
                        "HTTPS and set admin.secure_cookie = true")
        if config.broker.url.partition("://")[0] != "memory" and not self.config.secret:
            log.warning("admin console: no admin.secret: a login works only on the node "
                        "that issued it (give every node the same admin.secret)")

    # -- what the panels show ------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Every panel's data (``GET /admin/state.json``)."""
        return {
            "overview": panels.overview(self.app, self._started),
            "connections": panels.connections(self.app),
            "rooms": panels.rooms(self.app),
            "presence": panels.presence(self.app),
            "errors": panels.errors(self.errors),
            "plugins": panels.plugins(self.app),
        }

    def render_panels(self) -> dict[str, str]:
        """The live panels as HTML, by name."""
        return {
            "overview": render("overview.html", o=panels.overview(self.app, self._started)),
            "connections": render("connections.html", c=panels.connections(self.app)),
            "rooms": render("rooms.html", r=panels.rooms(self.app)),
            "presence": render("presence.html", p=panels.presence(self.app)),
            "errors": render("errors.html", e=panels.errors(self.errors)),
        }

    # -- the tail ------------------------------------------------------------

    def _tap(self, publication: Publication) -> None:
        if not self._tails:
            return
        if publication.tenant == ALL_TENANTS:  # to every tenant: each tenant:{id} room
            keys = [key for key in self._tails if key[1] == tenant_room(key[0])]
        else:
            keys = [(publication.tenant, publication.room)]
        for key in keys:
            channels = self._tails.get(key)
            if not channels:
                continue
            entry = panels.tail_entry(publication.tenant, publication.room,
                                      publication.event, publication.data)
            for channel in channels:
                try:
                    channel.send_nowait(entry)
                except trio.WouldBlock:
                    self._dropped[channel] = self._dropped.get(channel, 0) + 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    def _watch(self, key: tuple[str, str] | None,
               channel: trio.MemorySendChannel[dict[str, Any]]) -> None:
        for channels in self._tails.values():
            channels.discard(channel)
        self._tails = {k: v for k, v in self._tails.items() if v}
        if key is not None:
            self._tails.setdefault(key, set()).add(channel)

    # -- requests ------------------------------------------------------------

    def _session(self, cookies: Any) -> AdminSession | None:
        return self.logins.session(cookies.get(SESSION_COOKIE))

    @staticmethod
    def _same_origin(headers: Any) -> bool:
        """A browser's request comes from the console's own origin: its
        ``Origin`` (when it sends one) names the host it was sent to."""
        origin = headers.get("Origin")
        if origin is None:
            return True
        try:
            netloc = urlsplit(origin).netloc
        except ValueError:
            return False
        host = headers.get("Host", "")
        return bool(netloc) and netloc.lower() == host.lower()

    def _page(self, html: str, status: int = 200) -> Response:
        response = Response(html, status=status, content_type="text/html; charset=utf-8")
        response.headers.update(HEADERS)
        return response

    def _set_cookie(self, response: Response, name: str, value: str, max_age: float) -> None:
        response.set_cookie(name, value, max_age=int(max_age), path=self.path, httponly=True,
                            samesite="Strict",
                            secure=self.config.secure_cookie or request.scheme == "https")

    def _login_page(self, message: str = "", status: int = 200) -> Response:
        cookie, token = self.logins.new_form()
        response = self._page(render("login.html", path=self.path, csrf=token,
                                     message=message), status)
        self._set_cookie(response, LOGIN_COOKIE, cookie, LOGIN_FORM_TTL)
        return response

    def _go(self, where: str) -> Response:
        response = Response("", status=303, headers={"Location": f"{self.path}{where}"})
        response.headers.update(HEADERS)
        return response

    def _refuse(self, status: int, code: str, message: str) -> Response:
        response = error_response(status, code, message)
        response.headers.update(HEADERS)
        return response

    def _checked(self) -> AdminSession | Response:
        """The session of a POST that changes something, or the answer refusing
        it: no login (401), another origin or no CSRF token (403)."""
        session = self._session(request.cookies)
        if session is None:
            return self._refuse(401, "unauthorized", "log in to the console first")
        if not self._same_origin(request.headers):
            return self._refuse(403, "forbidden", "cross-origin request refused")
        return session

    async def _csrf_ok(self, session: AdminSession) -> bool:
        presented = request.headers.get("X-CSRF-Token")
        if presented is None and request.mimetype != "application/json":
            presented = (await request.form).get("csrf")
        return self.logins.csrf_ok(session, presented)

    def blueprint(self) -> Blueprint:
        bp = Blueprint("admin_console", __name__, url_prefix=self.path)

        @bp.get("")
        @documented("The console: redirects to its page", tags=["admin console"],
                    responses={302: "to the page"})
        async def bare() -> Response:
            return self._go("/")

        @bp.get("/")
        @documented("The console's page (HTML), or a redirect to its login",
                    tags=["admin console"], responses={200: "the page", 302: "to the login"})
        async def page() -> Response:
            session = self._session(request.cookies)
            if session is None:
                return self._go("/login")
            rendered = {name: Markup(html) for name, html in self.render_panels().items()}
            return self._page(render(
                "page.html", path=self.path, csrf=session.csrf, panels=rendered,
                plugins=panels.plugins(self.app), tail_size=self.config.tail_size,
                published=request.args.get("published") == "1"))

        @bp.get("/login")
        @documented("The console's login form (HTML)", tags=["admin console"],
                    responses={200: "the form", 302: "logged in already"})
        async def login_page() -> Response:
            if self._session(request.cookies) is not None:
                return self._go("/")
            return self._login_page()

        @bp.post("/login")
        @documented("Log in to the console (form: password, csrf)", tags=["admin console"],
                    body={"type": "object"}, body_media_type="application/x-www-form-urlencoded",
                    responses={302: "logged in: to the page", 401: "wrong password",
                               403: "another origin, or an expired form",
                               429: "too many attempts (Retry-After)"})
        async def login() -> Response:
            wait = self.logins.attempt(request.remote_addr or "-")
            if wait is not None:
                response = self._login_page("Too many attempts: wait and try again.", 429)
                response.headers["Retry-After"] = str(math.ceil(wait))
                return response
            if not self._same_origin(request.headers):
                return self._login_page("Refused: the form came from another site.", 403)
            form = await request.form
            if not self.logins.form_ok(request.cookies.get(LOGIN_COOKIE),
                                       form.get("csrf", "")):
                return self._login_page("The form had expired: try again.", 403)
            if not self.logins.password_ok(form.get("password", "")):
                log.warning("admin console: failed login from %s", request.remote_addr)
                return self._login_page("Wrong password.", 401)
            cookie, _ = self.logins.open()
            log.info("admin console: login from %s", request.remote_addr)
            response = self._go("/")
            self._set_cookie(response, SESSION_COOKIE, cookie, self.config.session_ttl)
            response.delete_cookie(LOGIN_COOKIE, path=self.path)
            return response

        @bp.post("/logout")
        @documented("Log out of the console", tags=["admin console"], auth=COOKIE_AUTH,
                    responses={302: "to the login"})
        async def logout() -> Response:
            checked = self._checked()
            if isinstance(checked, Response):
                return checked
            if not await self._csrf_ok(checked):
                return self._refuse(403, "csrf", "missing or wrong CSRF token")
            until = self.logins.close(checked)
            try:
                await self.logouts.add(checked.id, until)
            except StoreError as exc:
                log.warning("admin console: a logout could not be stored (%s): a restart "
                            "accepts its cookie again until it expires", exc)
            try:
                await self.app.announce(LOGOUT_TOPIC, {"id": checked.id, "until": until})
            except BrokerUnavailable:
                log.warning("admin console: a logout could not be told to the other nodes "
                            "(broker unreachable): the cookie stays valid there until it "
                            "expires")
            response = self._go("/login")
            response.delete_cookie(SESSION_COOKIE, path=self.path)
            return response

        @bp.get("/state.json")
        @documented("The console's panels as JSON", tags=["admin console"], auth=COOKIE_AUTH,
                    responses={200: "connections, rooms, presence, plugins, errors"})
        async def state() -> Response:
            if self._session(request.cookies) is None:
                return self._refuse(401, "unauthorized", "log in to the console first")
            response = Response(json.dumps(self.state()),
                                content_type="application/json")
            response.headers.update(HEADERS)
            return response

        @bp.post("/publish")
        @documented("Publish a test event (form, or JSON like POST /api/v1/emit)",
                    tags=["admin console"], auth=COOKIE_AUTH, body={"type": "object"},
                    responses={202: "published (JSON)", 302: "published (form)"})
        async def publish() -> Response:
            checked = self._checked()
            if isinstance(checked, Response):
                return checked
            if not await self._csrf_ok(checked):
                return self._refuse(403, "csrf", "missing or wrong CSRF token")
            as_json = request.mimetype == "application/json"
            fields = await read_json() if as_json else dict(await request.form)
            emit = self._emit_of(fields)
            await publish_emits(self.app, ApiKey("admin-console", "*", "admin console"), emit)
            log.info("admin console: published %s to %s of tenant %s", emit["event"],
                     emit.get("room") or tenant_room(emit["tenant"]), emit["tenant"])
            if not as_json:
                return self._go("/?published=1")
            response = Response(json.dumps({
                "published": 1, "tenant": emit["tenant"],
                "room": emit.get("room") or tenant_room(emit["tenant"])}),
                status=202, content_type="application/json")
            response.headers.update(HEADERS)
            return response

        @bp.get("/static/<name>")
        @documented("The console's script and style sheet", tags=["admin console"],
                    responses={200: "the file"})
        async def static(name: str) -> Response:
            found = _static().get(name)
            if found is None:
                return self._refuse(404, "not_found", f"no static file {name!r}")
            response = Response(found[0], content_type=found[1])
            response.headers.update(HEADERS)
            response.headers["Cache-Control"] = "no-cache"
            return response

        @bp.websocket("/socket")
        @documented("The console's live socket: a WebSocket upgrade (?csrf=TOKEN)",
                    tags=["admin console"], auth=COOKIE_AUTH,
                    responses={101: "switching protocols: panels and the tail, live"})
        async def socket() -> Response | None:
            session = self._session(websocket.cookies)
            if session is None:
                return self._refuse(401, "unauthorized", "log in to the console first")
            if not self._same_origin(websocket.headers):
                return self._refuse(403, "forbidden", "cross-origin console socket refused")
            if not self.logins.csrf_ok(session, websocket.args.get("csrf")):
                return self._refuse(403, "csrf", "missing or wrong CSRF token")
            await websocket.accept()
            await self._serve_socket(websocket.cookies.get(SESSION_COOKIE))
            return None

        return bp

    @staticmethod
    def _emit_of(fields: Any) -> dict[str, Any]:
        """The publish form's fields as an emit (``data``: JSON text)."""
        if not isinstance(fields, dict):
            raise ClientError(INVALID_PAYLOAD, "expected the form's fields as an object")
        emit: dict[str, Any] = {}
        for name in ("tenant", "event", "room"):
            value = fields.get(name)
            if value is not None and not isinstance(value, str):
                raise ClientError(INVALID_PAYLOAD, f"{name}: expected a string", field=name)
            if value and value.strip():
                emit[name] = value.strip()
        for name in ("tenant", "event"):
            if name not in emit:
                raise ClientError(INVALID_PAYLOAD, f"{name}: required", field=name)
        text = fields.get("data")
        if text is None or (isinstance(text, str) and not text.strip()):
            emit["data"] = None
        elif isinstance(text, str):
            try:
                emit["data"] = jsontext.loads(text)
            except ValueError:
                raise ClientError(INVALID_PAYLOAD, "data: not valid JSON",
                                  field="data") from None
        else:
            emit["data"] = text
        return emit

    # -- the console's socket ------------------------------------------------

    async def _serve_socket(self, cookie: str | None) -> None:
        send_lock = trio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with send_lock:
                await websocket.send(json.dumps(message))

        tail_in, tail_out = trio.open_memory_channel[dict[str, Any]](TAIL_BUFFER)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._push_panels, send, cookie, nursery.cancel_scope.cancel)
                nursery.start_soon(self._push_tail, send, tail_in, tail_out)
                await self._read_socket(send, tail_in)
                nursery.cancel_scope.cancel()
        finally:
            self._watch(None, tail_in)
            self._dropped.pop(tail_in, None)

    async def _read_socket(self, send: Callable[[dict[str, Any]], Any],
                           tail_in: trio.MemorySendChannel[dict[str, Any]]) -> None:
        while True:
            raw = await websocket.receive()
            try:  # (strict and depth-bounded, as every client's JSON)
                message = jsontext.loads(raw)
            except ValueError:
                message = None
            if not isinstance(message, dict) or message.get("type") != "tail":
                await send(_error('expected {"type": "tail", "tenant": ..., "room": ...}'))
                continue
            tenant, room = message.get("tenant") or "", message.get("room") or ""
            if not tenant and not room:
                self._watch(None, tail_in)
                await send({"type": "tailing", "data": {"tenant": "", "room": ""}})
                continue
            if not isinstance(tenant, str) or check_identifier(tenant) is not None:
                await send(_error("tenant: not a tenant id"))
                continue
            if not is_room_name(room):
                await send(_error("room: not a room name"))
                continue
            self._watch((tenant, room), tail_in)
            await send({"type": "tailing", "data": {"tenant": tenant, "room": room}})

    async def _push_panels(self, send: Callable[[dict[str, Any]], Any], cookie: str | None,
                           stop: Callable[[], None]) -> None:
        shown: dict[str, str] = {}
        while True:
            if self.logins.session(cookie) is None:  # logged out or expired
                await send({"type": "logged_out", "data": None})
                await websocket.close(LOGGED_OUT, "logged out")
                stop()
                return
            rendered = self.render_panels()
            changed = {name: html for name, html in rendered.items() if shown.get(name) != html}
            if changed:
                await send({"type": "panels", "data": changed})
                shown.update(changed)
            await trio.sleep(self.config.refresh)

    async def _push_tail(self, send: Callable[[dict[str, Any]], Any],
                         tail_in: trio.MemorySendChannel[dict[str, Any]],
                         tail_out: trio.MemoryReceiveChannel[dict[str, Any]]) -> None:
        async for entry in tail_out:
            await send({"type": "tail", "data": {"html": render("tail_row.html", t=entry),
                                                 "event": entry["event"]}})
            dropped = self._dropped.pop(tail_in, 0)
            if dropped:
                await send({"type": "dropped", "data": {"count": dropped}})
