"""Schema migrations: one Alembic history per plugin.

Every plugin that stores tables may give the directory of its Alembic revision
scripts (the ``switchboard_migrations`` hook). Each history is versioned on its
own, in a table of its own named ``{plugin}_alembic_version``, so plugins are
enabled, disabled, installed and removed without touching each other's
histories (see ``docs/migrations.md`` for why not one shared history).

When the store opens, :meth:`Schema.prepare` runs in the opening transaction:

- a plugin none of whose tables exist yet (a fresh database, a newly enabled
  plugin) gets its tables created from its declared tables and its version set
  to its newest revision, without running the scripts one by one (fast, and
  what the test harness does for every test);
- a plugin whose tables exist without a version table (made before versioned
  migrations) counts as being at the first revision of its history;
- a plugin behind its newest revision is upgraded when ``upgrade`` is true, and
  otherwise refused with :class:`SchemaBehind`, whose message names the command
  that upgrades it;
- a plugin at a revision its scripts do not know (written by a newer release)
  is always refused, with :class:`SchemaAhead`.

Tables of a plugin without migrations are created if missing, as before.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.schema import CreateIndex, CreateTable

from .store import StoreError, serialize_on

__all__ = ["History", "PluginSchema", "Schema", "SchemaAhead", "SchemaBehind", "SchemaError",
           "Step", "upgrade_history", "version_table"]

#: The command that upgrades a database, as the start-up error names it
#: (the CLI adds ``--config FILE`` when it was given one).
MIGRATE_COMMAND = "switchboard migrate"

# Alembic says which backend it uses each time a history is read or stamped:
# that is noise in Switchboard's log (what changed is logged by the caller).
_alembic_log = logging.getLogger("alembic.runtime.migration")
if _alembic_log.level == logging.NOTSET:
    _alembic_log.setLevel(logging.WARNING)

# Alembic's ``op`` and ``context`` proxies are module globals: one history runs
# at a time in this process (two servers of one process may start together).
_alembic_lock = threading.Lock()


def version_table(plugin: str) -> str:
    """The table holding the schema version of ``plugin``'s history."""
    return f"{plugin}_alembic_version"


class SchemaError(StoreError):
    """The database's schema cannot be used by this version of Switchboard."""


@attrs.frozen
class Behind:
    plugin: str
    #: Revisions the database is at; empty: tables made before versioned migrations.
    current: tuple[str, ...]
    heads: tuple[str, ...]

    def describe(self) -> str:
        at = ", ".join(self.current) or "unversioned"
        return f"{self.plugin} at {at}, needs {', '.join(self.heads)}"


class SchemaBehind(SchemaError):
    """The schema is older than the code, and upgrading it at start-up is off."""

    def __init__(self, behind: Sequence[Behind], command: str = MIGRATE_COMMAND) -> None:
        self.behind = list(behind)
        self.command = command
        super().__init__()

    def __str__(self) -> str:
        parts = "; ".join(b.describe() for b in self.behind)
        return (f"the database schema is older than this version of Switchboard ({parts}): "
                f"upgrade it with `{self.command}`")


class SchemaAhead(SchemaError):
    """The database is at a revision the code does not know: a newer release wrote it."""

    def __init__(self, plugin: str, current: Sequence[str]) -> None:
        self.plugin = plugin
        self.current = tuple(current)
        super().__init__(
            f"the database schema of plugin {plugin} is at revision {', '.join(current)}, "
            f"which this version of Switchboard does not know (a newer version upgraded it): "
            f"run that version, or restore the backup taken before the upgrade")


@attrs.frozen
class History:
    """A plugin's Alembic revision scripts."""

    plugin: str
    directory: Path

    @property
    def version_table(self) -> str:
        return version_table(self.plugin)

    @property
    def script(self) -> ScriptDirectory:
        return _script(str(self.directory))

    def heads(self) -> tuple[str, ...]:
        return tuple(sorted(self.script.get_heads()))

    def base(self) -> str:
        bases = self.script.get_bases()
        if len(bases) != 1:
            raise SchemaError(f"the migrations of plugin {self.plugin} in {self.directory} "
                              f"have {len(bases)} first revisions, not one")
        return bases[0]

    def knows(self, revision: str) -> bool:
        try:
            return self.script.get_revision(revision) is not None
        except CommandError:
            return False


@functools.cache
def _script(directory: str) -> ScriptDirectory:
    """The revision scripts of ``directory``, read once per process."""
    script = ScriptDirectory(directory, version_locations=[directory])
    script.revision_map.heads  # noqa: B018 - load the scripts now, not inside a transaction
    return script


@attrs.frozen
class PluginSchema:
    """What one plugin stores: its tables and, if it has them, its migrations."""

    plugin: str
    tables: tuple[sa.Table, ...]
    history: History | None


State = Literal["new", "current", "behind", "unversioned", "ahead", "untracked"]


