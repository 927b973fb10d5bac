"""Plugin discovery (entry points), enabling from config, and hook calling."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import site
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

import attrs
import pluggy
import sqlalchemy as sa

from . import hookspec
from .config import Config, ConfigError, Problem
from .events import EventSpec
from .migrations import History, PluginSchema, Schema, SchemaError, migrations_directory
from .profiles import Profile
from .structure import all_errors, make_converter

ENTRY_POINT_GROUP = "switchboard.plugins"
log = logging.getLogger("switchboard.plugins")
_converter = make_converter()


@attrs.frozen
class PluginInfo:
    name: str
    #: The plugin object (None for an installed plugin that is disabled: its
    #: module is not even imported).
    plugin: object | None
    #: Distribution that provides it (``name version``), if any.
    source: str
    enabled: bool


def _instantiate(obj: object) -> object:
    return obj() if inspect.isclass(obj) else obj


@functools.cache
def _installed() -> tuple[tuple[str, str, str, Any], ...]:
    """(name, target, distribution, entry point) of each installed plugin.

    Read once per process: naming the distribution parses its metadata, which
    costs more than the rest of a server's start (the harness starts hundreds).
    """
    return tuple(
        (ep.name, ep.value, f"{ep.dist.name} {ep.dist.version}" if ep.dist else "", ep)
        for ep in entry_points(group=ENTRY_POINT_GROUP))


def add_plugin_path(directories: Sequence[str]) -> None:
    """Make the distributions installed in ``directories`` (``pip install
    --target DIR``) importable and their entry points found, as site
    directories (their ``.pth`` files apply); the config's ``plugin_path``."""
    added = False
    for i, directory in enumerate(directories):
        path = os.path.abspath(directory)
        if not os.path.isdir(path):
            raise ConfigError(f"plugin_path.{i}", f"no such directory: {directory}")
        if path not in sys.path:
            site.addsitedir(path)
            added = True
    if added:
        _installed.cache_clear()


def discover(wanted: Callable[[str], bool] = lambda name: True,
             ) -> dict[str, tuple[object | None, str]]:
    """Plugins installed under the ``switchboard.plugins`` entry-point group; only
    those ``wanted`` are loaded (imported), the others are named, with None."""
    found: dict[str, tuple[object | None, str]] = {}
    for name, target, dist, ep in _installed():
        if not wanted(name):
            found[name] = (None, dist)
            continue
        try:
            found[name] = (ep.load(), dist)
        except Exception as exc:  # a broken third-party plugin must be named
            raise ConfigError(f"plugins.{name}", f"cannot load {target}: {exc}") from exc
    return found


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, looking only at attributes named like a hook.

    pluggy inspects every attribute of a registered plugin for hook markers;
    ours are all named ``switchboard_*`` (anything else so named but unknown
    is refused in :meth:`Plugins._register`), so the rest need no look.
    """

    #: (plugin class, attribute) -> its hook options: a server's plugins are new
    #: instances of the same classes at every start, and pluggy's static lookup
    #: of an attribute is slow.
    _class_opts: dict[tuple[type, str], Any] = {}

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        if not name.startswith(f"{hookspec.PROJECT}_"):
            return None
        if inspect.isclass(plugin) or inspect.ismodule(plugin) or name in _vars_of(plugin):
            return super().parse_hookimpl_opts(plugin, name)
        key = (type(plugin), name)
        try:
            return self._class_opts[key]
        except KeyError:
            opts = self._class_opts[key] = super().parse_hookimpl_opts(plugin, name)
            return opts


def _vars_of(obj: object) -> dict[str, Any]:
    """``obj``'s own attributes, without running ``__getattr__`` or descriptors."""
    try:
        found = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return {}
    return found if isinstance(found, dict) else {}


