"""Compatibility profiles of the service desk's frontends (ConectCRM's
``/atendimento`` namespace): the seed frontends keep their event names and
payloads, and their backends no longer publish ticket events by hand.

- ``conectcrm`` (the documented gateway): ``ticket:entrar`` / ``ticket:sair``
  acked ``{success, ticketId}`` (``{success: false, error}`` when refused),
  ``mensagem:digitando {ticketId}``, ``atendente:status {status: online,
  ocupado, ausente, offline}``; out ``mensagem:nova``, ``mensagem:digitando``,
  ``mensagem:nao-atribuida``, ``ticket:novo``, ``ticket:atualizado``,
  ``ticket:atribuido``, ``ticket:status``, ``atendente:online``,
  ``atendente:offline``, ``atendente:status``, ``notificacao``.
- ``conectcrm_legacy`` (the earlier gateway): ``novo_ticket``,
  ``nova_mensagem`` with ``remetente {id, nome, foto, tipo: cliente or
  atendente}``, ``ticket_atualizado``, ``ticket_transferido``,
  ``ticket_encerrado``, ``agent_online``, ``user_typing``,
  ``message_delivered``, ``message_read``; in, the same ``ticket:entrar`` /
  ``ticket:sair`` and ``user_typing {ticketId}``.

Messages of a ticket come from ``ticket:message`` (to ``ticket:{id}``, with
the ticket), so the plain ``message:new`` of the conversation is dropped.
"""

from __future__ import annotations

import datetime
from typing import Any

from switchboard.core import ClientError
from switchboard.core.profiles import Inbound, Profile

from .payloads import CONVERSATION_PREFIX, TICKET_ROOM

STATUS_PT = {"open": "aberto", "in_progress": "em_atendimento",
             "pending": "aguardando_cliente", "resolved": "resolvido", "closed": "fechado"}
PRIORITY_PT = {"low": "baixa", "normal": "media", "high": "alta", "urgent": "urgente"}
AGENT_STATUS_PT = {"online": "online", "busy": "ocupado", "away": "ausente",
                   "offline": "offline"}
AGENT_STATUS = {pt: en for en, pt in AGENT_STATUS_PT.items()}
TYPE_PT = {"text": "texto", "image": "imagem", "audio": "audio", "video": "video",
           "document": "arquivo"}


