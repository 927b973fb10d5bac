"""The admin console's Alembic revision scripts (history ``core_admin``)."""
