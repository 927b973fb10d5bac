"""Socket.IO packets as the bytes of one Engine.IO transport kind.

A room's event is encoded once per :class:`SioCodec` (a namespace, and
whether its sessions are on a WebSocket or long-polling) and the same bytes
are queued to every member that shares it.
"""

from __future__ import annotations

from typing import Any

from ..args import wire_arguments
from ..profiles import Profile, ProfiledCodec
from ..protocol import engineio as eio
from ..protocol import socketio as sio
from ..protocol.wsframe import OP_BINARY, encode_frame, text_frame


class SioCodec(ProfiledCodec):
    """Encodes events of one namespace for one Engine.IO transport kind."""

    __slots__ = ("namespace", "websocket")
    protocol_name = "Socket.IO"

    def __init__(self, namespace: str, websocket: bool, profile: Profile | None = None) -> None:
        super().__init__(profile)
        self.namespace = namespace
        self.websocket = websocket

    def encode_raw(self, event: str, data: Any, offset: str | None = None) -> bytes:
        args = [event, *wire_arguments(data)]
        if offset is not None:
            args.append(offset)
        text = sio.text_packet(sio.PacketType.EVENT, self.namespace, args)
        if text is None:  # attachments: the whole packet encoder
            return self.wire(sio.encode(sio.Packet(sio.PacketType.EVENT, self.namespace, args)))
        return text_frame("4" + text) if self.websocket else ("4" + text).encode()

    def ack(self, ident: int, value: Any) -> bytes:
        """The ACK of event ``ident`` answered with ``value`` (an Args: several
        arguments)."""
        args = wire_arguments(value)
        text = sio.text_packet(sio.PacketType.ACK, self.namespace, args, ident)
        if text is None:
            return self.wire(sio.encode(sio.Packet(sio.PacketType.ACK, self.namespace, args,
                                                   ident)))
        return text_frame("4" + text) if self.websocket else ("4" + text).encode()

    def wire(self, messages: list[str | bytes]) -> bytes:
        """Engine.IO messages (Socket.IO packet parts) as bytes for this transport."""
        if self.websocket:
            return b"".join(text_frame("4" + m) if isinstance(m, str) else
                            encode_frame(m, OP_BINARY) for m in messages)
        return eio.encode_payload([eio.polling_record("4" + m if isinstance(m, str) else m)
                                   for m in messages])

