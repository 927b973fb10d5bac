"""Seeds 000, 001 and 003 behind their own backends, frontends unchanged: the
shipped configs in config/seeds/, a real HTTP backend playing the seed's
backend, and the seeds' real clients (socket.io-client in Node for the
Next.js CRM and PyTake, a plain WebSocket for sysZap)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from backends import Backend, backend_fixture  # noqa: F401  (the backend fixture)
from databases import database_url
from socketio_fixtures import (  # noqa: F401  (fixtures are found by name)
    TIMEOUT,
    NodeClients,
    node_fixture,
    node_modules_fixture,
)
from switchboard.core.config import Config, load_config, merge, structure_config
from switchboard.testing import TEST_API_KEY, TEST_SECRET, Harness
from trio_websocket import ConnectionRejected, open_websocket_url

SEEDS = Path(__file__).resolve().parent.parent / "config" / "seeds"


def seed_config(name: str, backend: Backend, urls: dict[str, str],
                store: str = "sqlite://") -> Config:
    """The shipped seed config, its backend URLs pointed at the test's backend
    through the environment (as a deployment overrides them), with the test
    secret, API key and an in-memory store."""
    environ = {f"SWITCHBOARD_PLUGINS__PROXY__{key.upper()}": json.dumps(backend.url(path))
               for key, path in urls.items()}
    shipped = attrs.asdict(load_config(SEEDS / name, environ))
    return structure_config(merge(shipped, {
        "auth": {"secret": TEST_SECRET},
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"}],
        "store": {"url": store}, "server": {"port": 0}}))


class TestNextCRM:
    """Seed 000: io({path: "/api/socket"}) with no token; the NextAuth session
    cookie, checked by the CRM's backend."""

    SESSIONS = {"cookie-of-consultant-1": "consultant-1", "cookie-of-manager-1": "manager-1",
                "cookie-of-client-5": "client-5", "cookie-of-client-6": "client-6"}
    #: canAccessLead: the CRM's customers and their leads
    CUSTOMERS = {"client-5": "123"}

    @pytest.fixture(params=["sqlite", "postgresql"])
    def switchboard_config(self, request: pytest.FixtureRequest, backend: Backend,
                           tmp_path: Path) -> Iterator[Config]:
        with database_url(request.param, tmp_path, tables=True) as url:
            yield seed_config("nextcrm.toml", backend, {
                "connect_url": "/api/switchboard/connect",
                "join_url": "/api/switchboard/join",
                "event_url": "/api/switchboard/event"}, store=url)

    def crm_backend(self, backend: Backend) -> None:
        def connect(body: dict[str, Any]) -> Any:
            user = self.SESSIONS.get(body["cookies"].get("next-auth.session-token", ""))
            if user is None:
                return {"error": {"code": "unauthenticated", "message": "log in first",
                                  "status": 401}}
            role = "customer" if user.startswith("client-") else "agent"
            return {"result": {"user": user, "tenant": "crm", "role": role}}

        def join(body: dict[str, Any]) -> Any:  # canAccessLead(userId, leadId)
            lead = body["room"].removeprefix("lead:")
            if body["role"] == "customer":
                return {"result": {"allow": self.CUSTOMERS.get(body["user"]) == lead}}
            return {"result": {"allow": lead != "999"}}

        def event(body: dict[str, Any]) -> Any:
            if body["event"] == "lead:status_change":
                change = body["payload"]
                return {"result": {"success": True},
                        "publish": [{"room": f"lead:{change['leadId']}",
                                     "event": "lead:status_changed",
                                     "data": {**change, "changedBy": body["user"]}}]}
            return {"error": {"code": "not_supported", "message": body["event"]}}

        backend.on("/api/switchboard/connect", connect)
        backend.on("/api/switchboard/join", join)
        backend.on("/api/switchboard/event", event)

    async def open(self, node: NodeClients, name: str, cookie: str | None) -> None:
        headers = {"Cookie": f"next-auth.session-token={cookie}; theme=dark"} if cookie \
            else {}
        await node.send(op="connect", client=name, url=node.base_url, answers={},
                        opts={"path": "/api/socket", "extraHeaders": headers})

    async def test_the_crm_connects_with_its_session_cookie_and_leads_go_to_its_backend(
            self, switchboard_live: Harness, node: NodeClients, backend: Backend) -> None:
        self.crm_backend(backend)
        for name, cookie in (("consultant", "cookie-of-consultant-1"),
                             ("manager", "cookie-of-manager-1")):
            await self.open(node, name, cookie)
            await node.expect(name, "connect")
        await node.emit("consultant", "authenticate",
                        {"userId": "consultant-1", "role": "consultant"})
        assert (await node.expect("consultant", "event", event="authenticated"))["args"][0][
            "userId"] == "consultant-1"
        for name in ("consultant", "manager"):
            ack = await node.call(name, "lead:join", "123")
            assert "lead:123" in ack["args"][0]["rooms"]
        await node.emit("manager", "lead:status_change",
                        {"leadId": "123", "newStatus": "qualificacao"})
        changed = await node.expect("consultant", "event", event="lead:status_changed")
        assert changed["args"][0] == {"leadId": "123", "newStatus": "qualificacao",
                                      "changedBy": "manager-1"}
        forwarded = backend.calls_to("/api/switchboard/connect")[0].json
        assert forwarded["cookies"] == {"next-auth.session-token": "cookie-of-consultant-1"}
        assert forwarded["path"] == "/api/socket/"

    async def test_a_lead_only_the_backend_knows_has_its_chat_both_ways(
            self, switchboard_live: Harness, node: NodeClients, backend: Backend) -> None:
        """The backend's join proxy lets the lead's customer into lead:123:
        its conversation is there for them and the consultants, no
        registration first; another customer is refused by the backend."""
        self.crm_backend(backend)
        for name, cookie in (("consultant", "cookie-of-consultant-1"),
                             ("customer", "cookie-of-client-5"),
                             ("other", "cookie-of-client-6")):
            await self.open(node, name, cookie)
            await node.expect(name, "connect")
        for name in ("consultant", "customer"):
            ack = await node.call(name, "lead:join", "123")
            assert ack["args"][0]["rooms"] == ["lead:123", "conversation:123"]
        refused = await node.call("other", "lead:join", "123")
        assert refused["args"][0]["error"]["code"] == "forbidden"
        await node.emit("customer", "chat:message", {"leadId": "123", "message": "Oi"})
        message = (await node.expect("consultant", "event", event="chat:new_message"))["args"]
        assert message[0]["leadId"] == "123" and message[0]["sender"] == "client-5"
        await node.emit("consultant", "chat:message", {"leadId": "123", "message": "Olá!"})
        reply = (await node.expect("customer", "event", event="chat:new_message"))["args"]
        assert reply[0]["message"] == "Olá!" and reply[0]["sender"] == "consultant-1"
        assert node.received("other", "event", event="chat:new_message") == []
        not_theirs = await node.call("other", "chat:message", {"leadId": "123",
                                                               "message": "psst"})
        assert not_theirs["args"][0]["error"]["code"] == "forbidden"

    async def test_switchboards_leads_stay_switchboards_and_the_backends_go_to_it(
            self, switchboard_live: Harness, node: NodeClients, backend: Backend) -> None:
        """Both kinds of lead in one deployment: a lead created in the pipeline
        (POST /api/v1/leads) is changed by the pipeline, with no call to the
        backend; lead 123, which only the backend knows, goes to its event proxy."""
        self.crm_backend(backend)
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(
                switchboard_live.http_url("/api/v1/leads"),
                headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                json={"tenant": "crm", "id": "sb-1", "title": "Switchboard's lead"})
        assert response.status_code == 201
        for name, cookie in (("consultant", "cookie-of-consultant-1"),
                             ("manager", "cookie-of-manager-1")):
            await self.open(node, name, cookie)
            await node.expect(name, "connect")
            for lead in ("sb-1", "123"):
                await node.call(name, "lead:join", lead)
        await node.emit("manager", "lead:status_change",
                        {"leadId": "sb-1", "newStatus": "proposta"})
        ours = (await node.expect("consultant", "event", event="lead:status_changed"))["args"]
        assert (ours[0]["leadId"], ours[0]["oldStatus"], ours[0]["newStatus"]) == (
            "sb-1", "novo", "proposta")
        assert backend.calls_to("/api/switchboard/event") == []
        await node.emit("manager", "lead:status_change",
                        {"leadId": "123", "newStatus": "qualificacao"})
        theirs = (await node.expect("consultant", "event", event="lead:status_changed"))["args"]
        assert theirs[0] == {"leadId": "123", "newStatus": "qualificacao",
                             "changedBy": "manager-1"}
        assert len(backend.calls_to("/api/switchboard/event")) == 1

    async def test_without_a_session_the_crm_gets_the_backends_refusal(
            self, switchboard_live: Harness, node: NodeClients, backend: Backend) -> None:
        self.crm_backend(backend)
        await self.open(node, "visitor", None)
        refused = await node.expect("visitor", "connect_error")
        assert refused["message"] == "log in first"
        assert refused["data"]["code"] == "unauthenticated"


