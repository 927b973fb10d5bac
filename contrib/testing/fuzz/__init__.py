"""Front-door fuzzing: hostile input through a real listener, then health checks.

Shared by ``tests/test_fuzz_front_door.py`` (bounded, deterministic) and
``contrib/fuzz/front_door.py`` (long runs). Needs the ``test`` extra
(hypothesis, trio-websocket).

A :class:`Case` is bytes to send on one TCP connection to the server's port,
after an optional set-up (a WebSocket handshake on ``/ws``, an Engine.IO
session...). The strategies of :mod:`.families` generate cases of seven families:

- ``request head``: request lines, methods, targets (absolute-form, IPv6
  literals), versions, header names and values (non-ASCII bytes), ``Host``;
- ``request body``: ``Content-Length`` / ``Transfer-Encoding`` (conflicting,
  non-ASCII digits, huge, negative, chunked with bad sizes) on
  ``POST /api/v1/emit``, plugin routes and the Engine.IO polling path;
- ``websocket frames``: raw frames after a successful handshake (opcodes, RSV
  bits, masks, lengths, fragments, control frames, close codes);
- ``engine.io polling`` and ``engine.io websocket``: Engine.IO / Socket.IO
  packets (types, namespaces, ack ids, attachments, JSON) over a polling POST
  and over the Engine.IO WebSocket;
- ``plugin events``: the plugins' own events (tickets, agents, queues, leads,
  boards, guests...) with plausible and fuzzed fields, over the plain
  WebSocket and over Socket.IO, in the default namespace and in namespaces
  bound to each compatibility profile (``ticket:entrar``, ``lead:update``,
  ``join_conversation``...), against a ticket and a lead that exist;
- ``tenant fence``: an admin of another tenant and a customer of this one who
  is party to nothing, with valid requests naming this tenant's ticket, lead,
  conversation, rooms and user over every socket and (with an API key of the
  other tenant) every HTTP route; nothing of the tenant may reach them.

:class:`FrontDoor` runs a case against a :class:`Target` and then checks the
server: still serving (``GET /health`` answers 200 on a new connection), a
bystander WebSocket client connected before the case still receives a
broadcast published with ``POST /api/v1/emit``, nothing logged with a
traceback (or at ERROR), no HTTP 5xx answer, and only strict JSON (no
``NaN``/``Infinity``) sent to any client or accepted in a request body.

Modules: :mod:`.cases` (a case, its names and payloads), :mod:`.families`
(the strategies), :mod:`.targets` (a server in this process or elsewhere),
:mod:`.runner` (:class:`FrontDoor`), :mod:`.wire` (reading answers) and
:mod:`.outcomes` (failures and their signatures).
"""


from .cases import (
    BODY,
    BYSTANDER,
    CANARY,
    EIO_POLLING,
    EIO_WS,
    FAMILIES,
    GUEST_WIDGET,
    HEAD,
    IKEY,
    INTRUDER,
    INTRUDER_KEY,
    KEY,
    PLUGIN_EVENTS,
    PROFILED,
    SID,
    TENANT,
    TENANT_FENCE,
    TICKET,
    TOKEN,
    WIDGET,
    WS_FRAMES,
    Case,
)
from .families import (
    HTTP_INTRUSIONS,
    KNOWN,
    engineio_polling_cases,
    engineio_websocket_cases,
    intruder_cases,
    plugin_event_cases,
    request_bodies,
    request_heads,
    strategy_for,
    websocket_frames,
    ws_frame,
)
from .outcomes import Failure, FrontDoorFailure, Outcome
from .runner import FrontDoor
from .targets import InProcessTarget, RemoteTarget, Target, fuzz_config, mint_token

__all__ = [
    "BODY",
    "BYSTANDER",
    "CANARY",
    "EIO_POLLING",
    "EIO_WS",
    "FAMILIES",
    "GUEST_WIDGET",
    "HEAD",
    "HTTP_INTRUSIONS",
    "IKEY",
    "INTRUDER",
    "INTRUDER_KEY",
    "KEY",
    "KNOWN",
    "PLUGIN_EVENTS",
    "PROFILED",
    "SID",
    "TENANT",
    "TENANT_FENCE",
    "TICKET",
    "TOKEN",
    "WIDGET",
    "WS_FRAMES",
    "Case",
    "Failure",
    "FrontDoor",
    "FrontDoorFailure",
    "InProcessTarget",
    "Outcome",
    "RemoteTarget",
    "Target",
    "engineio_polling_cases",
    "engineio_websocket_cases",
    "fuzz_config",
    "intruder_cases",
    "mint_token",
    "plugin_event_cases",
    "request_bodies",
    "request_heads",
    "strategy_for",
    "websocket_frames",
    "ws_frame",
]
