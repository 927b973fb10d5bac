"""desk: tickets, queues and queue members.

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
        "desk_queue_members",
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("queue_id", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "queue_id", "user_id"),
    )
    op.create_index("desk_queue_members_user", "desk_queue_members", ["tenant_id", "user_id"])
    op.create_table(
        "desk_queues",
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_table(
        "desk_tickets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.String(length=200), nullable=False),
        sa.Column("queue_id", sa.String(length=200), nullable=True),
        sa.Column("assignee_id", sa.String(length=200), nullable=True),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("conversation_id", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("first_response_at", sa.Float(), nullable=True),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("first_response_due", sa.Float(), nullable=True),
        sa.Column("resolution_due", sa.Float(), nullable=True),
        sa.Column("first_response_left", sa.Float(), nullable=True),
        sa.Column("resolution_left", sa.Float(), nullable=True),
        sa.Column("sla_sent", sa.String(length=200), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "number", name="desk_tickets_number"),
    )
    op.create_index("desk_tickets_assignee", "desk_tickets", ["tenant_id", "assignee_id", "status"])
    op.create_index("desk_tickets_queue", "desk_tickets", ["tenant_id", "queue_id", "status"])
