"""Alembic revision scripts of the first-party plugins: one directory, one
history, per plugin (``switchboard_migrations`` returns it); see
``docs/migrations.md``."""

from pathlib import Path


def directory(plugin: str) -> Path:
    """The directory of ``plugin``'s revision scripts."""
    return Path(__file__).resolve().parent / plugin
