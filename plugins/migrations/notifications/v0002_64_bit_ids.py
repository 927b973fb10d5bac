"""notifications: 64-bit notification ids on PostgreSQL.

The first release made ``notifications_items.id`` a 32-bit ``SERIAL``: past
2,147,483,647 notifications every new one failed. The column and the sequence
behind it become 64-bit. SQLite needs nothing (an ``INTEGER PRIMARY KEY`` is
already 64-bit).

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
    if op.get_context().dialect.name != "postgresql":
        return
    op.alter_column("notifications_items", "id", type_=sa.BigInteger(),
                    existing_type=sa.Integer(), existing_nullable=False)
    # The sequence of a SERIAL column is "AS integer": it would still stop at 2**31-1.
    op.execute("DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS bigint', "
               "pg_get_serial_sequence('notifications_items', 'id')); END $$")
