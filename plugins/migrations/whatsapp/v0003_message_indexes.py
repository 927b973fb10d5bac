"""whatsapp: the last chat message recorded for a number, read from an index.

At start-up the plugin queues the agents' messages stored after the last one
it recorded for each number with a recent contact: that last one was the
largest ``message_id`` of every number, an aggregate over both tables whole.
With ``(tenant, session, message_id)`` indexes on ``whatsapp_inbound`` and
``whatsapp_outbox`` it is read from the end of an index, one entry a number.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


INDEXES = {"whatsapp_inbound": "whatsapp_inbound_session_message",
           "whatsapp_outbox": "whatsapp_outbox_session_message"}


def upgrade() -> None:
    for table, index in INDEXES.items():
        # A table this plugin's start-up created on an unversioned database
        # (before stamping it at 0001) has its index already.
        if not op.get_context().as_sql:  # printing the SQL (--sql) reads no table
            if any(found["name"] == index
                   for found in sa.inspect(op.get_bind()).get_indexes(table)):
                continue
        op.create_index(index, table, ["tenant", "session", "message_id"])
