"""The ``switchboard`` command: serve, migrate, token, plugins, check-config, genconfig,
openapi, asyncapi.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence

import attrs
import trio

from . import logs
from .auth import TokenVerifier, development_secret_path, mint_token
from .config import Config, ConfigError, load_config
from .migrations import MIGRATE_COMMAND, SchemaBehind, SchemaError, Step
from .pluginmanager import Plugins
from .production import generate_config, warnings
from .store import Store, StoreError
from .validators import check_identifier

log = logging.getLogger("switchboard")


def _load(path: str | None, *, host: str | None = None, port: int | None = None) -> Config:
    from_env = path is None and os.environ.get("SWITCHBOARD_CONFIG")
    try:
        config = _load_all_problems(path or os.environ.get("SWITCHBOARD_CONFIG"))
    except ConfigError as exc:
        if from_env and not exc.key:  # the file itself: say where its name came from
            raise ConfigError("", exc.message, source="SWITCHBOARD_CONFIG") from None
        raise
    server = config.server
    if host is not None:
        server = attrs.evolve(server, host=host)
    if port is not None:
        server = attrs.evolve(server, port=port)
    return attrs.evolve(config, server=server)


def _load_all_problems(path: str | None) -> Config:
    """:func:`load_config`, with the problems of the plugin sections added to
    those of the rest of the file (otherwise they are found at start)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        if exc.readable is None:
            raise
        try:
            Plugins(exc.readable)
        except ConfigError as more:
            raise ConfigError.of(exc.problems + more.problems) from None
        raise


def tune_gc(thresholds: list[int]) -> None:
    """Keep the cyclic garbage collector's pauses out of the delivery path.

    Everything allocated while starting (modules, plugins, the app) is moved out
    of the collector's sight, and collections run less often: a server holding
    many connections has hundreds of thousands of tracked objects, and a full
    collection over them is a pause of 100 ms or more.
    """
    gc.collect()
    gc.freeze()
    if thresholds:
        gc.set_threshold(*thresholds)


async def _serve(config: Config, plugins: Mapping[str, object] | None = None) -> None:
    from .server import Server

    server = Server(config, plugins=plugins)
    if server.development_secret:
        log.warning("development mode: no auth.secret configured, using the generated "
                    "secret in %s (mint tokens with `switchboard token`)",
                    development_secret_path(config.data_dir))
    async with trio.open_nursery() as nursery:
        # Catch signals before listening: a SIGTERM right after startup still drains.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await nursery.start(server.run)
            tune_gc(config.server.gc_thresholds)
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                server.shutdown()
                break
            await server.wait_stopped()


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config, host=args.host, port=args.port)
    logs.configure(config.log.level, config.log.repeat_limit, config.log.repeat_window,
                   config.log.format)
    return serve(config, config_path=args.config)


def migrate_command(config_path: str | None) -> str:
    """The ``switchboard migrate`` command line for the config file serve was given."""
    path = config_path or os.environ.get("SWITCHBOARD_CONFIG")
    return f"{MIGRATE_COMMAND} --config {shlex.quote(path)}" if path else MIGRATE_COMMAND


def serve(config: Config, plugins: Mapping[str, object] | None = None, *,
          config_path: str | None = None) -> int:
    """Run the server until SIGINT or SIGTERM: 0 once it has drained, 1 (with the
    reason logged) when it cannot start or fails, 2 when what stopped it is a
    config problem (a plugin's settings, a key file, development mode on an
    address beyond loopback). ``config_path``: the file ``config`` came from,
    named in the command a start-up error suggests.

    After a stop the process is expected to exit: what the stopped connections
    left to the cyclic garbage collector is frozen (``gc.freeze``), left to the
    OS, instead of collected object by object while the interpreter finalizes
    (at 20,000 connections, some 600,000 objects and seconds of the stop)."""
    try:
        trio.run(_serve, config, plugins)
        gc.freeze()
    except (Exception, BaseExceptionGroup) as exc:
        failures = [f for f in _leaves(exc) if isinstance(f, Exception)]
        if len(failures) < len(_leaves(exc)):
            raise  # KeyboardInterrupt and the like: not a failure to report
        for failure in failures:
            if isinstance(failure, SchemaBehind):
                failure.command = migrate_command(config_path)
            _report_failure(config, failure)
        return 2 if all(isinstance(f, ConfigError) for f in failures) else 1
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``, out of the groups Trio's nurseries wrap them in."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _report_failure(config: Config, exc: Exception) -> None:
    """One log line for a failure the operator can act on, naming the cause and
    what to do; a traceback only for a bug (in Switchboard or a plugin), where
    it is what a developer needs."""
    if isinstance(exc, SchemaError):  # its message says what to do
        log.error("cannot start: %s", exc)
    elif isinstance(exc, StoreError):
        advice = _DATA_DIR_ADVICE if config.store_url.startswith("sqlite") else \
            "check that the database is running and reachable, and store.url"
        log.error("cannot start: %s (%s)", exc, advice)
    elif isinstance(exc, ConfigError):
        for problem in exc.naming_sources(os.environ).problems:
            log.error("cannot start: config: %s", problem)
    elif isinstance(exc, socket.gaierror):
        log.error("cannot listen on %s:%s: %s (check --host or server.host)",
                  config.server.host, config.server.port, exc.strerror or exc)
    elif isinstance(exc, OSError) and exc.errno in _LISTEN_ADVICE:
        log.error("cannot listen on %s:%s: %s (%s)", config.server.host, config.server.port,
                  exc.strerror or exc, _LISTEN_ADVICE[exc.errno])
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        in_data_dir = str(exc.filename or "").startswith(config.data_dir)
        log.error("cannot start: %s%s%s", where, exc.strerror or exc,
                  f" ({_DATA_DIR_ADVICE})" if in_data_dir else "")
    else:
        log.error("cannot start: %s: %s", type(exc).__name__, exc, exc_info=exc)


