"""desk: the active tickets each agent holds, kept in a table of its own.

Auto-assignment used to count its candidates' active tickets in
``desk_tickets`` for every batch of new tickets, a count that grows with every
ticket they hold. ``desk_agent_load`` keeps that number per agent, changed in
the transaction of every change of a ticket's assignee or status; it starts
from the tickets already stored.

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
    op.create_table(
        "desk_agent_load",
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "user_id"),
    )
    op.execute(
        "INSERT INTO desk_agent_load (tenant_id, user_id, active) "
        "SELECT tenant_id, assignee_id, COUNT(*) FROM desk_tickets "
        "WHERE assignee_id IS NOT NULL AND status IN ('open', 'pending', 'in_progress') "
        "GROUP BY tenant_id, assignee_id")

