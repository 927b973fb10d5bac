"""Room names and membership.

Rooms live inside a tenant: ``conversation:7`` of tenant A and of tenant B are
different rooms, so nothing published in one tenant reaches another. The
canonical names are ``user:{id}``, ``tenant:{id}``, ``tenant:{id}:agents``,
``conversation:{id}``, ``ticket:{id}`` and ``lead:{id}``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import TypeGuard

from .errors import INVALID_ROOM, ClientError
from .session import Session

#: Room names: letters, digits and ``_.:@+-`` ("+" for phone numbers, as in
#: ``conversation:whatsapp:+5511987654321``), long enough for a prefix and a
#: 200-character id.
MAX_ROOM_LENGTH = 256
_ROOM_RE = re.compile(rf"[A-Za-z0-9_.:@+\-]{{1,{MAX_ROOM_LENGTH}}}")

RoomKey = tuple[str, str]


#: Tenant and room of a publication to every tenant (``POST /api/v1/emit``
#: with ``"tenant": "*"``, an API key for every tenant): delivered to every
#: ``tenant:{id}`` room. No room name can be ``*``, so no client event can
#: make such a publication.
ALL_TENANTS = "*"


def user_room(user_id: str) -> str:
    """``user:{id}``: every session of the user is in it."""
    return f"user:{user_id}"


def tenant_room(tenant_id: str) -> str:
    """``tenant:{id}``: every session of the tenant is in it."""
    return f"tenant:{tenant_id}"


def agents_room(tenant_id: str) -> str:
    """``tenant:{id}:agents``: the sessions of the tenant whose role is in
    ``rooms.agent_roles``."""
    return f"tenant:{tenant_id}:agents"


def is_room_name(room: object) -> TypeGuard[str]:
    """Whether ``room`` is a room name: 1-256 letters, digits and ``_.:@+-``."""
    return isinstance(room, str) and _ROOM_RE.fullmatch(room) is not None


def check_room_name(room: object) -> str:
    """``room`` if it is a room name, else :class:`ClientError` ``invalid_room``."""
    if not is_room_name(room):
        raise ClientError(
            INVALID_ROOM,
            f"room must be 1-{MAX_ROOM_LENGTH} characters of letters, digits and _.:@+-",
            field="room",
        )
    return room


class Rooms:
    """Membership sets: (tenant, room) -> sessions."""

    def __init__(self) -> None:
        self._members: dict[RoomKey, set[Session]] = {}

    def add(self, session: Session, room: str) -> bool:
        """Put ``session`` in ``room`` of its tenant; False if it was already in."""
        if room in session.rooms:
            return False
        room = sys.intern(str(room))  # (a room's sessions share its name: one string)
        session.rooms.add(room)
        self._members.setdefault((session.tenant_id, room), set()).add(session)
        return True

    def discard(self, session: Session, room: str) -> bool:
        if room not in session.rooms:
            return False
        session.rooms.discard(room)
        key = (session.tenant_id, room)
        members = self._members.get(key)
        if members is not None:
            members.discard(session)
            if not members:
                del self._members[key]
        return True

    def members(self, tenant: str, room: str) -> set[Session]:
        return self._members.get((tenant, room), set())

    def __iter__(self) -> Iterator[RoomKey]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)