_DATA_DIR_ADVICE = "data_dir, or the path in store.url, must be a directory this user can write"
#: What to do when the listening socket cannot be opened, by errno.
_LISTEN_ADVICE = {
    errno.EADDRINUSE: "another process listens there: stop it, or choose another port "
                      "with --port or server.port",
    errno.EACCES: "this user may not listen on that port: choose one above 1023 "
                  "with --port or server.port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address: choose another "
                         "with --host or server.host",
}


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    logs.configure(config.log.level, config.log.repeat_limit, config.log.repeat_window,
                   config.log.format)
    try:
        return trio.run(_migrate, config, args.sql, args.check, migrate_command(args.config))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _migrate(config: Config, sql: bool, check: bool, command: str) -> int:
    """Upgrade (or with ``sql``, print how; with ``check``, tell whether it is
    needed) the schema of the enabled plugins' tables."""
    store = Store(config.store_url, pool_size=1, busy_timeout=config.store.busy_timeout)
    schema = Plugins(config).declare_tables(store.metadata)
    steps: list[Step] = []
    text: list[str] = []
    if sql:
        await store.open(lambda conn: text.append(schema.sql(conn)))
    elif check:
        await store.open(lambda conn: steps.extend(schema.check(conn)))
    else:
        await store.open(lambda conn: steps.extend(schema.prepare(conn, upgrade=True)))
    await store.close()
    if sql:
        print(text[0] or "-- nothing to do: the schema is up to date", end="")
        return 0
    for step in steps:
        print(_checked(step, command) if check else step.describe())
    return 1 if any(step.upgrade for step in steps) else 0


def _checked(step: Step, command: str) -> str:
    """What ``migrate --check`` says of a plugin."""
    after = ", ".join(step.after)
    if step.upgrade:
        before = ", ".join(step.before) or "unversioned"
        return f"{step.plugin}: at {before}, needs {after}: run `{command}`"
    if step.state == "new":
        return f"{step.plugin}: no tables yet (created at start-up)"
    if step.state == "unversioned":
        return f"{step.plugin}: tables without a version (recorded as {after} at start-up)"
    if step.state == "untracked":
        return f"{step.plugin}: no migrations"
    return step.describe()


def cmd_token(args: argparse.Namespace) -> int:
    config = _load(args.config)
    auth = config.auth
    if not auth.secret:
        if config.mode == "production" or auth.public_key or auth.public_key_file \
                or auth.jwks_url:
            print("error: tokens can only be minted with an HS256 auth.secret",
                  file=sys.stderr)
            return 2
        secret_file = development_secret_path(config.data_dir)
        if not secret_file.exists():
            # Generating one here would sign with a secret the server does not use.
            print(f"error: no development secret in {secret_file}: run `switchboard serve` "
                  "once with the same config (it creates it there), or set auth.secret",
                  file=sys.stderr)
            return 2
    print(mint_token(config, sub=args.sub, tenant=args.tenant, role=args.role,
                     ttl=args.ttl, now=time.time()))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    config = _load(args.config)
    plugins = Plugins(config)
    for info in plugins.infos:
        state = "enabled" if info.enabled else "disabled"
        print(f"{info.name} ({state}{', ' + info.source if info.source else ''})")
        for spec in sorted(plugins.events.values(), key=lambda s: (s.direction, s.name)):
            if spec.plugin != info.name:
                continue
            arrow = "<-" if spec.direction == "in" else "->"
            payload = spec.payload.__name__ if spec.payload else "any"
            print(f"  {arrow} {spec.name} [{payload}] {spec.doc}".rstrip())
        for name, profiles in plugins.declared_profiles():
            if name == info.name:
                for profile in profiles or ():
                    print(f"  profile {profile.name}: {profile.doc}".rstrip())
        for service, (name, impl) in sorted(plugins.services.items()):
            if name == info.name:
                print(f"  service {service} [{type(impl).__name__}]")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_all_problems(args.file)
    Plugins(config)  # plugin names and plugin settings
    if config.auth.public_key or config.auth.public_key_file:
        TokenVerifier(config.auth)  # the key is read and parsed
    found = warnings(config)
    for warning in found:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.file}: ok" + (f", {len(found)} warning(s)" if found else ""))
    return 0


