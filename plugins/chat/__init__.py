"""Chat: conversations, durable messages, receipts and history.

- Conversations belong to a tenant and have participants. Joining
  ``conversation:{id}`` is allowed to the tenant's agents and to the
  conversation's participants; an unknown or foreign id is refused
  ``not_found``.
- A message (socket event ``message:send``, ``POST
  /api/v1/conversations/{id}/messages``, or another plugin through the
  ``chat`` service) is stored before it is acknowledged or broadcast as
  ``message:new``, then reported to ``switchboard_chat_message_stored``.
  Writes are batched: concurrent messages share one transaction. A
  ``clientId`` makes a resend idempotent: the stored message is returned
  again, nothing is duplicated or re-broadcast.
- Status ``pending`` (client side, before the ack) -> ``sent`` (stored) ->
  ``delivered`` -> ``read``, through ``message:delivered`` / ``message:read``
  receipts kept per participant as watermarks, broadcast as
  ``message:status`` and reported to ``switchboard_chat_status_changed``.
- History with cursor pagination (``before`` for older pages, ``after`` to
  catch up after a reconnect), over HTTP and the ``message:history`` event.

The parts: ``plugin`` (hooks), ``service`` (the engine and the ``chat``
service other plugins get with ``app.service("chat")``), ``events`` (socket
events), ``http`` (routes), ``storage`` (tables and statements),
``payloads`` (settings, payloads, checks).
"""

from .plugin import ChatPlugin

__all__ = ["ChatPlugin"]
