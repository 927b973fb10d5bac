"""Compatibility profiles: an existing frontend's event names and payloads.

Plugins speak canonical names (``conversation:join``, ``typing:update``,
``message:new``...). The seed systems' frontends speak their own
(``join_conversation``, ``user_typing``, ``chat:new_message``...). A profile,
bound in config to a Socket.IO namespace or to the plain WebSocket path,
translates at the edge, per session:

- inbound: a frontend event becomes a canonical event with a canonical
  payload; its result (or error) becomes the events and ack that frontend
  expects (``joined_conversation``, ``error {message}``...);
- outbound: a canonical event becomes the frontend's name and shape, or is
  dropped;
- on connect: the greeting the frontend waits for (``connected``...).

Profiles are declared by plugins (``switchboard_profiles``) like everything
else; the first-party ones are in ``switchboard.plugins.compat``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ClientError

log = logging.getLogger("switchboard.profiles")

if TYPE_CHECKING:
    from .app import App
    from .session import Session

#: Events (name, data) to send to the client, in the frontend's vocabulary.
Replies = list[tuple[str, Any]]


def _same(data: Any) -> Any:
    return data


@attrs.frozen
class Inbound:
    """How one frontend event maps onto the canonical API."""

    #: Canonical event to dispatch, or a function of the frontend payload that
    #: names it; ``None`` answers with ``handler`` and ``on_result`` alone.
    event: str | Callable[[Any], str] | None
    #: Frontend payload -> canonical payload (may raise ``ClientError``).
    payload: Callable[[Any], Any] = _same
    #: Instead of one canonical event: ``await handler(app, session, payload)``
    #: (for a frontend event that means several canonical actions).
    handler: Callable[[App, Session, Any], Awaitable[Any]] | None = None
    #: (session, frontend payload, canonical result) -> events for the client.
    on_result: Callable[[Session, Any, Any], Replies] | None = None
    #: (session, frontend payload, error) -> events for the client. When set,
    #: the error is answered only by these events.
    on_error: Callable[[Session, Any, ClientError], Replies] | None = None
    #: Canonical result -> the frontend's ack value.
    ack: Callable[[Any], Any] = _same


@attrs.frozen
class Profile:
    """A frontend's vocabulary: its inbound events, the outbound translations
    and its greeting on connect (return them from ``switchboard_profiles``)."""

    name: str
    inbound: Mapping[str, Inbound] = attrs.Factory(dict)
    #: Canonical event -> (frontend event, data), or ``None`` to drop it.
    outbound: Mapping[str, Callable[[Any], tuple[str, Any] | None]] = attrs.Factory(dict)
    #: Events greeting a new session (after it is connected and in its rooms).
    on_connect: Callable[[Session], Replies] | None = None
    doc: str = ""

    def translate_out(self, event: str, data: Any) -> tuple[str, Any] | None:
        """A canonical event as this frontend gets it, or None to drop it.

        A rule refuses data it cannot translate with :class:`ClientError`
        ``invalid_payload`` naming the field within ``data``; any other
        exception of a rule is raised as that too (never a crash of the
        publisher: see :meth:`check_out`).
        """
        rule = self.outbound.get(event)
        if rule is None:
            return (event, data)
        try:
            return rule(data)
        except ClientError:
            raise
        except Exception as exc:
            log.warning("profile %s: %s could not be translated: %r", self.name, event, exc)
            raise ClientError("invalid_payload", f"{event}: not a payload the {self.name} "
                              "profile can translate") from None

    def check_out(self, event: str, data: Any) -> None:
        """Raise :class:`ClientError` ``invalid_payload`` if this profile could
        not translate ``data`` of ``event`` (what ``POST /api/v1/emit`` asks
        of the bound profiles before publishing)."""
        self.translate_out(event, data)


class ProfiledCodec:
    """Base of the protocol codecs: translate by the profile, then encode raw."""

    __slots__ = ("profile",)

    def __init__(self, profile: Profile | None = None) -> None:
        self.profile = profile

    def encode_event(self, event: str, data: Any, offset: str | None = None) -> bytes:
        if self.profile is not None:
            try:
                translated = self.profile.translate_out(event, data)
            except ClientError as exc:
                # Published by a plugin without the check the emit route makes:
                # this frontend's members do not get it; the others do.
                log.warning("profile %s: %s dropped: %s", self.profile.name, event, exc.message)
                return b""
            if translated is None:
                return b""
            event, data = translated
        try:
            return self.encode_raw(event, data, offset)
        except (TypeError, ValueError) as exc:
            # Data this protocol cannot carry, from a plugin (bytes for the plain
            # WebSocket's JSON, NaN): its members do not get it; the others do.
            log.warning("%s not sent to %s members: %s", event, self.protocol_name, exc)
            return b""

    #: The protocol's name, for the log.
    protocol_name = "these"

    def encode_raw(self, event: str, data: Any, offset: str | None = None) -> bytes:
        raise NotImplementedError