class TestSysZap:
    """Seed 003: ws://HOST/ws?companyId=..&userId=.., vouched for by the backend."""

    @pytest.fixture
    def switchboard_config(self, backend: Backend) -> Config:
        return seed_config("syszap.toml", backend,
                           {"connect_url": "/switchboard/connect"})

    async def test_the_session_page_connects_and_receives_the_qr_code(
            self, switchboard_live: Harness, backend: Backend) -> None:
        def connect(body: dict[str, Any]) -> Any:
            query = body["query"]
            if body["cookies"].get("sz_session") != f"session-of-{query.get('userId')}":
                return {"error": {"code": "forbidden", "message": "not your company"}}
            return {"result": {"user": query["userId"], "tenant": query["companyId"],
                               "role": "agent"}}

        backend.on("/switchboard/connect", connect)
        host, port = switchboard_live.server.addresses[0]
        url = f"ws://{host}:{port}/ws?companyId=company-1&userId=user-7"
        async with open_websocket_url(url, extra_headers=[
                ("Cookie", "sz_session=session-of-user-7")]) as ws:
            with trio.fail_after(TIMEOUT):
                session = json.loads(await ws.get_message())
            assert (session["data"]["user_id"], session["data"]["tenant_id"]) == (
                "user-7", "company-1")
            # the sysZap backend's SessionController publishes the QR code
            async with httpx.AsyncClient(timeout=60) as http:
                response = await http.post(
                    switchboard_live.http_url("/api/v1/emit"),
                    headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                    json={"event": "qr_code", "tenant": "company-1",
                          "data": {"sessionId": "s1", "qrCode": "data:image/png;base64,AA"}})
            assert response.status_code == 202
            with trio.fail_after(TIMEOUT):
                while (frame := json.loads(await ws.get_message()))["type"] != "qr_code":
                    pass
            assert frame["data"]["sessionId"] == "s1"
        with pytest.raises(ConnectionRejected) as info:  # someone else's company
            async with open_websocket_url(url, extra_headers=[
                    ("Cookie", "sz_session=session-of-user-8")]):
                pass
        assert info.value.status_code == 403


