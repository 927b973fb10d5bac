"""Seeds 004 and 002 (ConectCRM's /atendimento gateways) on the desk plugin:
the shipped configs, the seeds' documented flows replayed through the real
socket.io-client, two agents and a customer at once, the backend only
creating tickets and posting messages through the HTTP API. On a SQLite file
and on a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from databases import database_url
from socketio_fixtures import (  # noqa: F401  (fixtures are found by name)
    TIMEOUT,
    NodeClients,
    node_fixture,
    node_modules_fixture,
)
from switchboard.core.config import Config, load_config, merge, structure_config
from switchboard.testing import TEST_API_KEY, TEST_SECRET, Harness

SEEDS = Path(__file__).resolve().parent.parent / "config" / "seeds"
NS = "/atendimento"


def seed_config(name: str, url: str) -> Config:
    shipped = attrs.asdict(load_config(SEEDS / name, {}))
    return structure_config(merge(shipped, {
        "auth": {"secret": TEST_SECRET},
        "api_keys": [{"key": TEST_API_KEY, "tenant": "*", "name": "tests"}],
        "store": {"url": url}, "server": {"port": 0},
        "plugins": {"desk": {"offline_grace": 0.2}}}))


async def backend(live: Harness, method: str, path: str, body: Any = None) -> Any:
    """ConectCRM's backend calling Switchboard's HTTP API."""
    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(TIMEOUT):
            response = await http.request(method, live.http_url(path), json=body,
                                          headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert response.status_code < 300, response.text
    return response.json()


async def event(node: NodeClients, client: str, name: str) -> Any:
    report = await node.expect(client, "event", event=name)
    return report["args"][0] if report["args"] else None


async def quiet(node: NodeClients, client: str, name: str) -> None:
    """``client`` got no ``name`` event (after letting deliveries in flight land)."""
    await trio.sleep(0.3)
    assert node.received(client, "event", event=name) == []


def token(live: Harness, user: str, role: str, company: str = "empresa-1") -> str:
    return live.token(user, company, role, empresaId=company)


async def connect_desk(live: Harness, node: NodeClients, online: str) -> None:
    """Agents ana and bob, customer carla, on /atendimento (each agent has
    heard of their own coming ``online``)."""
    for name, role in (("ana", "atendente"), ("bob", "atendente"), ("carla", "cliente")):
        await node.connected(name, token(live, name, role), namespace=NS)
        if role == "atendente":
            await event(node, name, online)


class TestConectCRM:
    """Seed 004: io("http://HOST/atendimento", {auth: {token}})."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def switchboard_config(self, request: pytest.FixtureRequest,
                           tmp_path: Path) -> Iterator[Config]:
        with database_url(request.param, tmp_path, tables=True) as url:
            yield seed_config("conectcrm.toml", url)

    async def test_the_documented_atendimento_flow(self, switchboard_live: Harness,
                                                   node: NodeClients) -> None:
        live = switchboard_live
        await connect_desk(live, node, "atendente:online")
        online = await event(node, "ana", "atendente:online")
        assert online["atendenteId"] == "bob" and online["status"] == "online"
        assert "timestamp" in online

        # a WhatsApp message opens a ticket: ticket:novo and, nobody holding
        # it, mensagem:nao-atribuida to the agents
        ticket = await backend(live, "POST", "/api/v1/tickets", {
            "tenant": "empresa-1", "subject": "Pedido atrasado", "customerId": "carla",
            "channel": "whatsapp", "message": {"text": "Oi, meu pedido?"}})
        ticket_id = ticket["id"]
        for name in ("ana", "bob"):
            novo = await event(node, name, "ticket:novo")
            assert novo["id"] == ticket_id and novo["numero"] == "1"
            assert novo["status"] == "aberto" and novo["prioridade"] == "media"
            assert novo["clienteId"] == "carla" and novo["canalId"] == "whatsapp"
            orphan = await event(node, name, "mensagem:nao-atribuida")
            assert orphan["mensagem"]["conteudo"] == "Oi, meu pedido?"
            assert orphan["ticket"]["id"] == ticket_id

        # ticket:entrar, acked {success, ticketId}, by the agents and the customer
        for name in ("ana", "bob", "carla"):
            ack = await node.call(name, "ticket:entrar", {"ticketId": ticket_id})
            assert ack["args"][0] == {"success": True, "ticketId": ticket_id}
        refused = await node.call("bob", "ticket:entrar", {"ticketId": "nao-existe"})
        assert refused["args"][0]["success"] is False and refused["args"][0]["error"]

        # mensagem:digitando to the ticket's room, not back to the typist
        await node.emit("ana", "mensagem:digitando", {"ticketId": ticket_id})
        for name in ("bob", "carla"):
            assert await event(node, name, "mensagem:digitando") == {
                "ticketId": ticket_id, "usuarioId": "ana"}
        await quiet(node, "ana", "mensagem:digitando")

        # a message of the ticket: mensagem:nova in the ticket's room
        await backend(live, "POST", f"/api/v1/conversations/{ticket['conversationId']}/messages",
                      {"tenant": "empresa-1", "senderId": "carla", "senderRole": "cliente",
                       "content": {"text": "Alguém aí?"}})
        for name in ("ana", "bob", "carla"):
            nova = await event(node, name, "mensagem:nova")
            assert nova["ticketId"] == ticket_id and nova["ticketNumero"] == "1"
            assert nova["conteudo"] == "Alguém aí?" and nova["tipo"] == "texto"
            assert nova["remetenteId"] == "carla" and "criadoEm" in nova

        # ana takes it: ticket:atribuido
        await backend(live, "POST", f"/api/v1/tickets/{ticket_id}/assign",
                      {"tenant": "empresa-1", "assigneeId": "ana"})
        atribuido = await event(node, "ana", "ticket:atribuido")
        assert atribuido["ticketId"] == ticket_id and atribuido["atendenteId"] == "ana"
        assert atribuido["status"] == "em_atendimento"

        # atendente:status with the seed's values, to the other agents
        ack = await node.call("ana", "atendente:status", {"status": "ocupado"})
        assert ack["args"][0]["status"] == "ocupado"
        changed = await event(node, "bob", "atendente:status")
        while changed["atendenteId"] != "ana":
            changed = await event(node, "bob", "atendente:status")
        assert changed["status"] == "ocupado"

        # ticket:atualizado and ticket:status
        await backend(live, "PATCH", f"/api/v1/tickets/{ticket_id}",
                      {"tenant": "empresa-1", "subject": "Pedido 123 atrasado"})
        atualizado = await event(node, "bob", "ticket:atualizado")
        assert atualizado["ticketId"] == ticket_id
        assert atualizado["assunto"] == "Pedido 123 atrasado"
        await backend(live, "PATCH", f"/api/v1/tickets/{ticket_id}",
                      {"tenant": "empresa-1", "status": "pending"})
        status = await event(node, "carla", "ticket:status")
        assert status == {**status, "ticketId": ticket_id, "status": "aguardando_cliente"}

        # notificacao to one user
        await backend(live, "POST", "/api/v1/notifications", {
            "tenant": "empresa-1", "user": "bob", "title": "Ticket", "type": "ticket",
            "message": "Você foi mencionado"})
        notificacao = await event(node, "bob", "notificacao")
        assert notificacao["tipo"] == "ticket"
        assert notificacao["mensagem"] == "Você foi mencionado"

        # ticket:sair: no more of the ticket's messages
        ack = await node.call("bob", "ticket:sair", {"ticketId": ticket_id})
        assert ack["args"][0] == {"success": True, "ticketId": ticket_id}
        await backend(live, "POST", f"/api/v1/conversations/{ticket['conversationId']}/messages",
                      {"tenant": "empresa-1", "senderId": "ana", "senderRole": "atendente",
                       "content": {"text": "Já verifico"}})
        assert (await event(node, "carla", "mensagem:nova"))["conteudo"] == "Já verifico"
        await quiet(node, "bob", "mensagem:nova")

        # disconnecting: atendente:offline after the grace
        await node.send(op="close", client="bob")
        offline = await event(node, "ana", "atendente:offline")
        assert offline["atendenteId"] == "bob" and offline["status"] == "offline"

    async def test_a_customer_enters_only_their_own_ticket(
            self, switchboard_live: Harness, node: NodeClients) -> None:
        live = switchboard_live
        ticket = await backend(live, "POST", "/api/v1/tickets", {
            "tenant": "empresa-1", "subject": "Dúvida", "customerId": "carla"})
        await node.connected("dora", token(live, "dora", "cliente"), namespace=NS)
        await node.connected("eve", token(live, "eve", "atendente", "empresa-2"),
                             namespace=NS)
        for name in ("dora", "eve"):
            ack = await node.call(name, "ticket:entrar", {"ticketId": ticket["id"]})
            assert ack["args"][0]["success"] is False
        for status in ("dormindo", [], {}, None, 1):
            bad = await node.call("eve", "atendente:status", {"status": status})
            assert bad["args"][0]["error"]["code"] == "invalid_payload", status
            assert bad["args"][0]["error"]["field"] == "status"
        refused = await node.call("dora", "atendente:status", {"status": "online"})
        assert refused["args"][0]["error"]["code"] == "forbidden"


