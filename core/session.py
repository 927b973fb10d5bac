"""A session: one authenticated client as the core sees it, whatever its protocol."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from .args import Args, argument_list
from .auth import Identity
from .errors import CloseCode
from .handshake import Handshake
from .profiles import Profile
from .ratelimit import TokenBucket, ViolationCounter


class Transport(Protocol):
    """The wire under a session (a plain WebSocket, a Socket.IO socket...)."""

    #: Short protocol name for stats and logs, e.g. ``"ws"``.
    protocol: str

    def send(self, frame: bytes) -> None:
        """Queue ready wire bytes; a full queue disconnects the slow consumer."""

    def close(self, code: CloseCode, reason: str) -> None:
        """Start closing the connection with ``code``; returns at once."""


class Codec(Protocol):
    """Encodes server events into wire bytes for one protocol (and namespace).

    Codecs are shared by all sessions speaking the same protocol, so fan-out
    encodes each event once per codec, not once per member.
    """

    def encode_event(self, event: str, data: Any, offset: str | None = None) -> bytes:
        """Wire bytes of one canonical event, translated by the codec's profile
        (empty when the profile drops it); ``offset`` is its recovery offset."""
        ...

    def encode_raw(self, event: str, data: Any, offset: str | None = None) -> bytes:
        """Wire bytes of one event exactly as named (no profile translation)."""
        ...


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


class Session:
    """One connected client as plugins see it, whatever its protocol (one per
    Socket.IO namespace): who it is (``user_id``, ``tenant_id``, ``role``,
    ``identity``), its ``rooms``, per-plugin ``state`` (a dict keyed by plugin
    name), and :meth:`emit` / :meth:`call` to reach it alone. ``closed`` is
    True once it has gone."""

    __slots__ = (
        "_state",
        "closed",
        "codec",
        "connected_at",
        "event_buckets",
        "handshake",
        "id",
        "identity",
        "profile",
        "rate_bucket",
        "rooms",
        "transport",
        "violations",
    )

    def __init__(self, identity: Identity, transport: Transport, codec: Codec, *,
                 connected_at: float, rate_bucket: TokenBucket,
                 violations: ViolationCounter, session_id: str | None = None,
                 profile: Profile | None = None, handshake: Handshake | None = None) -> None:
        self.id = session_id or new_session_id()
        self.identity = identity
        self.transport = transport
        self.codec = codec
        self.connected_at = connected_at
        #: Room names (within the session's tenant) this session is in.
        self.rooms: set[str] = set()
        self._state: dict[str, Any] | None = None
        self.closed = False
        self.rate_bucket = rate_bucket
        #: Per-event rate limits, by event name (made with the first).
        self.event_buckets: dict[str, TokenBucket] | None = None
        self.violations = violations
        #: The compatibility profile of the endpoint this client came through.
        self.profile = profile
        #: What the client sent at connect (transport, path, namespace, query,
        #: Socket.IO ``auth`` object, remote address; not the headers).
        self.handshake = handshake

    @property
    def state(self) -> dict[str, Any]:
        """Per-plugin state, keyed by plugin name (made when first asked for)."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def user_id(self) -> str:
        """The user, from the token's ``auth.user_claim``."""
        return self.identity.user_id

    @property
    def tenant_id(self) -> str:
        """The tenant, from the token's ``auth.tenant_claim``; rooms are per tenant."""
        return self.identity.tenant_id

    @property
    def role(self) -> str:
        """The role, from the token's ``auth.role_claim`` (it may change when the
        client re-authenticates); ``app.is_agent(session)`` tells agents."""
        return self.identity.role

    def emit(self, event: str, data: Any, *, raw: bool = False) -> None:
        """Send one canonical event to this session only (``raw``: send it as
        named, without the profile's translation); ``Args(a, b)`` as ``data``
        sends several arguments."""
        if not self.closed:
            frame = (self.codec.encode_raw(event, data) if raw
                     else self.codec.encode_event(event, data))
            if frame:
                self.transport.send(frame)

    async def call(self, event: str, data: Any, *, timeout: float = 10.0,
                   args: bool = False) -> Any:
        """Send one event (``Args(a, b)`` as ``data``: several arguments) and
        wait for the client's answer (its ack).

        Returns the answer's first argument (None when the client answered
        with none), or with ``args=True`` the list of all of them; a plain
        WebSocket client's answer ``data`` is the first argument as it is, and
        with ``args=True`` its arguments as an envelope carries them (a JSON
        array is the list). Raises ``trio.TooSlowError`` when no answer comes
        within ``timeout``.
        """
        call = getattr(self.transport, "call", None)
        if call is None:
            raise NotImplementedError(f"{self.transport.protocol} has no server-to-client acks")
        # an Args from transports whose acks carry argument lists (Socket.IO)
        answer = await call(event, data, timeout=timeout)
        if args:
            return argument_list(answer)
        if isinstance(answer, Args):
            return answer.values[0] if answer.values else None
        return answer

    def __repr__(self) -> str:
        ident = self.identity
        return f"<Session {self.id} user={ident.user_id} tenant={ident.tenant_id}>"