@attrs.frozen
class Step:
    """What :meth:`Schema.prepare` found, or did, for one plugin."""

    plugin: str
    #: ``new`` (tables created), ``current``, ``behind`` (upgraded from
    #: ``before``), ``unversioned`` (tables made before versioned migrations,
    #: now upgraded from the first revision), ``untracked`` (a plugin
    #: without migrations: missing tables created).
    state: State
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    #: Whether revisions have to run (``switchboard migrate``, or start-up
    #: with ``store.auto_migrate``): the start-up refuses without them.
    upgrade: bool = False

    def describe(self) -> str:
        if self.state == "new":
            return f"{self.plugin}: tables created at {', '.join(self.after) or 'no revision'}"
        if self.state == "current":
            return f"{self.plugin}: up to date ({', '.join(self.after)})"
        if self.state == "untracked":
            return f"{self.plugin}: no migrations; missing tables created"
        before = ", ".join(self.before) or "unversioned"
        return f"{self.plugin}: upgraded from {before} to {', '.join(self.after)}"


@attrs.frozen
class _Found:
    part: PluginSchema
    state: State
    current: tuple[str, ...]


class Schema:
    """The tables and migration histories of the enabled plugins."""

    def __init__(self, metadata: sa.MetaData, parts: Iterable[PluginSchema]) -> None:
        self.metadata = metadata
        self.parts = list(parts)

    def _find(self, conn: sa.Connection) -> list[_Found]:
        existing = set(sa.inspect(conn).get_table_names())
        found: list[_Found] = []
        for part in self.parts:
            history = part.history
            if history is None:
                found.append(_Found(part, "untracked", ()))
                continue
            if history.version_table not in existing:
                made = any(t.name in existing for t in part.tables)
                found.append(_Found(part, "unversioned" if made else "new", ()))
                continue
            current = tuple(sorted(_context(conn, history).get_current_heads()))
            unknown = [rev for rev in current if not history.knows(rev)]
            if unknown:
                found.append(_Found(part, "ahead", current))
            elif set(current) == set(history.heads()):
                found.append(_Found(part, "current", current))
            else:
                found.append(_Found(part, "behind", current))
        return found

    def prepare(self, conn: sa.Connection, *, upgrade: bool) -> list[Step]:
        """Bring the schema up to this code's version, in ``conn``'s transaction.

        Creates what is missing; upgrades what is behind when ``upgrade`` is
        true, and raises :class:`SchemaBehind` otherwise; raises
        :class:`SchemaAhead` for a database a newer release upgraded.
        """
        serialize_on(conn, "switchboard", "schema")  # one node at a time (PostgreSQL)
        found = sorted(self._find(conn), key=lambda f: f.part.plugin)
        for f in found:
            if f.state == "ahead":
                raise SchemaAhead(f.part.plugin, f.current)
        behind = [Behind(f.part.plugin, f.current, _history(f).heads()) for f in found
                  if _needs_upgrade(f)]
        if behind and not upgrade:
            raise SchemaBehind(behind)
        steps: list[Step] = []
        # New plugins first, all at once (a fresh database: every plugin), with
        # their version tables set to the newest revisions: as fast as creating
        # the tables alone, which the test harness does for every test.
        new = [f for f in found if f.state == "new"]
        self.metadata.create_all(conn, tables=[t for f in new for t in f.part.tables],
                                 checkfirst=False)
        versions = [_version_table(_history(f).version_table) for f in new]
        for table in versions:
            conn.exec_driver_sql(_create_sql(table, conn.dialect))
        for f, table in zip(new, versions, strict=True):
            heads = _history(f).heads()
            conn.execute(table.insert(), [{"version_num": head} for head in heads])
            steps.append(Step(f.part.plugin, "new", after=heads))
        for f in found:
            part = f.part
            if f.state == "untracked":
                self.metadata.create_all(conn, tables=list(part.tables))
                steps.append(Step(part.plugin, "untracked"))
                continue
            history = _history(f)
            if f.state == "new":
                continue
            if f.state == "current":
                steps.append(Step(part.plugin, "current", f.current, f.current))
            else:
                if f.state == "unversioned":
                    _context(conn, history).stamp(history.script, history.base())
                upgrade_history(conn, history)
                steps.append(Step(part.plugin, f.state, f.current, history.heads()))
        return sorted(steps, key=lambda step: step.plugin)

    def check(self, conn: sa.Connection) -> list[Step]:
        """What :meth:`prepare` would do, without changing anything."""
        steps = []
        for f in sorted(self._find(conn), key=lambda f: f.part.plugin):
            if f.state == "ahead":
                raise SchemaAhead(f.part.plugin, f.current)
            after = f.part.history.heads() if f.part.history else ()
            steps.append(Step(f.part.plugin, f.state, f.current, after, _needs_upgrade(f)))
        return steps

    def sql(self, conn: sa.Connection) -> str:
        """The SQL :meth:`prepare` would run on this database (upgrading), as text;
        reads the database's versions, changes nothing."""
        out = io.StringIO()
        for f in sorted(self._find(conn), key=lambda f: f.part.plugin):
            part = f.part
            if f.state == "ahead":
                raise SchemaAhead(part.plugin, f.current)
            if f.state == "current":
                continue
            out.write(f"-- {part.plugin}\n")
            if f.state in ("new", "untracked"):
                existing = set(sa.inspect(conn).get_table_names())
                for table in part.tables:
                    if table.name in existing:
                        continue
                    out.write(f"{CreateTable(table).compile(conn).string.strip()};\n\n")
                    for index in sorted(table.indexes, key=lambda i: str(i.name)):
                        out.write(f"{CreateIndex(index).compile(conn).string.strip()};\n\n")
                if part.history is not None:
                    _offline(conn, part.history, out, None, "stamp")
                continue
            history = _history(f)
            start: str | None
            if f.state == "unversioned":
                _offline(conn, history, out, None, "stamp", history.base())
                start = history.base()
            else:
                start = ":".join(f.current)  # one head per history in practice
            _offline(conn, history, out, start, "upgrade")
        return out.getvalue()


