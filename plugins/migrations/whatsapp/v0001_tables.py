"""whatsapp: sessions, contacts, inbound messages and the send outbox as first released.

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
        "whatsapp_contacts",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("session", sa.String(length=100), nullable=False),
        sa.Column("wa_id", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("picture", sa.String(length=2048), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_contact_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "session", "wa_id"),
    )
    op.create_table(
        "whatsapp_inbound",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("session", sa.String(length=100), nullable=False),
        sa.Column("provider_id", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "session", "provider_id"),
    )
    op.create_table(
        "whatsapp_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("session", sa.String(length=100), nullable=False),
        sa.Column("conversation", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("to", sa.String(length=20), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "message_id", name="whatsapp_outbox_message"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "whatsapp_outbox_pending", "whatsapp_outbox", ["status", "tenant", "session", "id"]
    )
    op.create_index(
        "whatsapp_outbox_provider", "whatsapp_outbox", ["tenant", "session", "provider_id"]
    )
    op.create_table(
        "whatsapp_sessions",
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id"),
    )
