"""The documentation keeps up with the code: every hook, every public name of
``switchboard.core`` and every event of a first-party or example plugin is
documented, in its docstring and in the reference under ``docs/`` (in the manner
of datasette's documentation tests). A new one without documentation fails here,
by name. The README's front page and the architecture map stay true too."""

from __future__ import annotations

import inspect
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import switchboard.core
from switchboard.core import App, Session, Store, hookspec, http, services
from switchboard.core.config import Config
from switchboard.core.pluginmanager import Plugins
from switchboard.testing import make_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
#: Writing a plugin: hooks, the public surface, services.
WRITING = (DOCS / "writing-plugins.md").read_text()
#: The whole reference, one text.
REFERENCE = "\n".join(page.read_text() for page in sorted(DOCS.rglob("*.md")))


def section(text: str, title: str) -> str:
    """The text of the section ``# title`` (any level) of a page, to the next one of
    its level or above."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", text, re.MULTILINE)
    assert match, f"no section {title!r}"
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
    writing = section(WRITING, "Hooks")
    assert documented_in(writing, hook), f"docs/writing-plugins.md 'Hooks' has no row for `{hook}`"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_documented(name: str) -> None:
    value = getattr(switchboard.core, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        assert own and own.strip(), f"switchboard.core.{name} needs a docstring of its own"
    surface = section(WRITING, "The public surface")
    assert documented_in(surface, name), \
        f"docs/writing-plugins.md 'The public surface' does not list `{name}`"


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
    services_section = section(WRITING, "Services: other plugins")
    assert documented_in(services_section, method) or \
        re.search(rf"\b{method}\b", services_section), \
        f"docs/writing-plugins.md 'Services' does not mention {service.__name__}.{method}"


@pytest.mark.parametrize("name", sorted(http.__all__))
def test_every_http_helper_has_a_docstring(name: str) -> None:
    value = getattr(http, name)
    if callable(value):
        assert value.__doc__ and value.__doc__.strip(), f"core.http.{name} needs a docstring"


@pytest.mark.parametrize("spec", first_party_events(),
                         ids=lambda s: f"{s.plugin}:{s.direction}:{s.name}")
def test_every_event_of_a_first_party_plugin_is_documented(spec: Any) -> None:
    assert spec.doc.strip(), f"event {spec.name!r} of plugin {spec.plugin!r} has no doc"
    assert documented_in(REFERENCE, spec.name), \
        f"docs/ does not document the event `{spec.name}` of plugin {spec.plugin!r}"


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


# -- the architecture map and the front page ------------------------------------

def _map() -> str:
    page = (DOCS / "architecture.md").read_text()
    return page.split("```\n")[1]


@pytest.mark.parametrize("module", sorted(
    path.relative_to(ROOT).as_posix()
    for top in ("core", "plugins") for path in (ROOT / top).rglob("*.py")
    if path.name != "__init__.py"))
def test_every_module_is_on_the_architecture_map(module: str) -> None:
    block = _map()
    top, _, rest = module.partition("/")
    package, _, name = rest.rpartition("/")
    if top == "core":
        assert re.search(rf"(^|\s){re.escape(rest)}(\s|$)", block, re.MULTILINE), \
            f"docs/architecture.md does not place {module} on the map"
    else:
        assert re.search(rf"(^|\s){re.escape(package + '/' if package else name)}(\s|$)",
                         block, re.MULTILINE), f"docs/architecture.md does not show {module}"
        if package:
            entry = block[block.index(f"  {package}/"):]
            end = re.search(r"\n {0,2}\S", entry[3:])
            entry = entry[: end.start() + 3 if end else len(entry)]
            assert name in entry, f"docs/architecture.md: {package}/ does not name {name}"


def test_the_architecture_map_names_no_module_that_is_gone() -> None:
    for top in ("core", "plugins"):
        section_ = ("\n" + _map()).split(f"\n{top}/")[1].split("\n", 1)[1]
        section_ = re.split(r"\n\S", section_)[0]
        for name in re.findall(r"([\w/]+\.py)", section_):
            candidates = [ROOT / top / name, *(ROOT / top).rglob(name)]
            assert any(c.exists() for c in candidates), f"the map names {top}/{name}: gone"


def test_every_page_of_the_reference_is_linked_from_the_front_page() -> None:
    for page in sorted(DOCS.rglob("*.md")):
        link = page.relative_to(ROOT).as_posix()
        assert f"]({link})" in README, f"README.md does not link {link}"


def test_every_relative_link_of_the_docs_resolves() -> None:
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links {target}"


def _tour_blocks() -> list[str]:
    tour = section(README, "A five-minute tour")
    return re.findall(r"```\w*\n(.*?)```", tour, re.DOTALL)


def _curls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) of every ``curl -X POST`` of a text."""
    found = []
    for command in re.findall(r"curl .*?-d '(?:[^']*)'", text, re.DOTALL):
        path = re.search(r"http://127\.0\.0\.1:8080(\S+)", command)
        body = re.search(r"-d '([^']*)'", command)
        assert path and body
        found.append((path.group(1), json.loads(body.group(1))))
    return found


@pytest.fixture
def switchboard_config() -> Config:
    """The tour's config: the API key of the README's ``switchboard.toml``."""
    toml_text = next(b for b in _tour_blocks() if "api_keys" in b)
    toml_text = re.search(r"<<'TOML'\n(.*?)\nTOML\n", toml_text, re.DOTALL).group(1)  # type: ignore[union-attr]
    return make_config({"api_keys": tomllib.loads(toml_text)["api_keys"]})


async def test_the_five_minute_tour_does_what_it_says(switchboard: Any) -> None:
    """The front page's tour, step by step: alice connects with a token, the
    backend's curl commands (their paths, keys and bodies as printed) are
    accepted, and what the README says arrives arrives."""
    text = section(README, "A five-minute tour")
    key = re.search(r"Authorization: Bearer (\S+?)'", text)
    assert key
    alice = await switchboard.connect("alice", "acme", "agent")
    curls = _curls(text)
    assert [path for path, _ in curls] == ["/api/v1/notifications", "/api/v1/emit"]
    http_client = switchboard.http()
    answer = await http_client.post(curls[0][0], json=curls[0][1],
                                    headers=switchboard.api_headers(key.group(1)))
    assert answer.status_code == 201
    shown = json.loads(re.search(r'(\{"type": "notification:new".*\})\n', text).group(1))  # type: ignore[union-attr]
    got = await alice.expect("notification:new")
    assert {k: v for k, v in got.items() if k != "createdAt"} == \
        {k: v for k, v in shown["data"].items() if k != "createdAt"}
    answer = await http_client.post(curls[1][0], json=curls[1][1],
                                    headers=switchboard.api_headers(key.group(1)))
    assert answer.status_code == 202 and (await answer.get_json()) == {"published": 1}
    assert await alice.expect(curls[1][1]["event"]) == curls[1][1]["data"]


def test_every_emit_example_publishes_a_real_event_of_a_plugin() -> None:
    outgoing = {spec.name for spec in first_party_events() if spec.direction == "out"}
    pages = [README, (DOCS / "http-api.md").read_text()]
    examples = [json.loads(line) for page in pages
                for line in re.findall(r'^(\{"event": .*\})$', page, re.MULTILINE)]
    examples += [body for page in pages for path, body in _curls(page) if path == "/api/v1/emit"]
    assert len(examples) >= 4
    for example in examples:
        assert example["event"] in outgoing, \
            f"emit example {example['event']!r}: no plugin sends it"
