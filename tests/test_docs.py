"""The documentation keeps up with the code: every hook, every public name of
``switchboard.core`` and every event of a first-party or example plugin is
documented, in its docstring and in the README (in the manner of datasette's
documentation tests). A new one without documentation fails here, by name."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import switchboard.core
from switchboard.core import App, Session, Store, hookspec, http, services
from switchboard.core.pluginmanager import Plugins
from switchboard.testing import make_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(text: str, title: str) -> str:
    """The text of the README section ``## title`` (or ``### title``), to the next one
    of its level or above."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", text, re.MULTILINE)
    assert match, f"README has no section {title!r}"
    level = len(match.group(1))
    end = re.search(rf"^#{{1,{level}}} ", text[match.end():], re.MULTILINE)
    return text[match.end(): match.end() + end.start() if end else len(text)]


def documented_in(text: str, name: str) -> bool:
    """``name`` is mentioned as code: ``name``, ``name(...)`` or ``name.attr``."""
    return re.search(rf"`{re.escape(name)}[`(.:\[ ]", text) is not None


HOOKS = sorted(name for name in dir(hookspec) if name.startswith(f"{hookspec.PROJECT}_"))
PUBLIC = sorted(switchboard.core.__all__)
#: Classes whose public methods plugins call; each method needs a docstring.
SURFACE_CLASSES = [App, Session, Store, services.ChatService, services.NotificationsService,
                   services.PresenceService, services.ChatConversation, services.ChatMessage,
                   services.TicketService, services.Ticket,
                   services.PipelineService, services.Lead, services.Pipeline,
                   services.HandoverService, services.HandoverRequest]


def first_party_events() -> list[Any]:
    plugins = Plugins(make_config())
    return sorted(plugins.events.values(), key=lambda s: (s.plugin, s.direction, s.name))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_and_a_row_in_the_readme(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspec, hook)) or ""
    assert len(doc) > 40, f"{hook} in core/hookspec.py needs a docstring saying when it " \
                          "is called, with what, and what its return means"
    writing = section(README, "Hooks")
    assert documented_in(writing, hook), f"README 'Hooks' has no row for `{hook}`"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_documented(name: str) -> None:
    value = getattr(switchboard.core, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        assert own and own.strip(), f"switchboard.core.{name} needs a docstring of its own"
    surface = section(README, "The public surface")
    assert documented_in(surface, name), \
        f"README 'The public surface' does not list `{name}`"


def _public_members(cls: type) -> list[tuple[str, Any]]:
    members = []
    for name, member in vars(cls).items():
        if name.startswith("_") or name in ("__init__",):
            continue
        if isinstance(member, property) or inspect.isfunction(member):
            members.append((name, member))
    return members


@pytest.mark.parametrize(("cls", "member"), [
    (cls, name) for cls in SURFACE_CLASSES for name, _ in _public_members(cls)],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_every_public_method_of_the_surface_has_a_docstring(cls: type, member: str) -> None:
    value = vars(cls)[member]
    doc = (value.fget if isinstance(value, property) else value).__doc__
    if cls is App and member in ("attach_nursery", "task_failed", "hook_failed",
                                 "authenticate", "expiry_deadline", "new_session",
                                 "open_session", "close_session", "dispatch", "check_rate"):
        return  # the server's side of the App (documented for it, not listed for plugins)
    assert doc and doc.strip(), f"{cls.__name__}.{member} needs a docstring"


@pytest.mark.parametrize(("service", "method"), [
    (service, name) for service in (services.ChatService, services.NotificationsService,
                                    services.PresenceService, services.PipelineService,
                                    services.HandoverService)
    for name, _ in _public_members(service)] + [
    (services.TicketService, name) for name, _ in _public_members(services.TicketService)],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_every_service_method_is_in_the_readme(service: type, method: str) -> None:
    assert documented_in(section(README, "Services: other plugins"), method) or \
        re.search(rf"\b{method}\b", section(README, "Services: other plugins")), \
        f"README 'Services' does not mention {service.__name__}.{method}"


@pytest.mark.parametrize("name", sorted(http.__all__))
def test_every_http_helper_has_a_docstring(name: str) -> None:
    value = getattr(http, name)
    if callable(value):
        assert value.__doc__ and value.__doc__.strip(), f"core.http.{name} needs a docstring"


@pytest.mark.parametrize("spec", first_party_events(),
                         ids=lambda s: f"{s.plugin}:{s.direction}:{s.name}")
def test_every_event_of_a_first_party_plugin_is_documented(spec: Any) -> None:
    assert spec.doc.strip(), f"event {spec.name!r} of plugin {spec.plugin!r} has no doc"
    assert documented_in(README, spec.name), \
        f"README does not document the event `{spec.name}` of plugin {spec.plugin!r}"


def _example_plugins() -> list[tuple[str, Path, object]]:
    from switchboard_autoreply.plugin import AutoReplyPlugin
    from switchboard_example.plugin import HelpRequestPlugin
    return [("help_demo", ROOT / "contrib/example_plugin/README.md", HelpRequestPlugin),
            ("autoreply", ROOT / "contrib/autoreply_plugin/README.md", AutoReplyPlugin)]


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    for package in ("example_plugin", "autoreply_plugin"):
        monkeypatch.syspath_prepend(str(ROOT / "contrib" / package))


def test_every_event_and_setting_of_the_example_plugins_is_in_their_readme() -> None:
    import attrs
    for name, readme, plugin in _example_plugins():
        text = readme.read_text()
        plugins = Plugins(make_config(), {name: plugin}, use_entry_points=False)
        for spec in plugins.events.values():
            assert documented_in(text, spec.name), f"{readme.name} of {name}: `{spec.name}`"
        settings = plugins.settings.get(name)
        for field in attrs.fields(type(settings)) if settings is not None else ():
            assert re.search(rf"^{field.name} = ", text, re.MULTILINE), \
                f"{readme.parent.name}/README.md does not show the setting {field.name}"
