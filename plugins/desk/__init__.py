"""The service desk: tickets, queues, assignment, agent status and SLA timers.

- Tickets belong to a tenant, with a per-tenant number, subject, status
  (``open``, ``pending``, ``in_progress``, ``resolved``, ``closed``),
  priority, queue, assignee, customer, channel and tags; each owns a chat
  conversation (``ticket-{id}``) through the ``chat`` service. Every change
  carries a version; a stale one is refused ``conflict`` with the current
  ticket.
- ``ticket:{id}`` may be joined by the tenant's agents and the ticket's
  customer; changes are announced as ``ticket:*`` events to the agents room
  and the customer's ``user:{id}`` room, and reported to
  ``switchboard_ticket_changed``.
- Queues with members (config and HTTP), ``queue:{id}`` rooms for members
  and supervisors, agent statuses, round-robin / least-busy auto-assignment
  within capacity, tickets given back when their assignee stays offline.
- SLA targets per priority: ``sla:warning`` and ``sla:breached``.

The parts: ``plugin`` (hooks), ``tickets`` (the engine and the ``tickets``
service), ``agents`` (statuses, queues, assignment), ``sla`` (timers),
``events`` (socket events), ``http`` (routes), ``storage`` (tables and
statements), ``payloads`` (settings, payloads, checks), ``compat``
(the seed frontends' profiles).
"""

from .plugin import DeskPlugin

__all__ = ["DeskPlugin"]
