"""The ``switchboard`` command: serve, token, plugins, check-config, openapi, asyncapi.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence

import attrs
import trio

from .auth import mint_token
from .config import Config, ConfigError, load_config
from .pluginmanager import Plugins
from .store import StoreError

log = logging.getLogger("switchboard")


def _load(path: str | None, *, host: str | None = None, port: int | None = None) -> Config:
    config = load_config(path or os.environ.get("SWITCHBOARD_CONFIG"))
    server = config.server
    if host is not None:
        server = attrs.evolve(server, host=host)
    if port is not None:
        server = attrs.evolve(server, port=port)
    return attrs.evolve(config, server=server)


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
                    os.path.join(config.data_dir, "dev-secret"))
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
    logging.basicConfig(level=config.log.level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(config)


def serve(config: Config, plugins: Mapping[str, object] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM: 0 once it has drained, 1 (with the
    reason logged) when it cannot start or fails."""
    try:
        trio.run(_serve, config, plugins)
    except (Exception, BaseExceptionGroup) as exc:
        failures = [f for f in _leaves(exc) if isinstance(f, Exception)]
        if len(failures) < len(_leaves(exc)):
            raise  # KeyboardInterrupt and the like: not a failure to report
        for failure in failures:
            _report_failure(config, failure)
        return 1
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``, out of the groups Trio's nurseries wrap them in."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _report_failure(config: Config, exc: Exception) -> None:
    """One log line for a failure the operator can act on; a traceback only for
    a bug (in Switchboard or a plugin), where it is what a developer needs."""
    if isinstance(exc, StoreError):
        log.error("cannot start: %s", exc)
    elif isinstance(exc, ConfigError):
        log.error("cannot start: config: %s", exc)
    elif isinstance(exc, OSError):
        log.error("cannot listen on %s:%s: %s", config.server.host, config.server.port,
                  exc.strerror or exc)
    else:
        log.error("cannot start: %s: %s", type(exc).__name__, exc, exc_info=exc)


def cmd_token(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config.mode == "production" and not config.auth.secret:
        print("error: tokens can only be minted with an HS256 auth.secret", file=sys.stderr)
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
    config = load_config(args.file)
    Plugins(config)  # plugin names and plugin settings
    print(f"{args.file}: ok")
    return 0


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
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML config file (default: $SWITCHBOARD_CONFIG)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print a development JWT")
    token.add_argument("--config")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--tenant", required=True, help="tenant id")
    token.add_argument("--role", default="agent", help="role (default agent)")
    token.add_argument("--ttl", type=float, default=3600.0,
                       help="seconds until it expires (default 3600)")
    token.set_defaults(func=cmd_token)

    plugins = sub.add_parser("plugins", help="list plugins, their events and services")
    plugins.add_argument("--config")
    plugins.set_defaults(func=cmd_plugins)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    for name, what in (("openapi", "OpenAPI 3.1 document of the HTTP routes"),
                       ("asyncapi", "AsyncAPI 3.0 document of the socket events")):
        document = sub.add_parser(name, help=f"print the {what} (JSON)")
        document.add_argument("--config", help="TOML config file (default: "
                              "$SWITCHBOARD_CONFIG): its plugins and paths")
        document.set_defaults(func=cmd_document)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