def cmd_genconfig(args: argparse.Namespace) -> int:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        # created readable by its owner only: it holds secrets
        with os.fdopen(os.open(args.file, flags, 0o600), "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(generate_config())
    except FileExistsError:
        print(f"error: {args.file} exists: choose another file, or --force to overwrite it",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.file}: production mode, a new auth.secret and API key; set "
          f"server.allowed_origins, then `switchboard serve --config {args.file}`")
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535: {text!r}")
    return value


def _identifier(text: str) -> str:
    """An id the server takes from a token's claims (see ``check_identifier``)."""
    problem = check_identifier(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem}: {text[:40]!r}")
    return text


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


CONFIG_HELP = "TOML config file (default: $SWITCHBOARD_CONFIG, else the built-in defaults)"


def cmd_document(args: argparse.Namespace) -> int:
    """Print the OpenAPI or AsyncAPI document of the server this config runs."""
    from .apidocs import asyncapi_document, openapi_document
    from .server import Server

    server = Server(_load(args.config))
    document = (openapi_document(server.http_app, server.app) if args.command == "openapi"
                else asyncapi_document(server.app))
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard",
                                     description="Self-hosted realtime gateway.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do")

    serve = sub.add_parser("serve", help="run the server", description="Run the server "
                           "until SIGINT or SIGTERM, then drain and exit 0.")
    serve.add_argument("--config", help=CONFIG_HELP)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port,
                       help="port to listen on, 0 for any free one (default 8080)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser(
        "migrate", help="create or upgrade the database schema of the enabled plugins",
        description="Create the tables of the enabled plugins and upgrade their schema to "
                    "this version's newest revision; safe to run again.")
    migrate.add_argument("--config", help=CONFIG_HELP)
    what = migrate.add_mutually_exclusive_group()
    what.add_argument("--sql", action="store_true",
                      help="print the SQL it would run on this database, change nothing")
    what.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if the schema needs an upgrade")
    migrate.set_defaults(func=cmd_migrate)

    token = sub.add_parser("token", help="print a development JWT", description="Print "
                           "a JWT signed with auth.secret, or in development mode with the "
                           "secret `serve` generated in data_dir.")
    token.add_argument("--config", help=CONFIG_HELP)
    token.add_argument("--sub", required=True, type=_identifier, help="user id")
    token.add_argument("--tenant", required=True, type=_identifier, help="tenant id")
    token.add_argument("--role", default="agent", type=_identifier,
                       help="role (default agent)")
    token.add_argument("--ttl", type=_positive_seconds, default=3600.0,
                       help="seconds until it expires, more than 0 (default 3600)")
    token.set_defaults(func=cmd_token)

    plugins = sub.add_parser("plugins", help="list plugins, their events and services")
    plugins.add_argument("--config", help=CONFIG_HELP)
    plugins.set_defaults(func=cmd_plugins)

    check = sub.add_parser("check-config", help="validate a config file", description=(
        "Validate a config file (with the SWITCHBOARD_* variables) and its plugin sections; "
        "every problem is listed, then warnings about placeholder or weak secrets and "
        "development mode on every interface."))
    check.add_argument("file", help="the TOML config file")
    check.set_defaults(func=cmd_check_config)

    genconfig = sub.add_parser("genconfig", help="write a production config with new secrets",
                               description="Write a production config: mode production, a "
                               "random auth.secret and API key, a placeholder origin.")
    genconfig.add_argument("file", nargs="?", default="switchboard.toml",
                           help="where to write it (default switchboard.toml)")
    genconfig.add_argument("--force", action="store_true",
                           help="overwrite the file if it exists")
    genconfig.set_defaults(func=cmd_genconfig)

    for command, document in (("openapi", "OpenAPI 3.1 document of the HTTP routes"),
                              ("asyncapi", "AsyncAPI 3.0 document of the socket events")):
        printer = sub.add_parser(command, help=f"print the {document} (JSON)")
        printer.add_argument("--config", help=CONFIG_HELP)
        printer.set_defaults(func=cmd_document)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.naming_sources(os.environ).problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