def _iso(timestamp: float | None = None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def _get(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


def _ticket_id(data: Any) -> dict[str, Any]:
    value = _get(data, "ticketId")
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        raise ClientError("invalid_payload", "ticketId required", field="ticketId")
    return {"ticketId": str(value)}


def _typing(data: Any) -> dict[str, Any]:
    return {"room": TICKET_ROOM + _ticket_id(data)["ticketId"]}


def ticket_pt(ticket: dict[str, Any]) -> dict[str, Any]:
    """A ticket in ConectCRM's shape."""
    return {
        "id": ticket["id"], "ticketId": ticket["id"], "numero": str(ticket["number"]),
        "clienteId": ticket["customerId"], "canalId": ticket["channel"],
        "filaId": ticket["queueId"], "atendenteId": ticket["assigneeId"],
        "status": STATUS_PT.get(ticket["status"], ticket["status"]),
        "prioridade": PRIORITY_PT.get(ticket["priority"], ticket["priority"]),
        "assunto": ticket["subject"], "tags": ticket["tags"], "versao": ticket["version"],
        "criadoEm": _iso(ticket["createdAt"]), "atualizadoEm": _iso(ticket["updatedAt"]),
    }


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or {}
    return str(content.get("text", content.get("url", "")))


def message_pt(message: dict[str, Any], ticket: dict[str, Any]) -> dict[str, Any]:
    """A ticket's message as ``mensagem:nova`` carries it."""
    conversation = str(message["conversationId"])
    return {
        "id": str(message["id"]),
        "ticketId": ticket["id"] if ticket else conversation.removeprefix(CONVERSATION_PREFIX),
        "ticketNumero": str(ticket["number"]) if ticket else None,
        "remetenteId": message["senderId"],
        "atendenteId": ticket.get("assigneeId") if ticket else None,
        "tipo": TYPE_PT.get(message.get("type", "text"), "arquivo"),
        "conteudo": _text(message),
        "metadados": {k: v for k, v in (message.get("content") or {}).items() if k != "text"},
        "criadoEm": _iso(message.get("createdAt")),
    }


def _with_ticket(event: str, extra: Any = None) -> Any:
    def translate(data: dict[str, Any]) -> tuple[str, Any]:
        body = ticket_pt(data["ticket"])
        if extra is not None:
            body.update(extra(data))
        return event, body
    return translate


def _typing_out(event: str, key: str) -> Any:
    def translate(data: dict[str, Any]) -> tuple[str, Any] | None:
        room = data.get("room")
        if not isinstance(room, str) or not room.startswith(TICKET_ROOM) \
                or not data.get("typing"):
            return None
        return event, {"ticketId": room.removeprefix(TICKET_ROOM), key: data.get("userId")}
    return translate


def _status_pt(status: Any) -> Any:
    return AGENT_STATUS_PT.get(status, status) if isinstance(status, str) else status


def _agent(event: str) -> Any:
    def translate(data: dict[str, Any]) -> tuple[str, Any]:
        return event, {"atendenteId": data["userId"],
                       "status": AGENT_STATUS_PT.get(data["status"], data["status"]),
                       "timestamp": _iso(data.get("at"))}
    return translate


def _joined(result: Any) -> dict[str, Any]:
    if _get(result, "success") is True:
        return {"success": True, "ticketId": _get(result, "ticketId")}
    return {"success": False, "error": _get(_get(result, "error"), "message") or "not joined"}


def _agent_status(data: Any) -> dict[str, Any]:
    status = _get(data, "status")
    if not isinstance(status, str) or status not in AGENT_STATUS:
        raise ClientError("invalid_payload", "status: must be online, ocupado, ausente or "
                                             "offline", field="status")
    return {"status": AGENT_STATUS[status]}


def _notification(data: dict[str, Any]) -> tuple[str, Any]:
    return "notificacao", {"tipo": data.get("type"), "titulo": data.get("title"),
                           "mensagem": data.get("message"), "dados": data.get("data"),
                           "timestamp": _iso(data.get("createdAt"))}


_ENTER = {
    "ticket:entrar": Inbound("ticket:join", payload=_ticket_id, ack=_joined),
    "ticket:sair": Inbound("ticket:leave", payload=_ticket_id,
                           ack=lambda r: {"success": True, "ticketId": _get(r, "ticketId")}),
}


def _dropped(_: Any) -> None:
    return None


CONECTCRM = Profile(
    name="conectcrm",
    doc="ConectCRM /atendimento: ticket:entrar, mensagem:nova, atendente:status...",
    inbound={
        **_ENTER,
        "mensagem:digitando": Inbound("typing:start", payload=_typing),
        "atendente:status": Inbound(
            "agent:status", payload=_agent_status,
            ack=lambda r: {"success": True, "status": _status_pt(_get(r, "status"))}),
    },
    outbound={
        "message:new": _dropped,
        "ticket:message": lambda d: ("mensagem:nova", message_pt(d["message"], d["ticket"])),
        "ticket:message_unassigned": lambda d: (
            "mensagem:nao-atribuida", {"mensagem": message_pt(d["message"], d["ticket"]),
                                       "ticket": ticket_pt(d["ticket"])}),
        "typing:update": _typing_out("mensagem:digitando", "usuarioId"),
        "ticket:created": _with_ticket("ticket:novo"),
        "ticket:updated": _with_ticket("ticket:atualizado"),
        "ticket:transferred": _with_ticket(
            "ticket:atualizado", lambda d: {"observacao": d.get("note")}),
        "ticket:assigned": _with_ticket("ticket:atribuido"),
        "ticket:status": _with_ticket("ticket:status"),
        "ticket:closed": _with_ticket("ticket:status"),
        "ticket:reopened": _with_ticket("ticket:status"),
        "ticket:queued": _with_ticket("ticket:atualizado"),
        "agent:online": _agent("atendente:online"),
        "agent:offline": _agent("atendente:offline"),
        "agent:status": _agent("atendente:status"),
        "notification:new": _notification,
    },
)


# -- the earlier gateway (seed 002) ------------------------------------------------


def _message_legacy(data: dict[str, Any]) -> tuple[str, Any]:
    message, ticket = data["message"], data["ticket"]
    customer = message["senderId"] == ticket["customerId"]
    return "nova_mensagem", {
        "id": str(message["id"]), "ticketId": ticket["id"],
        "remetente": {"id": message["senderId"], "nome": "Cliente" if customer else "Atendente",
                      "foto": None, "tipo": "cliente" if customer else "atendente"},
        "conteudo": _text(message), "timestamp": _iso(message.get("createdAt")),
        "status": "enviado",
        "anexos": [message["content"]] if message.get("type", "text") != "text" else [],
    }


def _receipt(data: dict[str, Any]) -> tuple[str, Any]:
    event = "message_read" if data.get("status") == "read" else "message_delivered"
    return event, {"messageId": str(data["messageId"]),
                   "ticketId": str(data.get("conversationId", "")).removeprefix(
                       CONVERSATION_PREFIX),
                   "userId": data.get("userId")}


CONECTCRM_LEGACY = Profile(
    name="conectcrm_legacy",
    doc="The earlier ConectCRM gateway: novo_ticket, nova_mensagem, ticket_atualizado...",
    inbound={
        **_ENTER,
        "user_typing": Inbound("typing:start", payload=_typing),
    },
    outbound={
        "message:new": _dropped,
        "ticket:message": _message_legacy,
        "typing:update": _typing_out("user_typing", "userId"),
        "message:status": _receipt,
        "ticket:created": _with_ticket("novo_ticket"),
        "ticket:updated": _with_ticket("ticket_atualizado"),
        "ticket:assigned": _with_ticket("ticket_atualizado"),
        "ticket:status": _with_ticket("ticket_atualizado"),
        "ticket:reopened": _with_ticket("ticket_atualizado"),
        "ticket:transferred": _with_ticket(
            "ticket_transferido", lambda d: {"deAtendenteId": d.get("previousAssigneeId"),
                                             "deFilaId": d.get("previousQueueId"),
                                             "observacao": d.get("note")}),
        "ticket:closed": _with_ticket("ticket_encerrado"),
        "agent:online": lambda d: ("agent_online", {"agentId": d["userId"]}),
        "agent:offline": lambda d: ("agent_offline", {"agentId": d["userId"]}),
    },
)


def desk_profiles() -> list[Profile]:
    return [CONECTCRM, CONECTCRM_LEGACY]