class TestPyTake:
    """Seed 001: joins of conversations that live in PyTake's own database."""

    KNOWN = {"org-1": {"5f0c8d6e-2b1c-4b7e-9a51-3f4f4a2f9c11": ["agent-1", "contact-9"]}}

    @pytest.fixture(params=["sqlite", "postgresql"])
    def switchboard_config(self, request: pytest.FixtureRequest, backend: Backend,
                           tmp_path: Path) -> Iterator[Config]:
        with database_url(request.param, tmp_path, tables=True) as url:
            yield seed_config("pytake.toml", backend,
                              {"join_url": "/api/v1/switchboard/join"}, store=url)

    def pytake_backend(self, backend: Backend) -> None:
        def join(body: dict[str, Any]) -> Any:
            conversation = body["room"].removeprefix("conversation:")
            members = self.KNOWN.get(body["tenant"], {}).get(conversation)
            if members is None:
                return {"error": {"code": "not_found",
                                  "message": f"conversation {conversation} not found"}}
            return {"result": {"allow": body["role"] == "agent" or body["user"] in members}}

        backend.on("/api/v1/switchboard/join", join)

    async def test_the_backend_publishes_its_own_message_shapes_with_its_own_ids(
            self, switchboard_live: Harness, node: NodeClients, backend: Backend) -> None:
        """PyTake's emit_to_conversation('message:new', message_dict) and
        ('message:status', {message_id, status, timestamp}) through the emit
        API: the frontend gets them as the backend built them (UUIDs kept); a
        payload that fits no shape is a 400 naming the field and nothing is
        delivered."""
        self.pytake_backend(backend)
        conv = "5f0c8d6e-2b1c-4b7e-9a51-3f4f4a2f9c11"
        options: dict[str, Any] = {"path": "/socket.io", "transports": ["websocket", "polling"]}
        for name, user in (("agent", "agent-1"), ("contact", "contact-9")):
            role = "agent" if name == "agent" else "customer"
            await node.connected(name, switchboard_live.token(user, "org-1", role), **options)
            await node.emit(name, "join_conversation", {"conversation_id": conv})
            await node.expect(name, "event", event="joined_conversation")
        message = {"id": "0f5c6d1e-3b1a-4c8e-9f47-2a7d0c1b9e55", "conversation_id": conv,
                   "direction": "outbound", "sender_type": "agent", "message_type": "text",
                   "content": {"text": "Olá! Como posso ajudar?"}, "status": "sent",
                   "whatsapp_message_id": None, "created_at": "2026-11-29T12:00:00+00:00",
                   "sent_at": "2026-11-29T12:00:00+00:00"}
        status = {"message_id": message["id"], "status": "delivered",
                  "timestamp": "2026-11-29T12:00:02+00:00"}
        async with httpx.AsyncClient(timeout=60) as http:
            async def emit(event: str, data: Any) -> httpx.Response:
                return await http.post(
                    switchboard_live.http_url("/api/v1/emit"),
                    headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                    json={"event": event, "tenant": "org-1", "room": f"conversation:{conv}",
                          "data": data})

            broken = await emit("message:new", {**message, "conversation_id": None})
            assert broken.status_code == 400
            assert broken.json()["field"] == "data.conversation_id"
            assert (await emit("message:status", {"message_id": message["id"]})).json()[
                "field"] == "data.status"
            assert (await emit("message:new", message)).status_code == 202
            assert (await emit("message:status", status)).status_code == 202
        for name in ("agent", "contact"):
            new = await node.expect(name, "event", event="message:new")
            assert new["args"][0] == message  # the refused one never arrived
            assert (await node.expect(name, "event", event="message:status"))["args"][0] \
                == status

    async def test_agents_join_conversations_their_backend_knows(
            self, switchboard_live: Harness, node: NodeClients, backend: Backend) -> None:
        def join(body: dict[str, Any]) -> Any:
            conversation = body["room"].removeprefix("conversation:")
            members = self.KNOWN.get(body["tenant"], {}).get(conversation)
            if members is None:
                return {"error": {"code": "not_found",
                                  "message": f"conversation {conversation} not found"}}
            return {"result": {"allow": body["role"] == "agent" or body["user"] in members}}

        backend.on("/api/v1/switchboard/join", join)
        conv = "5f0c8d6e-2b1c-4b7e-9a51-3f4f4a2f9c11"
        options: dict[str, Any] = {"path": "/socket.io", "transports": ["websocket", "polling"]}
        await node.connected("agent", switchboard_live.token("agent-1", "org-1", "agent"),
                             **options)
        await node.connected("outsider", switchboard_live.token("contact-7", "org-1",
                                                                "customer"), **options)
        await node.emit("agent", "join_conversation", {"conversation_id": conv})
        joined = await node.expect("agent", "event", event="joined_conversation")
        assert joined["args"][0]["conversation_id"] == conv
        await node.emit("outsider", "join_conversation", {"conversation_id": conv})
        refused = await node.expect("outsider", "event", event="error")
        assert "not allowed" in refused["args"][0]["message"]
        await node.emit("agent", "join_conversation", {"conversation_id": "unknown-1"})
        unknown = await node.expect("agent", "event", event="error")
        assert "unknown-1 not found" in unknown["args"][0]["message"]
        # the backend's own broadcast to the conversation reaches the agent
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(
                switchboard_live.http_url("/api/v1/emit"),
                headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                json={"event": "conversation:assigned", "tenant": "org-1",
                      "room": f"conversation:{conv}", "data": {"agent_id": "agent-1"}})
        assert response.status_code == 202
        assigned = await node.expect("agent", "event", event="conversation:assigned")
        assert assigned["args"][0] == {"agent_id": "agent-1"}
