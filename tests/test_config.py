"""Configuration: TOML file, ``SWITCHBOARD_*`` overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from switchboard.core.config import Config, ConfigError, load_config
from switchboard.core.pluginmanager import Plugins

GOOD_KEY = "0123456789abcdef-key"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switchboard.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), environ or {})


def error_of(tmp_path: Path | None, text: str | None = None,
             environ: dict[str, str] | None = None) -> ConfigError:
    path = write(tmp_path, text) if tmp_path is not None and text is not None else None
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    return info.value


def plugins_error_of(tmp_path: Path, text: str) -> ConfigError:
    config = load(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Plugins(config)
    return info.value


# -- reading -----------------------------------------------------------------


def test_defaults_work_without_a_file() -> None:
    config = load_config(None, {})
    assert config.mode == "development"
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.ws_path == "/ws"
    assert config.heartbeat.interval == 25.0
    assert config.api_keys == []


def test_toml_file_is_read(tmp_path: Path) -> None:
    config = load(tmp_path, f"""
mode = "production"
data_dir = "/var/lib/switchboard"

[server]
port = 9001
allowed_origins = ["https://app.example.com"]

[auth]
secret = "a-long-production-secret"
tenant_claim = "org"

[[api_keys]]
key = "{GOOD_KEY}"
tenant = "acme"