class TestConectCRMLegacy:
    """Seed 002: the useWebSocket hook's events, now emitted by the desk itself."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def switchboard_config(self, request: pytest.FixtureRequest,
                           tmp_path: Path) -> Iterator[Config]:
        with database_url(request.param, tmp_path, tables=True) as url:
            yield seed_config("conectcrm_legacy.toml", url)

    async def test_the_omnichannel_flow(self, switchboard_live: Harness,
                                        node: NodeClients) -> None:
        live = switchboard_live
        await connect_desk(live, node, "agent_online")
        assert (await event(node, "ana", "agent_online")) == {"agentId": "bob"}
        await backend(live, "POST", "/api/v1/queues", {
            "tenant": "empresa-1", "id": "financeiro", "name": "Financeiro", "members": []})

        ticket = await backend(live, "POST", "/api/v1/tickets", {
            "tenant": "empresa-1", "subject": "Boleto", "customerId": "carla",
            "channel": "whatsapp"})
        ticket_id, conversation = ticket["id"], ticket["conversationId"]
        for name in ("ana", "bob"):
            assert (await event(node, name, "novo_ticket"))["id"] == ticket_id
        for name in ("ana", "bob", "carla"):
            ack = await node.call(name, "ticket:entrar", {"ticketId": ticket_id})
            assert ack["args"][0]["success"] is True

        # Teste 1: the customer's WhatsApp message; Teste 2: the agent's reply
        await backend(live, "POST", f"/api/v1/conversations/{conversation}/messages",
                      {"tenant": "empresa-1", "senderId": "carla", "senderRole": "cliente",
                       "content": {"text": "Cadê meu boleto?"}})
        for name in ("ana", "bob", "carla"):
            mensagem = await event(node, name, "nova_mensagem")
            assert mensagem["ticketId"] == ticket_id
            assert mensagem["remetente"]["tipo"] == "cliente"
            assert mensagem["conteudo"] == "Cadê meu boleto?" and mensagem["anexos"] == []
        reply = await backend(live, "POST", f"/api/v1/conversations/{conversation}/messages",
                              {"tenant": "empresa-1", "senderId": "ana",
                               "senderRole": "atendente", "content": {"text": "Enviado!"}})
        for name in ("bob", "carla"):
            mensagem = await event(node, name, "nova_mensagem")
            assert mensagem["remetente"] == {"id": "ana", "nome": "Atendente", "foto": None,
                                             "tipo": "atendente"}
            assert mensagem["status"] == "enviado"

        await node.emit("ana", "user_typing", {"ticketId": ticket_id})
        assert await event(node, "carla", "user_typing") == {"ticketId": ticket_id,
                                                              "userId": "ana"}

        # the customer's client marks the reply read: message_read to the agents
        await node.call("carla", "message:read", {"conversationId": conversation,
                                                  "messageId": reply["id"]})
        read = await event(node, "ana", "message_read")
        assert read["messageId"] == str(reply["id"]) and read["ticketId"] == ticket_id

        await backend(live, "POST", f"/api/v1/tickets/{ticket_id}/assign",
                      {"tenant": "empresa-1", "assigneeId": "ana"})
        assert (await event(node, "bob", "ticket_atualizado"))["atendenteId"] == "ana"
        await backend(live, "POST", f"/api/v1/tickets/{ticket_id}/transfer",
                      {"tenant": "empresa-1", "queueId": "financeiro",
                       "note": "segunda via", "by": "ana"})
        transferido = await event(node, "bob", "ticket_transferido")
        assert transferido["filaId"] == "financeiro" and transferido["deAtendenteId"] == "ana"
        assert transferido["observacao"] == "segunda via"
        await backend(live, "POST", f"/api/v1/tickets/{ticket_id}/close",
                      {"tenant": "empresa-1"})
        for name in ("ana", "bob", "carla"):
            assert (await event(node, name, "ticket_encerrado"))["status"] == "fechado"
