"""Schema migrations: databases made by earlier releases are upgraded with their
data (SQLite at start-up, PostgreSQL by ``switchboard migrate``), a schema
older or newer than the code is refused with the command that fixes it, and a
third-party plugin's own history is run through its hook."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from databases import database_url
from switchboard.core import hookimpl
from switchboard.core.cli import main, serve
from switchboard.core.config import Config, ConfigError, load_config, merge
from switchboard.core.migrations import History, upgrade_history
from switchboard.core.pluginmanager import Plugins
from switchboard.testing import Harness, make_config

INT32_MAX = 2**31 - 1


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def first_release_tables(metadata: sa.MetaData) -> None:
    """The tables as the releases before versioned migrations made them: every
    plugin's as today, except the two that changed since (from the history of
    plugins/notifications.py and plugins/whatsapp/storage.py) and the one added
    since (``desk_agent_load``)."""
    Plugins(make_config()).declare_tables(metadata)
    for name in ("notifications_items", "whatsapp_outbox", "desk_agent_load"):
        metadata.remove(metadata.tables[name])
    sa.Table(
        "notifications_items", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("link", sa.Text, nullable=True),
        sa.Column("data", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("read_at", sa.Float, nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Index("notifications_items_user", "tenant_id", "user_id", "id"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "whatsapp_outbox", metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("session", sa.String(100), nullable=False),
        sa.Column("conversation", sa.String(200), nullable=False),
        sa.Column("message_id", sa.BigInteger, nullable=False),
        sa.Column("to", sa.String(20), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("tenant", "message_id", name="whatsapp_outbox_message"),
        sa.Index("whatsapp_outbox_provider", "tenant", "session", "provider_id"),
        sa.Index("whatsapp_outbox_pending", "status", "tenant", "session", "id"),
        sqlite_autoincrement=True,
    )


def make_first_release_database(url: str) -> None:
    """A database as an earlier release left it: its tables, no version tables,
    two notifications of alice's, a queued WhatsApp message and desk tickets
    (ana holds two active ones and a closed one, bob one pending)."""
    metadata = sa.MetaData()
    first_release_tables(metadata)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        items = metadata.tables["notifications_items"]
        for title in ("first", "second"):
            conn.execute(items.insert().values(
                tenant_id="acme", user_id="alice", title=title, message="kept",
                type="info", created_at=1.0))
        conn.execute(metadata.tables["whatsapp_outbox"].insert().values(
            tenant="acme", session="main", conversation="wa:1", message_id=1, to="5511",
            type="text", content="{}", status="pending", attempts=0, created_at=1.0))
        tickets = metadata.tables["desk_tickets"]
        for number, (assignee, status) in enumerate([
                ("ana", "in_progress"), ("ana", "open"), ("ana", "closed"),
                ("bob", "pending"), (None, "open")], start=1):
            conn.execute(tickets.insert().values(
                id=f"t{number}", tenant_id="acme", number=number, subject="s",
                status=status, priority="normal", assignee_id=assignee, customer_id="c",
                channel="web", tags=[], conversation_id=f"ticket-t{number}", version=1,
                created_at=1.0, updated_at=1.0))
    engine.dispose()


def config_of(url: str, **store: Any) -> Config:
    return make_config(merge({"store": {"url": url, **store}}, {}))


async def titles(harness: Harness) -> list[str]:
    response = await harness.http().get("/api/v1/notifications/acme/alice",
                                        headers=harness.api_headers())
    assert response.status_code == 200
    return [item["title"] for item in (await response.get_json())["items"]]


async def create_notification(harness: Harness, title: str) -> int:
    response = await harness.http().post(
        "/api/v1/notifications", headers=harness.api_headers(),
        json={"tenant": "acme", "user": "alice", "title": title, "message": "new"})
    assert response.status_code == 201, await response.get_json()
    ident: int = (await response.get_json())["id"]
    return ident


def version_of(url: str, plugin: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT version_num FROM {plugin}_alembic_version")
        versions = [row[0] for row in rows]
    engine.dispose()
    return versions


def write_config(tmp_path: Path, url: str, **store: str) -> Path:
    lines = [f'url = "{url}"'] + [f'{key} = "{value}"' for key, value in store.items()]
    path = tmp_path / "production.toml"
    path.write_text('[auth]\nsecret = "migrations-test-secret-0123456789"\n\n[store]\n'
                    + "\n".join(lines) + "\n")
    return path


# -- an earlier release's database ---------------------------------------------------


async def test_a_sqlite_database_of_an_earlier_release_is_upgraded_at_start_with_its_data(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    make_first_release_database(url)
    harness = await Harness.start(config_of(url), nursery)
    try:
        assert await titles(harness) == ["second", "first"]
        assert await create_notification(harness, "third") == 3
        outbox = harness.app.store.metadata.tables["whatsapp_outbox"]
        [row] = await harness.app.store.fetch_all(sa.select(outbox))
        # kept, with the column added (the plugin's sender may have handled it already)
        assert (row["to"], row["message_id"]) == ("5511", 1)
        assert "claimed_at" in row
        # the agents' loads counted from the tickets kept
        load = harness.app.store.metadata.tables["desk_agent_load"]
        loads = {r["user_id"]: r["active"] for r in await harness.app.store.fetch_all(
            sa.select(load))}
        assert loads == {"ana": 2, "bob": 1}
    finally:
        await harness.stop()
    assert version_of(url, "notifications") == ["0002"]
    assert version_of(url, "whatsapp") == ["0003"]


def test_postgresql_of_an_earlier_release_waits_for_migrate_then_keeps_its_data(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The 32-bit notification ids of the first release: serve refuses to start
    and names the command; `switchboard migrate` upgrades; ids go past 2**31-1."""
    with database_url("postgresql", tmp_path) as url:
        make_first_release_database(url)
        path = write_config(tmp_path, url)

        assert main(["serve", "--config", str(path)]) == 1
        [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert error == (
            "cannot start: the database schema is older than this version of Switchboard "
            "(desk at unversioned, needs 0002; notifications at unversioned, needs 0002; "
            "whatsapp at unversioned, needs 0003): "
            f"upgrade it with `switchboard migrate --config {path}`")

        capsys.readouterr()
        assert main(["migrate", "--config", str(path)]) == 0
        out = capsys.readouterr().out
        assert "notifications: upgraded from unversioned to 0002" in out
        assert "whatsapp: upgraded from unversioned to 0003" in out
        assert "chat: upgraded from unversioned to 0001" in out
        assert "desk: upgraded from unversioned to 0002" in out

        engine = sa.create_engine(url)
        with engine.begin() as conn:  # the next id is the first past 32 bits
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence("
                                 f"'notifications_items', 'id'), {INT32_MAX})")
        engine.dispose()

        async def use() -> None:
            async with trio.open_nursery() as nursery:
                harness = await Harness.start(config_of(url), nursery)
                try:
                    assert await titles(harness) == ["second", "first"]
                    assert await create_notification(harness, "past 32 bits") == INT32_MAX + 1
                    assert (await titles(harness))[0] == "past 32 bits"
                finally:
                    await harness.stop()

        trio.run(use)


async def test_migrate_twice_changes_nothing_the_second_time(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_first_release_database(db_url)
    path = write_config(tmp_path, db_url)
    assert await trio.to_thread.run_sync(main, ["migrate", "--config", str(path)]) == 0
    capsys.readouterr()
    assert await trio.to_thread.run_sync(main, ["migrate", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == sorted([
        "chat: up to date (0001)", "desk: up to date (0002)", "handover: up to date (0001)",
        "notifications: up to date (0002)", "pipeline: up to date (0001)",
        "presence: up to date (0001)", "webhooks: up to date (0001)",
        "whatsapp: up to date (0003)"])
    assert await trio.to_thread.run_sync(main, ["migrate", "--check", "--config", str(path)]) == 0


async def test_migrate_sql_prints_the_upgrade_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with database_url("postgresql", tmp_path) as url:
        make_first_release_database(url)
        path = write_config(tmp_path, url)
        assert await trio.to_thread.run_sync(
            main, ["migrate", "--sql", "--config", str(path)]) == 0
        sql = capsys.readouterr().out
        assert "ALTER TABLE notifications_items ALTER COLUMN id TYPE BIGINT" in sql
        assert "ALTER TABLE whatsapp_outbox ADD COLUMN claimed_at FLOAT" in sql
        assert "INSERT INTO chat_alembic_version (version_num) VALUES ('0001')" in sql
        assert "CREATE TABLE desk_agent_load" in sql
        # nothing was changed: the schema still needs the upgrade
        assert await trio.to_thread.run_sync(
            main, ["migrate", "--check", "--config", str(path)]) == 1
        assert capsys.readouterr().out.splitlines() == [
            "chat: tables without a version (recorded as 0001 at start-up)",
            f"desk: at unversioned, needs 0002: run `switchboard migrate --config {path}`",
            "handover: tables without a version (recorded as 0001 at start-up)",
            f"notifications: at unversioned, needs 0002: run `switchboard migrate --config {path}`",
            "pipeline: tables without a version (recorded as 0001 at start-up)",
            "presence: tables without a version (recorded as 0001 at start-up)",
            "webhooks: tables without a version (recorded as 0001 at start-up)",
            f"whatsapp: at unversioned, needs 0003: run `switchboard migrate --config {path}`"]


# -- refused schemas -------------------------------------------------------------------


def test_auto_migrate_never_refuses_an_old_sqlite_database_naming_the_command(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_first_release_database(url)
    path = write_config(tmp_path, url, auto_migrate="never")
    assert main(["serve", "--config", str(path)]) == 1
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith("cannot start: the database schema is older than this version")
    assert error.endswith(f"upgrade it with `switchboard migrate --config {path}`")
    assert "Traceback" not in error
    with pytest.raises(sa.exc.OperationalError):  # and nothing was written
        version_of(url, "notifications")


def test_a_database_upgraded_by_a_newer_version_is_refused(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, db_url, auto_migrate="always")
    assert main(["migrate", "--config", str(path)]) == 0  # a fresh database
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE notifications_alembic_version SET version_num = '0099'")
    engine.dispose()

    assert main(["serve", "--config", str(path)]) == 1
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error == (
        "cannot start: the database schema of plugin notifications is at revision 0099, "
        "which this version of Switchboard does not know (a newer version upgraded it): "
        "run that version, or restore the backup taken before the upgrade")
    capsys.readouterr()
    assert main(["migrate", "--config", str(path)]) == 1
    assert "revision 0099, which this version of Switchboard does not know" in (
        capsys.readouterr().err)
    assert version_of(db_url, "notifications") == ["0099"]


# -- plugins' histories ------------------------------------------------------------------

NOTES_0001 = '''
    """notes: the table."""
    import sqlalchemy as sa
    from alembic import op

    revision = "0001"
    down_revision = None


    def upgrade() -> None:
        op.create_table("notes_items",
                        sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("text", sa.String(200), nullable=False))
'''
NOTES_0002 = '''
    """notes: who wrote each note."""
    import sqlalchemy as sa
    from alembic import op

    revision = "0002"
    down_revision = "0001"


    def upgrade() -> None:
        with op.batch_alter_table("notes_items") as batch:
            batch.add_column(sa.Column("author", sa.String(200), nullable=False,
                                       server_default="unknown"))
'''


class NotesPlugin:
    """A third-party plugin at one of its releases: its table and its history."""

    def __init__(self, directory: Path, with_author: bool) -> None:
        self.directory = directory
        self.with_author = with_author

    @hookimpl
    def switchboard_tables(self, metadata: sa.MetaData) -> None:
        columns = [sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("text", sa.String(200), nullable=False)]
        if self.with_author:
            columns.append(sa.Column("author", sa.String(200), nullable=False,
                                     server_default="unknown"))
        self.table = sa.Table("notes_items", metadata, *columns)

    @hookimpl
    def switchboard_migrations(self) -> Path:
        return self.directory


def write_revision(directory: Path, name: str, source: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(textwrap.dedent(source))


async def test_a_third_party_plugin_ships_its_own_history(
        db_url: str, tmp_path: Path, nursery: trio.Nursery) -> None:
    config = config_of(db_url, auto_migrate="always")
    first, second = tmp_path / "notes-1.0", tmp_path / "notes-1.1"
    write_revision(first, "v0001_table.py", NOTES_0001)
    write_revision(second, "v0001_table.py", NOTES_0001)
    write_revision(second, "v0002_author.py", NOTES_0002)

    old = NotesPlugin(first, with_author=False)
    harness = await Harness.start(config, nursery, plugins={"notes": old})
    await harness.app.store.execute(old.table.insert().values(id=1, text="kept"))
    await harness.stop()
    assert version_of(db_url, "notes") == ["0001"]

    new = NotesPlugin(second, with_author=True)
    harness = await Harness.start(config, nursery, plugins={"notes": new})
    try:
        await harness.app.store.execute(new.table.insert().values(id=2, text="new",
                                                                  author="ana"))
        rows = await harness.app.store.fetch_all(sa.select(new.table).order_by(new.table.c.id))
        assert [dict(r) for r in rows] == [{"id": 1, "text": "kept", "author": "unknown"},
                                           {"id": 2, "text": "new", "author": "ana"}]
    finally:
        await harness.stop()
    assert version_of(db_url, "notes") == ["0002"]


async def test_a_disabled_plugins_history_is_left_alone_and_enabling_it_creates_its_tables(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    without = make_config(merge({"store": {"url": url}},
                                {"plugins": {"notifications": {"enabled": False}}}))
    harness = await Harness.start(without, nursery)
    await harness.stop()
    assert sa.inspect(sa.create_engine(url)).has_table("notifications_items") is False
    harness = await Harness.start(config_of(url), nursery)
    try:
        assert await create_notification(harness, "hello") == 1
    finally:
        await harness.stop()


def test_a_migrations_directory_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def switchboard_migrations(self) -> Path:
            return tmp_path / "missing"

    with pytest.raises(ConfigError, match=r"migrations directory .* does not exist"):
        Plugins(make_config(), {"broken": Broken}).declare_tables(sa.MetaData())


# -- the histories make the declared tables -------------------------------------------------


def test_every_history_run_from_its_first_revision_makes_the_declared_tables(
        db_url: str) -> None:
    """What a fresh database gets (the declared tables) and what an old one
    gets by migrations are the same: a table changed without a migration fails."""
    config = load_config(None, {"SWITCHBOARD_ADMIN__PATH": '"/admin"',
                                "SWITCHBOARD_ADMIN__PASSWORD": '"correct horse battery"'})
    plugins = Plugins(config)
    metadata = sa.MetaData()
    schema = plugins.declare_tables(metadata)
    engine = sa.create_engine(db_url)
    histories = [part for part in schema.parts if part.history is not None]
    assert {part.plugin for part in histories} == {
        "chat", "desk", "handover", "notifications", "pipeline", "presence", "webhooks",
        "whatsapp", "core_admin"}  # (the admin console's, when it is on)
    try:
        for part in histories:
            assert isinstance(part.history, History)
            declared = sa.MetaData()
            for table in part.tables:
                table.to_metadata(declared)
            with engine.begin() as conn:
                upgrade_history(conn, part.history)
                mine = set(declared.tables)
                context = MigrationContext.configure(
                    conn, opts={"include_object": lambda obj, name, kind, *_, mine=mine: (
                        kind != "table" or name in mine)})
                assert compare_metadata(context, declared) == [], part.plugin
    finally:
        engine.dispose()


NOTES_0002_FAILING = '''
    """notes: a revision that fails half-way."""
    import sqlalchemy as sa
    from alembic import op

    revision = "0002"
    down_revision = "0001"


    def upgrade() -> None:
        with op.batch_alter_table("notes_items") as batch:
            batch.add_column(sa.Column("author", sa.String(200), nullable=True))
        op.execute("INSERT INTO notes_items (id, text) VALUES (1, 'a second id 1')")
'''


def test_a_revision_that_fails_leaves_the_database_as_it_was(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, broken = tmp_path / "notes-1.0", tmp_path / "notes-1.1"
    write_revision(first, "v0001_table.py", NOTES_0001)
    write_revision(broken, "v0001_table.py", NOTES_0001)
    write_revision(broken, "v0002_author.py", NOTES_0002_FAILING)
    config = config_of(db_url, auto_migrate="always")
    engine = sa.create_engine(db_url)
    try:
        plugin = NotesPlugin(first, with_author=False)
        schema = Plugins(config, {"notes": plugin}, use_entry_points=False).declare_tables(
            sa.MetaData())
        with engine.begin() as conn:
            schema.prepare(conn, upgrade=True)
            conn.execute(plugin.table.insert().values(id=1, text="kept"))


        assert serve(config, {"notes": NotesPlugin(broken, with_author=True)}) == 1
        [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert error.startswith("cannot start: upgrading the schema of plugin notes failed (")
        assert error.endswith("); nothing was changed")
        assert version_of(db_url, "notes") == ["0001"]
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("notes_items")}
            assert columns == {"id", "text"}
            assert conn.exec_driver_sql("SELECT text FROM notes_items").scalars().all() == [
                "kept"]
    finally:
        engine.dispose()