@functools.cache
def _version_table(name: str) -> sa.Table:
    """The version table Alembic makes for a history (the same definition)."""
    return sa.Table(name, sa.MetaData(),
                    sa.Column("version_num", sa.String(32), nullable=False),
                    sa.PrimaryKeyConstraint("version_num", name=f"{name}_pkc"))


_ddl_cache: dict[tuple[str, str], str] = {}


def _create_sql(table: sa.Table, dialect: sa.Dialect) -> str:
    """``CREATE TABLE`` of ``table``, compiled once per dialect (a compilation
    costs about a millisecond, and the harness makes hundreds of databases)."""
    key = (table.name, dialect.name)
    sql = _ddl_cache.get(key)
    if sql is None:
        sql = _ddl_cache[key] = str(CreateTable(table).compile(dialect=dialect))
    return sql


def _needs_upgrade(found: _Found) -> bool:
    """Whether revisions have to run (not only tables created or a version recorded)."""
    if found.state == "behind":
        return True
    if found.state == "unversioned":
        history = _history(found)
        return history.base() not in history.heads()
    return False


def _history(found: _Found) -> History:
    assert found.part.history is not None
    return found.part.history


def _context(conn: sa.Connection, history: History) -> MigrationContext:
    return MigrationContext.configure(conn, opts={"version_table": history.version_table})


def upgrade_history(conn: sa.Connection, history: History) -> None:
    """Run ``history``'s revisions from the one the database is at (none: from
    the first, creating the version table) to the newest, in ``conn``'s
    transaction. A plugin's tests use it to check that its revisions make the
    tables it declares (see ``docs/migrations.md``)."""
    script = history.script

    def steps(rev: Any, context: MigrationContext) -> Any:
        return script._upgrade_revs("heads", rev)

    ctx = MigrationContext.configure(
        conn, opts={"version_table": history.version_table, "fn": steps})
    with _alembic_lock:
        try:
            with Operations.context(ctx):
                ctx.run_migrations()
        except CommandError as exc:
            raise SchemaError(f"the migrations of plugin {history.plugin} in "
                              f"{history.directory}: {exc}") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise  # the database went away: reported as such
            detail = " ".join(str(exc.orig).split())
            raise SchemaError(f"upgrading the schema of plugin {history.plugin} failed "
                              f"({type(exc.orig).__name__}: {detail}); nothing was changed"
                              ) from exc


def _offline(conn: sa.Connection, history: History, out: io.StringIO, start: str | None,
             what: Literal["stamp", "upgrade"], dest: str = "heads") -> None:
    script = history.script

    def steps(rev: Any, context: MigrationContext) -> Any:
        if what == "stamp":
            return script._stamp_revs(dest, rev)
        return script._upgrade_revs(dest, rev)

    opts: dict[str, Any] = {
        "as_sql": True, "output_buffer": out, "literal_binds": True, "fn": steps,
        "version_table": history.version_table, "transactional_ddl": False,
    }
    if start is not None:
        opts["starting_rev"] = start
    ctx = MigrationContext.configure(dialect_name=conn.dialect.name, opts=opts)
    with _alembic_lock, Operations.context(ctx):
        ctx.run_migrations()


def migrations_directory(value: object, plugin: str) -> Path:
    """Check what a plugin's ``switchboard_migrations`` returned: a directory."""
    if not isinstance(value, str | os.PathLike):
        raise SchemaError(f"plugin {plugin}: switchboard_migrations returned {value!r}, "
                          f"not the path of a directory")
    path = Path(value)
    if not path.is_dir():
        raise SchemaError(f"plugin {plugin}: the migrations directory {path} does not exist")
    return path