class Plugins:
    """The enabled plugins of one server, with their events and settings.

    Hooks are called through pluggy, one implementation at a time (see
    :meth:`callers`, :meth:`acall` and :meth:`notify`): pluggy's call order
    (``tryfirst``/``trylast``, the latest registered first) and its wrappers
    apply, and an async implementation is awaited before the next one is
    called, so one that fails cannot leave the others' coroutines unawaited.
    """

    def __init__(self, config: Config, extra: Mapping[str, object] | None = None,
                 *, use_entry_points: bool = True) -> None:
        if use_entry_points:
            add_plugin_path(config.plugin_path)
        # a disabled plugin is not imported: a server starts with the modules
        # of the plugins it runs only
        available: dict[str, tuple[object | None, str]] = (
            discover(config.plugin_enabled) if use_entry_points else {})
        for name, obj in (extra or {}).items():
            available[name] = (obj, "")
        unknown = [name for name in config.plugins if name not in available]
        if unknown:
            known = ", ".join(sorted(available)) or "none"
            raise ConfigError.of([Problem(f"plugins.{name}",
                                          f"no such plugin (installed: {known})")
                                  for name in unknown])
        #: Whether the admin console is on (its table is declared with the plugins').
        self._console = bool(config.admin.path)
        self.pm: pluggy.PluginManager = _PluginManager(hookspec.PROJECT)
        self.pm.add_hookspecs(hookspec)
        self.infos: list[PluginInfo] = []
        for name, (obj, source) in sorted(available.items()):
            enabled = config.plugin_enabled(name)
            plugin = _instantiate(obj) if enabled and obj is not None else None
            self.infos.append(PluginInfo(name, plugin, source, enabled))
            if plugin is not None:
                self._register(name, plugin)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise ConfigError(f"plugins.{self._name_or(exc.plugin)}", str(exc)) from None
        self.hook = self.pm.hook
        self._callers: dict[str, list[tuple[str, Callable[..., Any]]]] = {}
        self.settings = self._structure_settings(config)
        self.events = self._collect_events()
        self.profiles = self._collect_profiles(config)
        #: Service name -> (name of the plugin offering it, the service).
        self.services = self._collect_services()

    def _register(self, name: str, plugin: object) -> None:
        """Register ``plugin``, refusing hooks that do not exist or do not fit."""
        for attr in dir(plugin):
            if attr.startswith(f"{hookspec.PROJECT}_") and attr not in _HOOK_NAMES:
                raise ConfigError(f"plugins.{name}",
                                  f"{attr!r} is not a Switchboard hook (misspelled?)")
            if attr in _HOOK_NAMES and self.pm.parse_hookimpl_opts(plugin, attr) is None:
                raise ConfigError(f"plugins.{name}",
                                  f"{attr!r} is not marked with @hookimpl")
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise ConfigError(f"plugins.{name}", str(exc)) from None

    def _name_or(self, plugin: object) -> str:
        return self.pm.get_name(plugin) or repr(plugin)

    def name_of(self, plugin: object) -> str:
        name = self.pm.get_name(plugin)
        if name is None:
            raise LookupError(f"{plugin!r} is not a registered plugin")
        return name

    # -- calling hooks -----------------------------------------------------

    def callers(self, hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
        """``(plugin name, call)`` for each plugin implementing ``hook_name``, in
        pluggy's call order. ``call(**kwargs)`` calls that plugin's
        implementation through pluggy (with the hook's wrappers) and returns
        its result."""
        found = self._callers.get(hook_name)
        if found is None:
            caller = getattr(self.pm.hook, hook_name)
            every = caller.get_hookimpls()
            impls = [impl for impl in reversed(every) if not (impl.hookwrapper or impl.wrapper)]
            firstresult = bool(caller.spec and caller.spec.opts.get("firstresult"))
            # Through pluggy when it adds something to the call (a wrapper, the
            # spec's default arguments); otherwise the implementation is called
            # as pluggy would call it, without its machinery (a few microseconds
            # per plugin, on every session's opening and closing).
            direct = not (any(impl.hookwrapper or impl.wrapper for impl in every)
                          or (caller.spec is not None and caller.spec.kwargdefaults))
            found = []
            for impl in impls:
                if direct:
                    found.append((impl.plugin_name, _direct(impl)))
                    continue
                others = [i.plugin for i in impls if i is not impl]
                found.append((impl.plugin_name,
                              _one(self.pm.subset_hook_caller(hook_name, others), firstresult)))
            self._callers[hook_name] = found
        return found

    async def acall(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook plugin by plugin, awaiting each awaitable result before
        calling the next plugin: ``(plugin name, result)``. An exception ends
        the call (and is raised)."""
        results = []
        for name, call in self.callers(hook_name):
            result = call(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            results.append((name, result))
        return results

    async def notify(self, hook_name: str, on_error: Callable[[str, str, Exception], None],
                     **kwargs: Any) -> None:
        """Call a hook on every plugin, one at a time; a plugin that raises is
        reported to ``on_error(plugin, hook, exception)`` and the others still run."""
        for name, call in self.callers(hook_name):
            try:
                result = call(**kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                on_error(name, hook_name, exc)

    def _declared(self, hook_name: str) -> list[tuple[str, Any]]:
        """A declaration hook's results; a plugin failing in it is a start-up error."""
        results = []
        for name, call in self.callers(hook_name):
            try:
                results.append((name, call()))
            except Exception as exc:
                raise ConfigError(f"plugins.{name}",
                                  f"{hook_name} failed: {exc!r}") from exc
        return results

    # -- declarations ------------------------------------------------------

    def _structure_settings(self, config: Config) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        problems: list[Problem] = []
        declared: set[str] = set()
        for name, cls in self._declared("switchboard_config_class"):
            if cls is None:
                continue
            declared.add(name)
            raw = config.plugin_settings(name)
            try:
                settings[name] = _converter.structure(raw, cls)
            except Exception as exc:
                problems += [Problem(err.field, err.message)
                             for err in all_errors(exc, f"plugins.{name}", raw)]
        for info in self.infos:
            if info.enabled and info.name not in declared and config.plugin_settings(info.name):
                problems += [Problem(f"plugins.{info.name}.{key}", "unknown key (no settings)")
                             for key in config.plugin_settings(info.name)]
        if problems:
            raise ConfigError.of(problems)
        return settings

    def _collect_events(self) -> dict[str, EventSpec]:
        events: dict[str, EventSpec] = {}
        for name, specs in self._declared("switchboard_events"):
            for spec in specs or ():
                spec = attrs.evolve(spec, plugin=name)
                key = f"{spec.direction}:{spec.name}"
                if key in events and spec.direction == "in":
                    raise ConfigError(f"plugins.{name}",
                                      f"event {spec.name!r} already declared by "
                                      f"{events[key].plugin!r}")
                events.setdefault(key, spec)
        return events

    def declared_profiles(self) -> list[tuple[str, Any]]:
        """``(plugin name, its profiles)`` for every plugin declaring profiles."""
        return self._declared("switchboard_profiles")

    def _collect_profiles(self, config: Config) -> dict[str, Profile]:
        profiles: dict[str, Profile] = {}
        for name, declared in self.declared_profiles():
            for profile in declared or ():
                if profile.name in profiles:
                    raise ConfigError(f"plugins.{name}",
                                      f"profile {profile.name!r} is declared twice")
                profiles[profile.name] = profile
        wanted = {f"socketio.profiles.{ns}": p for ns, p in config.socketio.profiles.items()}
        if config.server.ws_profile:
            wanted["server.ws_profile"] = config.server.ws_profile
        for key, profile_name in wanted.items():
            if profile_name not in profiles:
                known = ", ".join(sorted(profiles)) or "none"
                raise ConfigError(key, f"no profile {profile_name!r} (available: {known})")
        return profiles

    def _collect_services(self) -> dict[str, tuple[str, object]]:
        services: dict[str, tuple[str, object]] = {}
        for name, offered in self._declared("switchboard_services"):
            for service, impl in (offered or {}).items():
                if not isinstance(service, str) or not service:
                    raise ConfigError(f"plugins.{name}",
                                      f"service names are strings, not {service!r}")
                if service in services:
                    raise ConfigError(f"plugins.{name}",
                                      f"service {service!r} is already offered by "
                                      f"{services[service][0]!r}")
                services[service] = (name, impl)
        return services

    def implements(self, hook_name: str) -> bool:
        """Whether any enabled plugin implements ``hook_name``."""
        return bool(self.callers(hook_name))

    def incoming(self) -> dict[str, EventSpec]:
        return {s.name: s for s in self.events.values() if s.direction == "in"}

    def declare_tables(self, metadata: sa.MetaData) -> Schema:
        """Add the enabled plugins' tables to ``metadata``; return them with
        the plugins' migration histories."""
        tables: dict[str, tuple[sa.Table, ...]] = {}
        for name, call in self.callers("switchboard_tables"):
            before = set(metadata.tables)
            try:
                call(metadata=metadata)
            except Exception as exc:
                raise ConfigError(f"plugins.{name}",
                                  f"switchboard_tables failed: {exc!r}") from exc
            tables[name] = tuple(t for key, t in metadata.tables.items() if key not in before)
        histories: dict[str, History] = {}
        for name, directory in self._declared("switchboard_migrations"):
            if directory is not None:
                try:
                    histories[name] = History(name, migrations_directory(directory, name))
                except SchemaError as exc:
                    raise ConfigError(f"plugins.{name}", str(exc)) from exc
        names = list(tables) + [name for name in histories if name not in tables]
        parts = [PluginSchema(name, tables.get(name, ()), histories.get(name))
                 for name in names]
        if self._console:  # (the core's own table, with its own history)
            from .admin.logouts import declare
            parts.append(declare(metadata))
        return Schema(metadata, parts)

    def json_routes(self) -> dict[tuple[str, str], Any]:
        """The JSON routes the plugins declared (see ``switchboard_json_routes``)."""
        routes: dict[tuple[str, str], Any] = {}
        for name, declared in self._declared("switchboard_json_routes"):
            for route, handler in (declared or {}).items():
                if route in routes:
                    raise ConfigError(f"plugins.{name}",
                                      f"JSON route {route!r} is already declared")
                routes[route] = handler
        return routes

    def blueprints(self) -> list[Any]:
        out: list[Any] = []
        for _, result in self._declared("switchboard_blueprints"):
            if result is None:
                continue
            if isinstance(result, Iterable):
                out.extend(result)
            else:
                out.append(result)
        return out


#: Names of the hooks a plugin may implement.
_HOOK_NAMES = frozenset(name for name in dir(hookspec)
                        if name.startswith(f"{hookspec.PROJECT}_"))


def _direct(impl: pluggy.HookImpl) -> Callable[..., Any]:
    """A call of one implementation with the arguments it takes, giving its
    result: what pluggy does for a hook that no wrapper wraps (its list of
    the results that are not ``None``, or its first result, comes to the same
    for one implementation)."""
    function, names, optional = impl.function, impl.argnames, impl.kwargnames

    def call(**kwargs: Any) -> Any:
        try:
            args = [kwargs[name] for name in names]
        except KeyError as exc:
            raise pluggy.HookCallError(f"hook call must provide argument {exc.args[0]!r}") from exc
        if optional:
            return function(*args, **{name: kwargs[name] for name in optional
                                       if name in kwargs})
        return function(*args)

    return call


def _one(caller: Callable[..., Any], firstresult: bool) -> Callable[..., Any]:
    """A call of ``caller`` (limited to one implementation) giving that
    implementation's result (pluggy gives a list, without ``None`` results,
    unless the hook is ``firstresult``)."""
    if firstresult:
        return caller

    def call(**kwargs: Any) -> Any:
        results = caller(**kwargs)
        return results[0] if results else None

    return call
