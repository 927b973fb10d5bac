"""Sales pipeline: leads on a live kanban board.

- Pipelines per tenant with ordered stages, from config (every tenant has
  them) or created over HTTP. Leads have a title, contact, value, owner
  (a consultant), customer, stage, a rank within the stage, tags and custom
  fields, a version, and an activity log (who changed what, when).
- Every open board joins ``pipeline:{id}`` (the tenant's agents) and gets
  ``lead:created``, ``lead:updated`` (changed fields only), ``lead:moved``,
  ``lead:assigned`` and ``lead:deleted``; the detail view joins
  ``lead:{id}`` (the tenant's agents and the lead's own customer, no other
  customer) and gets the same events.
- Changes carry the version the client saw: a stale one is refused
  ``conflict`` with the lead's current state. Cards are ordered by rank keys
  (``ranks``): a move writes one row.
- Each lead has its chat conversation (the one with the lead's id), created with it
  through the ``chat`` service, its customer and owner as participants.
- The same operations over HTTP (API key) and for other plugins through the
  ``pipeline`` service (``app.service("pipeline")``); every change is
  reported to ``switchboard_pipeline_lead_changed``.

The parts: ``plugin`` (hooks), ``service`` (the engine and the service),
``events`` (socket events), ``http`` (routes), ``storage`` (tables and
statements), ``payloads`` (settings, payloads, checks), ``ranks`` (rank keys).
"""

from .plugin import PipelinePlugin

__all__ = ["PipelinePlugin"]
