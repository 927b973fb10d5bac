"""help_demo: the help requests table, as the plugin first shipped it.

A later change of the table is a new file here (``v0002_...py``, with
``down_revision = "0001"``) and the same change in ``switchboard_tables``.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "help_demo_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_help_demo_requests_tenant_id", "help_demo_requests", ["tenant_id"])
