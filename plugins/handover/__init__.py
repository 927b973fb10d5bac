"""Handover: a conversation served by a bot (or a customer) asks for a human.

- ``handover:request`` (or ``POST /api/v1/handovers``, or another plugin
  through the ``handover`` service) stores a ``pending`` request with a
  reason, a priority and an optional queue, announces it as
  ``handover:new_request`` to ``queue:{queue}`` (else the tenant's agents
  room) and posts a system message in the conversation.
- The first agent to ``handover:accept`` wins, decided by a conditional
  UPDATE in the store (SQLite and PostgreSQL alike): the others get
  ``conflict`` with the current state, the room that heard the request
  ``handover:taken``, those concerned ``handover:accepted``; the agent
  becomes a participant of the conversation.
- Unanswered, a request escalates every ``escalate_after`` seconds
  (announced again, widened to every agent, priority raised) and may expire;
  due times are stored, so a restart neither loses nor repeats one.
- Transfers (to an agent or a queue, with a note), cancellation, resolution
  (or a hand-back to the bot); each reported to
  ``switchboard_handover_changed``.

The parts: ``plugin`` (hooks), ``service`` (the engine, the timer and the
``handover`` service), ``events`` (socket events), ``http`` (routes),
``storage`` (the table and its statements), ``payloads`` (settings,
payloads, checks).
"""

from .plugin import HandoverPlugin

__all__ = ["HandoverPlugin"]
