"""Plugin discovery (entry points), enabling from config, and hook calling."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

import attrs
import pluggy
import sqlalchemy as sa

from . import hookspec
from .config import Config, ConfigError
from .events import EventSpec
from .profiles import Profile
from .structure import first_error, make_converter

ENTRY_POINT_GROUP = "switchboard.plugins"
log = logging.getLogger("switchboard.plugins")
_converter = make_converter()


@attrs.frozen
class PluginInfo:
    name: str
    plugin: object
    #: Distribution that provides it (``name version``), if any.
    source: str
    enabled: bool


def _instantiate(obj: object) -> object:
    return obj() if inspect.isclass(obj) else obj


def discover() -> dict[str, tuple[object, str]]:
    """Plugins installed under the ``switchboard.plugins`` entry-point group."""
    found: dict[str, tuple[object, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ""
        try:
            found[ep.name] = (ep.load(), dist)
        except Exception as exc:  # a broken third-party plugin must be named
            raise ConfigError(f"plugins.{ep.name}", f"cannot load {ep.value}: {exc}") from exc
    return found


class Plugins:
    """The enabled plugins of one server, with their events and settings."""

    def __init__(self, config: Config, extra: Mapping[str, object] | None = None,
                 *, use_entry_points: bool = True) -> None:
        available = discover() if use_entry_points else {}
        for name, obj in (extra or {}).items():
            available[name] = (obj, "")
        for name in config.plugins:
            if name not in available:
                known = ", ".join(sorted(available)) or "none"
                raise ConfigError(f"plugins.{name}", f"no such plugin (installed: {known})")
        self.pm = pluggy.PluginManager(hookspec.PROJECT)
        self.pm.add_hookspecs(hookspec)
        self.infos: list[PluginInfo] = []
        for name, (obj, source) in sorted(available.items()):
            enabled = config.plugin_enabled(name)
            plugin = _instantiate(obj)
            self.infos.append(PluginInfo(name, plugin, source, enabled))
            if enabled:
                self.pm.register(plugin, name=name)
        self.hook = self.pm.hook
        self.settings = self._structure_settings(config)
        self.events = self._collect_events()
        self.profiles = self._collect_profiles(config)

    def name_of(self, plugin: object) -> str:
        name = self.pm.get_name(plugin)
        if name is None:
            raise LookupError(f"{plugin!r} is not a registered plugin")
        return name

    def results_by_plugin(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call one hook plugin by plugin, keeping who returned what."""
        caller = getattr(self.pm.hook, hook_name)
        out = []
        for impl in reversed(caller.get_hookimpls()):
            args = [kwargs[a] for a in impl.argnames]
            out.append((impl.plugin_name, impl.function(*args)))
        return out

    def _structure_settings(self, config: Config) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for name, cls in self.results_by_plugin("switchboard_config_class"):
            if cls is None:
                continue
            raw = config.plugin_settings(name)
            try:
                settings[name] = _converter.structure(raw, cls)
            except Exception as exc:
                err = first_error(exc, f"plugins.{name}")
                raise ConfigError(err.field, err.message) from None
        for info in self.infos:
            if info.enabled and info.name not in settings and config.plugin_settings(info.name):
                key = next(iter(config.plugin_settings(info.name)))
                raise ConfigError(f"plugins.{info.name}.{key}", "unknown key (no settings)")
        return settings

    def _collect_events(self) -> dict[str, EventSpec]:
        events: dict[str, EventSpec] = {}
        for name, specs in self.results_by_plugin("switchboard_events"):
            for spec in specs or ():
                spec = attrs.evolve(spec, plugin=name)
                key = f"{spec.direction}:{spec.name}"
                if key in events and spec.direction == "in":
                    raise ConfigError(f"plugins.{name}",
                                      f"event {spec.name!r} already declared by "
                                      f"{events[key].plugin!r}")
                events.setdefault(key, spec)
        return events

    def _collect_profiles(self, config: Config) -> dict[str, Profile]:
        profiles: dict[str, Profile] = {}
        for name, declared in self.results_by_plugin("switchboard_profiles"):
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

    def incoming(self) -> dict[str, EventSpec]:
        return {s.name: s for s in self.events.values() if s.direction == "in"}

    def declare_tables(self, metadata: sa.MetaData) -> None:
        self.hook.switchboard_tables(metadata=metadata)

    def blueprints(self) -> list[Any]:
        out: list[Any] = []
        for result in self.hook.switchboard_blueprints():
            if result is None:
                continue
            if isinstance(result, Iterable):
                out.extend(result)
            else:
                out.append(result)
        return out


async def call_async(caller: Any, **kwargs: Any) -> list[Any]:
    """Call a hook and await each result that is awaitable, in order."""
    results = []
    for result in caller(**kwargs):
        if inspect.isawaitable(result):
            result = await result
        results.append(result)
    return results