[limits.events."typing:start"]
rate = 2.0
burst = 4
""")
    assert config.mode == "production"
    assert config.data_dir == "/var/lib/switchboard"
    assert config.server.port == 9001
    assert config.server.allowed_origins == ["https://app.example.com"]
    assert config.auth.secret == "a-long-production-secret"
    assert config.auth.tenant_claim == "org"
    assert config.api_keys[0].key == GOOD_KEY
    assert config.api_keys[0].tenant == "acme"
    assert config.limits.events["typing:start"].burst == 4.0


def test_env_overrides_nest_with_double_underscore_and_parse_toml_values(
        tmp_path: Path) -> None:
    config = load(tmp_path, "[server]\nport = 9001\n", {
        "SWITCHBOARD_SERVER__PORT": "9002",
        "SWITCHBOARD_SERVER__ALLOWED_ORIGINS": '["https://a.example", "https://b.example"]',
        "SWITCHBOARD_HEARTBEAT__INTERVAL": "5",
        "SWITCHBOARD_PLUGINS__PRESENCE__ENABLED": "false",
        "SWITCHBOARD_AUTH__SECRET": "plain words are strings",
        "SWITCHBOARD_DATA_DIR": "/srv/data",
    })
    assert config.server.port == 9002
    assert config.server.allowed_origins == ["https://a.example", "https://b.example"]
    assert config.heartbeat.interval == 5.0
    assert config.plugins["presence"]["enabled"] is False
    assert config.plugin_enabled("presence") is False
    assert config.auth.secret == "plain words are strings"
    assert config.data_dir == "/srv/data"


def test_env_override_keeps_the_other_keys_of_the_file_section(tmp_path: Path) -> None:
    config = load(tmp_path, '[server]\nport = 9001\nhost = "0.0.0.0"\n',
                  {"SWITCHBOARD_SERVER__PORT": "9002"})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9002)


def test_variables_of_other_programs_are_ignored() -> None:
    config = load_config(None, {"HOME": "/root", "SWITCHBOARDX": "1",
                                "SWITCHBOARD_CONFIG": "/etc/switchboard.toml"})
    assert config == load_config(None, {})


# -- unknown keys --------------------------------------------------------------


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    assert error_of(tmp_path, "colour = 1").key == "colour"


def test_unknown_nested_key_is_named(tmp_path: Path) -> None:
    assert error_of(tmp_path, "[server]\nprot = 9000\n").key == "server.prot"


def test_unknown_key_in_a_list_item_is_named_with_its_index(tmp_path: Path) -> None:
    err = error_of(tmp_path, f'[[api_keys]]\nkey = "{GOOD_KEY}"\nfoo = 1\n')
    assert err.key == "api_keys.0.foo"


def test_unknown_key_from_an_env_var_is_named() -> None:
    err = error_of(None, None, {"SWITCHBOARD_SERVER__PROT": "9000"})
    assert err.key == "server.prot"
    assert "unknown" in str(err)


def test_a_problem_from_an_env_var_names_the_variable() -> None:
    err = error_of(None, None, {"SWITCHBOARD_SERVR__PORT": "1"})
    assert str(err) == "SWITCHBOARD_SERVR__PORT: unknown key servr"
    err = error_of(None, None, {"SWITCHBOARD_SERVER__PORT": "ninety"})
    assert str(err).startswith("SWITCHBOARD_SERVER__PORT: server.port: ")


def test_a_problem_found_after_loading_names_the_variable_too(tmp_path: Path) -> None:
    """Plugin settings are checked when the plugins load: their problems name
    the variable as well."""
    environ = {"SWITCHBOARD_PLUGINS__PRESENCE__GRACE_PERIOD": '"soon"'}
    with pytest.raises(ConfigError) as info:
        Plugins(load_config(None, environ))
    [problem] = info.value.naming_sources(environ).problems
    assert problem.source == "SWITCHBOARD_PLUGINS__PRESENCE__GRACE_PERIOD"
    assert str(problem).startswith(
        "SWITCHBOARD_PLUGINS__PRESENCE__GRACE_PERIOD: plugins.presence.grace_period: ")


def test_a_problem_of_the_file_names_no_variable(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[servr]\nport = 1\n", {"SWITCHBOARD_SERVER__PORT": "2"})
    assert str(err) == "servr: unknown key"


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    err = error_of(tmp_path, f"""
colour = 1
mode = "prod"
[server]
prot = 9000
host = 3
[heartbeat]
interval = -1
timeout = "soon"
[broker]
url = "kafka://x"
[[api_keys]]
key = "short"
[[api_keys]]
key = "{GOOD_KEY}"
colour = 2
""", {"SWITCHBOARD_HTTP__MAX_BODY": "0"})
    assert [(p.key, p.source) for p in err.problems] == [
        ("mode", ""), ("server.host", ""), ("server.prot", ""), ("heartbeat.timeout", ""),
        ("api_keys.1.colour", ""), ("colour", ""),
        # the checks of the sections whose types are right
        ("http.max_body", "SWITCHBOARD_HTTP__MAX_BODY"), ("broker.url", ""),
    ]
    assert str(err).splitlines() == [str(p) for p in err.problems]


def test_every_problem_of_the_plugin_sections_is_reported_at_once(tmp_path: Path) -> None:
    err = plugins_error_of(tmp_path, '[plugins.presence]\ngrace_period = "x"\nbogus = 1\n'
                                     '[plugins.typing]\nidle_timeout = "y"\n')
    assert {p.key for p in err.problems} == {
        "plugins.presence.grace_period", "plugins.presence.bogus", "plugins.typing.idle_timeout"}


# -- paths ----------------------------------------------------------------------


def test_a_relative_data_dir_of_a_file_is_relative_to_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "etc" / "switchboard.toml"
    path.write_text('data_dir = "state"\n[auth]\npublic_key_file = "keys/jwt.pem"\n'
                    'algorithms = ["RS256"]\n')
    for cwd in (tmp_path, tmp_path / "elsewhere"):
        monkeypatch.chdir(cwd)
        config = load_config(path, {})
        assert config.data_dir == str(tmp_path / "etc" / "state")
        assert config.auth.public_key_file == str(tmp_path / "etc" / "keys" / "jwt.pem")
        # a file that leaves data_dir out: its default, beside the file
        assert load_config(write(tmp_path, ""), {}).data_dir == str(tmp_path / "data")


def test_a_relative_data_dir_without_a_file_or_from_the_environment_is_from_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}).data_dir == str(tmp_path / "data")
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "switchboard.toml"
    path.write_text('data_dir = "state"\n')
    assert load_config(path, {"SWITCHBOARD_DATA_DIR": "var"}).data_dir == str(tmp_path / "var")


# -- bad values -----------------------------------------------------------------


def test_wrong_type_names_the_key_and_the_expected_type(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[server]\nport = "9000"\n')
    assert err.key == "server.port"
    assert "int" in err.message


def test_wrong_type_from_an_env_var_names_the_key() -> None:
    err = error_of(None, None, {"SWITCHBOARD_SERVER__PORT": "ninety"})
    assert err.key == "server.port"


def test_bool_is_not_accepted_as_a_number(tmp_path: Path) -> None:
    assert error_of(tmp_path, "[heartbeat]\ninterval = true\n").key == "heartbeat.interval"


def test_value_outside_a_literal_lists_the_allowed_ones(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'mode = "prod"\n')
    assert err.key == "mode"
    assert "'prod'" in err.message
    assert "production" in err.message


def test_production_mode_requires_a_secret(tmp_path: Path) -> None:
    assert error_of(tmp_path, 'mode = "production"\n').key == "auth.secret"


def test_production_mode_with_a_public_key_needs_no_secret(tmp_path: Path) -> None:
    config = load(tmp_path, 'mode = "production"\n[auth]\npublic_key_file = "/k.pem"\n'
                            'algorithms = ["RS256"]\n')
    assert config.auth.public_key_file == "/k.pem"


def test_short_api_key_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[api_keys]]\nkey = "0123456789"\n')
    assert err.key == "api_keys.0.key"
    assert "16" in err.message


def test_port_out_of_range_is_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path, "[server]\nport = 70000\n").key == "server.port"


def test_any_origin_is_allowed_by_default() -> None:
    assert load_config(None, {}).server.allowed_origins == ["*"]


def test_removed_socketio_cors_origins_points_to_server_allowed_origins(
        tmp_path: Path) -> None:
    err = error_of(tmp_path, '[socketio]\ncors_origins = ["*"]\n')
    assert err.key == "socketio.cors_origins"
    assert "server.allowed_origins" in err.message
    from_env = error_of(None, environ={"SWITCHBOARD_SOCKETIO__CORS_ORIGINS": "[]"})
    assert from_env.key == "socketio.cors_origins"


@pytest.mark.parametrize("entry", ["https://app.example.com/", "app.example.com"])
def test_allowed_origin_that_no_browser_can_send_is_refused(tmp_path: Path, entry: str) -> None:
    err = error_of(tmp_path, f'[server]\nallowed_origins = ["*", "{entry}"]\n')
    assert err.key == "server.allowed_origins.1"
    assert "scheme://host[:port]" in err.message


@pytest.mark.parametrize("value", ["0", "-1"])
def test_connect_timeout_must_be_positive(tmp_path: Path, value: str) -> None:
    err = error_of(tmp_path, f"[socketio]\nconnect_timeout = {value}\n")
    assert (err.key, err.message) == ("socketio.connect_timeout", "must be positive")


@pytest.mark.parametrize("value", ["0", "-3"])
def test_handshakes_in_flight_must_be_at_least_one(tmp_path: Path, value: str) -> None:
    err = error_of(tmp_path, f"[server]\nhandshakes_in_flight = {value}\n")
    assert (err.key, err.message) == ("server.handshakes_in_flight", "must be at least 1")


@pytest.mark.parametrize(("value", "said"), [
    ("nan", "not nan"), ("inf", "not inf"), ("-inf", "not -inf"), ("9" * 400, "not this large")])
def test_a_duration_that_is_no_finite_number_is_named(tmp_path: Path, value: str,
                                                      said: str) -> None:
    # (TOML has nan and inf; a NaN deadline stopped the server at its start)
    for text, key in ((f"[server]\ndrain_timeout = {value}\n", "server.drain_timeout"),
                      (f"[http]\nkeep_alive_timeout = {value}\n", "http.keep_alive_timeout")):
        err = error_of(tmp_path, text)
        assert (err.key, err.message) == (key, f"must be a finite number, {said}")
    err = error_of(None, environ={"SWITCHBOARD_HEARTBEAT__INTERVAL": value})
    assert "SWITCHBOARD_HEARTBEAT__INTERVAL" in str(err) and said in str(err)


def test_a_plugin_setting_that_is_no_finite_number_is_named(tmp_path: Path) -> None:
    err = plugins_error_of(tmp_path, "[plugins.desk]\noffline_grace = nan\n")
    assert (err.key, err.message) == ("plugins.desk.offline_grace",
                                      "must be a finite number, not nan")


@pytest.mark.parametrize(("text", "key", "message"), [
    ("[server]\nmax_payload = 0\n", "server.max_payload", "must be positive"),
    ("[server]\noutbox_max_bytes = -1\n", "server.outbox_max_bytes", "must be positive"),
    ("[store]\npool_size = 0\n", "store.pool_size", "must be positive"),
    ("[rooms]\nmax_rooms_per_connection = 0\n", "rooms.max_rooms_per_connection",
     "must be positive"),
    ("[limits]\nmax_violations = -1\n", "limits.max_violations", "must not be negative"),
    ("[server]\nwrite_linger = -0.5\n", "server.write_linger", "must not be negative"),
    ("[broker]\nhistory_size = 100000000000000000000\n", "broker.history_size",
     "must be at most 2**63-1")])
def test_sizes_counts_and_timeouts_out_of_range_are_named(
        tmp_path: Path, text: str, key: str, message: str) -> None:
    err = error_of(tmp_path, text)
    assert (err.key, err.message) == (key, message)


def test_zero_where_it_means_none_is_taken(tmp_path: Path) -> None:
    config = load(tmp_path, "[server]\ndrain_timeout = 0\n[limits]\nmax_violations = 0\n")
    assert (config.server.drain_timeout, config.limits.max_violations) == (0, 0)


@pytest.mark.parametrize(("plugin", "key", "value"), [
    ("chat", "max_batch", 0), ("chat", "history_page", 0), ("chat", "max_text_length", -1),
    ("chat", "batch_linger", -0.5), ("pipeline", "max_batch", 0), ("pipeline", "page_max", 0),
    ("typing", "idle_timeout", 0), ("presence", "grace_period", -1),
    ("presence", "update_interval", 0), ("guests", "token_ttl", 0),
    ("notifications", "replay_limit", -1), ("desk", "offline_grace", -1),
    ("desk", "default_capacity", 100_001)])
def test_a_plugins_count_or_duration_out_of_range_is_named(
        tmp_path: Path, plugin: str, key: str, value: float) -> None:
    # (a max_batch of 0 left the batch writer looping on a queue it never emptied)
    err = plugins_error_of(tmp_path, f"[plugins.{plugin}]\n{key} = {value}\n")
    assert err.key == f"plugins.{plugin}.{key}"


def test_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    err = error_of(tmp_path, "this is not toml\n")
    assert "not valid TOML" in str(err)


@pytest.mark.parametrize(("content", "said"), [
    (b"\xff\xfe[server]\n", "not UTF-8 text (byte 0)"),
    (b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply")])
def test_a_file_the_toml_reader_cannot_take_is_an_error_not_a_crash(
        tmp_path: Path, content: bytes, said: str) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, {})
    assert said in str(info.value)


def test_a_file_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)  # (ELOOP: refused even to root)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(loop, {})


def test_an_environment_value_nested_too_deeply_is_taken_as_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"SWITCHBOARD_SERVER__PORT": "[" * 3000})
    assert "SWITCHBOARD_SERVER__PORT" in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", {})


# -- plugin sections --------------------------------------------------------------


def test_unknown_plugin_section_is_named(tmp_path: Path) -> None:
    err = plugins_error_of(tmp_path, "[plugins.nope]\n")
    assert err.key == "plugins.nope"
    assert "presence" in err.message  # lists what is installed


def test_plugin_setting_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    err = plugins_error_of(tmp_path, '[plugins.presence]\ngrace_period = "x"\n')
    assert err.key == "plugins.presence.grace_period"


def test_unknown_plugin_setting_is_named(tmp_path: Path) -> None:
    err = plugins_error_of(tmp_path, "[plugins.presence]\nbogus = 1\n")
    assert err.key == "plugins.presence.bogus"


def test_plugin_enabled_must_be_a_bool(tmp_path: Path) -> None:
    assert error_of(tmp_path, '[plugins.presence]\nenabled = "no"\n').key == \
        "plugins.presence.enabled"


def test_plugin_settings_are_structured(tmp_path: Path) -> None:
    plugins = Plugins(load(tmp_path, "[plugins.presence]\ngrace_period = 3\n"))
    assert plugins.settings["presence"].grace_period == 3.0


def test_disabled_plugin_contributes_no_events(tmp_path: Path) -> None:
    enabled = Plugins(load(tmp_path, "")).incoming()
    disabled = Plugins(load(tmp_path, "[plugins.presence]\nenabled = false\n")).incoming()
    assert "presence:update" in enabled
    assert not any(name.startswith("presence:") for name in disabled)
    assert "room:join" in disabled


# -- the shipped example files ----------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "config"


@pytest.mark.parametrize("name", ["switchboard.toml", "production.example.toml",
                                  "seeds/nextcrm.toml", "seeds/syszap.toml",
                                  "seeds/pytake.toml"])
def test_shipped_example_configs_are_valid(name: str) -> None:
    config = load_config(EXAMPLES / name, {})
    Plugins(config)  # plugin sections and settings are checked too


def test_default_config_file_holds_exactly_the_defaults() -> None:
    from_file = load_config(EXAMPLES / "switchboard.toml", {})
    defaults = load_config(None, {})
    # the same relative data_dir, from the file's directory instead of the working one
    assert from_file.data_dir == str(EXAMPLES.resolve() / "data")
    assert attrs.evolve(from_file, plugins={}, data_dir=defaults.data_dir) == defaults
    assert Plugins(from_file).settings == Plugins(defaults).settings
    assert all(from_file.plugin_enabled(name) for name in from_file.plugins)


# -- a plugin's own checks name the setting ------------------------------------------


def _must_be_odd(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value % 2 == 0:
        raise ValueError("must be odd")  # says nothing of which field


@attrs.frozen
class _Limits:
    burst: int = attrs.field(default=1, validator=attrs.validators.ge(1))


@attrs.frozen
class _CheckedSettings:
    delay: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    name: str = attrs.field(default="bot", validator=attrs.validators.max_len(10))
    odd: int = attrs.field(default=1, validator=_must_be_odd)
    kind: str = attrs.field(default="a", validator=attrs.validators.in_(["a", "b"]))
    limits: _Limits = _Limits()
    windows: list[_Limits] = attrs.Factory(list)
    first: int = 0
    last: int = attrs.field(default=10)

    @last.validator
    def _after_first(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < self.first:
            raise ValueError("must not be before first")

    def __attrs_post_init__(self) -> None:
        if self.name == "forbidden":
            raise ConfigError("name", "is reserved")


class _CheckedPlugin:
    from switchboard.core import hookimpl

    @hookimpl
    def switchboard_config_class(self) -> type:
        return _CheckedSettings


@pytest.mark.parametrize(("section", "key"), [
    ("delay = -1", "plugins.checked.delay"),
    ('name = "far too long a name"', "plugins.checked.name"),
    ("odd = 2", "plugins.checked.odd"),
    ('kind = "c"', "plugins.checked.kind"),
    ("first = 5\nlast = 4", "plugins.checked.last"),
    ("limits = { burst = 0 }", "plugins.checked.limits.burst"),
    ("windows = [{ burst = 1 }, { burst = 0 }]", "plugins.checked.windows.1.burst"),
    ('name = "forbidden"', "plugins.checked.name"),
    ('delay = "soon"', "plugins.checked.delay"),
], ids=["gt", "max_len", "own_validator", "in_", "method_validator", "nested",
        "in_a_list", "post_init_config_error", "wrong_type"])
def test_a_failed_check_of_a_plugin_setting_names_the_setting(tmp_path: Path, section: str,
                                                              key: str) -> None:
    config = load(tmp_path, f"[plugins.checked]\n{section}\n")
    with pytest.raises(ConfigError) as info:
        Plugins(config, {"checked": _CheckedPlugin})
    assert info.value.key == key
    assert info.value.message  # and says what is wrong


def test_a_setting_that_passes_its_checks_is_structured(tmp_path: Path) -> None:
    config = load(tmp_path, "[plugins.checked]\ndelay = 5\nodd = 3\nfirst = 1\nlast = 2\n")
    settings = Plugins(config, {"checked": _CheckedPlugin}).settings["checked"]
    assert (settings.delay, settings.odd, settings.last) == (5.0, 3, 2)


@attrs.frozen
class _Order:
    quantity: int = attrs.field(validator=attrs.validators.gt(0))
    note: str = attrs.field(default="", validator=attrs.validators.max_len(5))


@pytest.mark.parametrize(("payload", "field"), [
    ({"quantity": 0}, "quantity"), ({"quantity": 1, "note": "too long"}, "note"),
])
def test_a_payload_refused_by_an_attrs_validator_names_the_field(payload: dict[str, int],
                                                                 field: str) -> None:
    from switchboard.core import ClientError, incoming

    async def handler(session: object, order: _Order) -> None: ...

    with pytest.raises(ClientError) as info:
        incoming("order:place", _Order, handler).structure(payload)
    assert (info.value.code, info.value.field) == ("invalid_payload", field)
