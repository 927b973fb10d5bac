"""A WhatsApp provider simulator: a small HTTP server that plays the Graph API
(the Cloud API's messages endpoint) and a QR-linked device bridge (Evolution
API's shape), for tests and for trying the whatsapp plugin on a laptop.

- Graph API: ``POST /{version}/{phone_number_id}/messages`` with the access
  token answers like Meta (a ``wamid`` message id, or a Graph error), then
  fires signed ``sent`` and ``delivered`` status webhooks.
- Bridge: ``GET /instance/connect/{instance}`` starts the QR flow (a QR code
  in the answer, then ``qrcode.updated`` webhooks rotating it every
  ``qr_interval`` seconds) until :meth:`Simulator.scan` links the phone
  (``connection.update`` open); ``POST /message/sendText|sendMedia/{instance}``,
  ``POST /instance/restart``, ``DELETE /instance/logout``.
- A customer: :meth:`Simulator.customer_writes` (``POST /sim/inbound``)
  fires a signed webhook of an inbound message.
- Trouble: :meth:`Simulator.fail_next` makes the next sends answer 429 or
  500; :meth:`Simulator.down` closes the port until :meth:`Simulator.up`.

Run it: ``python -m switchboard.whatsapp_simulator --help``.
"""

from .server import Simulator, SimulatorConfig

__all__ = ["Simulator", "SimulatorConfig"]
