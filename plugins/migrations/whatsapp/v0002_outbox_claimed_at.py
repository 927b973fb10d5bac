"""whatsapp: when a sender claimed an outbox message.

``whatsapp_outbox.claimed_at`` lets a message claimed by a node that stopped
before sending it be released (pending again). A database made by a release
that already created the column keeps it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Tables made before versioned migrations are taken to be at 0001, though
    # some releases of that time had created the column already.
    if not op.get_context().as_sql:  # printing the SQL (--sql) reads no table
        columns = sa.inspect(op.get_bind()).get_columns("whatsapp_outbox")
        if any(c["name"] == "claimed_at" for c in columns):
            return
    # batch mode: on SQLite an ALTER the database cannot do copies the table
    with op.batch_alter_table("whatsapp_outbox") as batch:
        batch.add_column(sa.Column("claimed_at", sa.Float(), nullable=True))
