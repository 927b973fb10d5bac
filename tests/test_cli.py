"""The ``switchboard`` command: check-config, token, plugins and serve."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from switchboard.core import App, hookimpl
from switchboard.core.auth import TokenVerifier, development_secret, mint_token
from switchboard.core.cli import build_parser, main, serve
from switchboard.core.config import AuthConfig, load_config
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.ports import free_port

SCRIPT = Path(sys.executable).parent / "switchboard"
SECRET = "cli-test-secret-0123456789abcdef"
#: Time a real server process gets to start answering, and to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No ``SWITCHBOARD_*`` variables from the outside; relative paths land in tmp_path."""
    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(extra)
    return env


def write_config(tmp_path: Path, text: str, name: str = "switchboard.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- check-config -----------------------------------------------------------------


def test_check_config_accepts_a_good_file(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server]\nport = 9000\n[plugins.presence]\ngrace_period = 5\n")
    code, out, _ = run_main(capsys, "check-config", str(path))
    assert code == 0
    assert "ok" in out


def test_check_config_names_the_bad_key_and_exits_2(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nport = "eighty"\n')
    code, out, err = run_main(capsys, "check-config", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith("config error: server.port: ")
    assert "int" in err


def test_check_config_checks_plugin_settings(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    path = write_config(tmp_path, '[plugins.presence]\ngrace_period = "soon"\n')
    code, _, err = run_main(capsys, "check-config", str(path))
    assert code == 2
    assert "plugins.presence.grace_period" in err


def test_check_config_refuses_a_missing_file(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "check-config", str(tmp_path / "absent.toml"))
    assert code == 2
    assert "not found" in err


async def test_console_script_checks_a_config_file(tmp_path: Path) -> None:
    good = write_config(tmp_path, "[server]\nport = 9000\n", "good.toml")
    bad = write_config(tmp_path, "[server]\nprot = 9000\n", "bad.toml")
    ok = await trio.run_process([str(SCRIPT), "check-config", str(good)], check=False,
                                capture_stdout=True, capture_stderr=True, env=child_env())
    assert ok.returncode == 0, ok.stderr
    failed = await trio.run_process([str(SCRIPT), "check-config", str(bad)], check=False,
                                    capture_stdout=True, capture_stderr=True,
                                    env=child_env())
    assert failed.returncode == 2
    assert b"config error: server.prot: unknown key" in failed.stderr


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["token", "--tenant", "acme"])  # --sub is required
    assert info.value.code == 2
    assert "--sub" in capsys.readouterr().err


async def test_console_script_lists_every_problem_naming_env_variables(tmp_path: Path) -> None:
    bad = write_config(tmp_path, '[server]\nprot = 9000\n[heartbeat]\ninterval = -1\n')
    result = await trio.run_process(
        [str(SCRIPT), "check-config", str(bad)], check=False, capture_stdout=True,
        capture_stderr=True, env=child_env(SWITCHBOARD_SERVR__PORT="1"))
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "config error: server.prot: unknown key",
        "config error: SWITCHBOARD_SERVR__PORT: unknown key servr",
        "config error: heartbeat.interval: must be positive",
    ]


def test_check_config_lists_the_problems_of_the_plugin_sections_with_the_others(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nprot = 1\n[plugins.presence]\n'
                                  'grace_period = "soon"\n')
    code, _, err = run_main(capsys, "check-config", str(path))
    assert code == 2
    assert [line.split(":")[1].strip() for line in err.splitlines()] == [
        "server.prot", "plugins.presence.grace_period"]


def test_check_config_refuses_a_public_key_file_it_cannot_read(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "garbled.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n")
    for name, why in (("absent.pem", "cannot read"), ("garbled.pem", "is not a PEM")):
        path = write_config(tmp_path, f'[auth]\npublic_key_file = "{name}"\n'
                                      'algorithms = ["RS256"]\n')
        code, _, err = run_main(capsys, "check-config", str(path))
        assert code == 2
        assert err.startswith("config error: auth.public_key_file: ")
        assert str(tmp_path / name) in err
        assert why in err
        assert len(err.splitlines()) == 1


def test_check_config_warns_about_placeholder_secrets_and_exits_0(
        capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "production.example.toml"
    code, out, err = run_main(capsys, "check-config", str(example))
    assert code == 0
    assert out.strip() == f"{example}: ok, 3 warning(s)"
    assert err.splitlines() == [
        "warning: auth.secret looks like a placeholder: set a random secret "
        "(switchboard genconfig writes one)",
        "warning: api_keys.0.key (backend) looks like a placeholder: set a random key",
        "warning: server.allowed_origins holds the placeholder https://app.example.com: "
        "list your frontends' origins",
    ]


def test_check_config_warns_about_a_weak_secret_and_development_mode_on_every_address(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nhost = "0.0.0.0"\n[auth]\nsecret = "k3y"\n'
                                  '[plugins.guests]\nsecret = "replace-me-0123456789"\n')
    code, _, err = run_main(capsys, "check-config", str(path))
    assert code == 0
    warnings = err.splitlines()
    assert "warning: auth.secret is weak: 3 characters, use at least 32 random ones" \
        in warnings
    assert any(w.startswith("warning: development mode listening on 0.0.0.0") for w in warnings)
    assert any(w.startswith("warning: plugins.guests.secret looks like a placeholder")
               for w in warnings)
    assert len(warnings) == 3


def test_genconfig_writes_a_production_config_with_new_secrets(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_main(capsys, "genconfig", "prod.toml")
    assert code == 0
    assert out.startswith("wrote prod.toml: ")
    path = tmp_path / "prod.toml"
    assert path.stat().st_mode & 0o777 == 0o600  # it holds secrets
    config = load_config(path, {})
    assert config.mode == "production"
    assert len(config.auth.secret) >= 32
    [key] = config.api_keys
    assert (len(key.key) >= 32, key.tenant) == (True, "*")
    assert config.data_dir == str(tmp_path / "data")
    # behind a proxy on the same machine, as its comments say
    assert (config.server.host, config.server.trusted_proxies) == ("127.0.0.1", ["127.0.0.1"])
    # a second file has other secrets
    assert main(["genconfig", str(tmp_path / "other.toml")]) == 0
    other = load_config(tmp_path / "other.toml", {})
    assert (other.auth.secret, other.api_keys[0].key) != (config.auth.secret, key.key)


def test_genconfig_passes_check_config_with_only_the_origin_to_set(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["genconfig"]) == 0  # switchboard.toml in the working directory
    capsys.readouterr()
    code, _, err = run_main(capsys, "check-config", "switchboard.toml")
    assert code == 0
    assert err.splitlines() == [
        "warning: server.allowed_origins holds the placeholder https://app.example.com: "
        "list your frontends' origins"]
    config = load_config(tmp_path / "switchboard.toml", {})
    token = run_main(capsys, "token", "--config", "switchboard.toml", "--sub", "alice",
                     "--tenant", "acme")[1]
    verifier = TokenVerifier(config.auth, require_exp=True)
    assert verifier.verify(token.strip()).user_id == "alice"


def test_genconfig_writes_a_console_section_that_is_off_with_its_secrets_ready(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_main(capsys, "genconfig", "prod.toml")[0] == 0
    text = (tmp_path / "prod.toml").read_text()
    config = load_config(tmp_path / "prod.toml", {})
    assert config.admin.path == ""  # off until the deployer turns it on
    assert len(config.admin.password) >= 12 and len(config.admin.secret) >= 32
    assert config.admin.secure_cookie
    # turned on with only its path set, it passes check-config with no console warning
    (tmp_path / "on.toml").write_text(text.replace('path = ""', 'path = "/admin"'))
    code, _, err = run_main(capsys, "check-config", "on.toml")
    assert code == 0
    assert not [line for line in err.splitlines() if "admin." in line]
    assert load_config(tmp_path / "on.toml", {}).admin.path == "/admin"


def test_check_config_warns_about_a_console_unfit_for_production(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    secret = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
    path = write_config(tmp_path, f'mode = "production"\n[server]\nhost = "0.0.0.0"\n'
                                  f'allowed_origins = ["https://crm.acme.test"]\n'
                                  f'[auth]\nsecret = "{secret}"\n'
                                  '[admin]\npath = "/admin"\npassword = "change-me-please"\n')
    code, _, err = run_main(capsys, "check-config", str(path))
    assert code == 0
    warnings = [w for w in err.splitlines() if "admin." in w]
    assert [w.split(" ")[1] for w in warnings] == [
        "admin.password", "admin.secret", "admin.secure_cookie"]
    assert "console logins end with a restart and work on one node only" in warnings[1]
    assert "0.0.0.0" in warnings[2]
    # the same console off: nothing to say about it
    path.write_text(path.read_text().replace('path = "/admin"', 'path = ""'))
    assert not [w for w in run_main(capsys, "check-config", str(path))[2].splitlines()
                if "admin." in w]


def test_genconfig_does_not_overwrite_a_file_without_force(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, "# mine\n")
    code, out, err = run_main(capsys, "genconfig", str(path))
    assert (code, out) == (2, "")
    assert f"{path} exists" in err and "--force" in err
    assert path.read_text() == "# mine\n"
    assert run_main(capsys, "genconfig", str(path), "--force")[0] == 0
    assert load_config(path, {}).mode == "production"


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_serve_refuses_a_port_out_of_range(capsys: pytest.CaptureFixture[str],
                                           port: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", port])
    assert info.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert commands.help
    assert set(commands.choices) >= {"serve", "token", "plugins", "check-config", "genconfig"}
    missing = []
    for name, command in [("", parser), *commands.choices.items()]:
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    missing += [f"{name} (the command)" for name in commands.choices if not helps.get(name)]
    assert missing == []


# -- token ---------------------------------------------------------------------------


def test_token_prints_a_jwt_the_server_accepts(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    path = write_config(tmp_path, f'[auth]\nsecret = "{SECRET}"\n')
    before = time.time()
    code, out, _ = run_main(capsys, "token", "--config", str(path), "--sub", "alice",
                            "--tenant", "acme", "--role", "admin", "--ttl", "120")
    after = time.time()
    assert code == 0
    identity = TokenVerifier(AuthConfig(secret=SECRET)).verify(out.strip())
    assert (identity.user_id, identity.tenant_id, identity.role) == ("alice", "acme", "admin")
    assert identity.expires_at is not None
    assert int(before + 120) <= identity.expires_at <= int(after + 120)


def test_token_role_defaults_to_agent(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_AUTH__SECRET", SECRET)
    code, out, _ = run_main(capsys, "token", "--sub", "alice", "--tenant", "acme")
    assert code == 0
    assert TokenVerifier(AuthConfig(secret=SECRET)).verify(out.strip()).role == "agent"


def test_token_signs_with_the_development_secret_the_server_made(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(data_dir))
    secret = development_secret(data_dir)  # what `serve` does at start
    _, first, _ = run_main(capsys, "token", "--sub", "alice", "--tenant", "acme")
    _, second, _ = run_main(capsys, "token", "--sub", "bob", "--tenant", "acme")
    assert (data_dir / "dev-secret").read_text().strip() == secret
    verifier = TokenVerifier(AuthConfig(secret=secret))
    assert verifier.verify(first.strip()).user_id == "alice"
    assert verifier.verify(second.strip()).user_id == "bob"


def test_token_without_a_development_secret_says_where_it_looked_and_makes_none(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A secret made by ``token`` would not be the server's: it refuses instead."""
    code, out, err = run_main(capsys, "token", "--sub", "alice", "--tenant", "acme")
    assert code == 2
    assert out == ""
    assert f"no development secret in {tmp_path / 'data' / 'dev-secret'}" in err
    assert "switchboard serve" in err
    assert not (tmp_path / "data").exists()


def test_token_uses_the_data_dir_of_the_config_file(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    data_dir = tmp_path / "from-file"
    path = write_config(tmp_path, f'data_dir = "{data_dir}"\n')
    secret = development_secret(data_dir)
    code, out, _ = run_main(capsys, "token", "--config", str(path), "--sub", "alice",
                            "--tenant", "acme")
    assert code == 0
    verifier = TokenVerifier(AuthConfig(secret=secret))
    assert verifier.verify(out.strip()).user_id == "alice"


@pytest.mark.parametrize("ttl", ["0", "-5", "nan", "inf", "soon"])
def test_token_ttl_must_be_a_positive_number(capsys: pytest.CaptureFixture[str],
                                             ttl: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["token", "--sub", "alice", "--tenant", "acme", "--ttl", ttl])
    assert info.value.code == 2
    assert "--ttl" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [
    ("--sub", "a\x01b"), ("--sub", "x" * 201), ("--tenant", ""), ("--role", "ag\nent")])
def test_token_claims_the_server_would_refuse_are_refused_here(
        capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    argv = {"--sub": "alice", "--tenant": "acme", "--role": "agent", option: value}
    with pytest.raises(SystemExit) as info:
        main(["token", *(part for pair in argv.items() for part in pair)])
    assert info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_token_in_production_with_only_a_public_key_is_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, 'mode = "production"\n[auth]\npublic_key = "PEM"\n'
                                  'algorithms = ["RS256"]\n')
    code, out, err = run_main(capsys, "token", "--config", str(path), "--sub", "alice",
                              "--tenant", "acme")
    assert code == 2
    assert out == ""
    assert "auth.secret" in err


def test_config_file_can_come_from_the_environment(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    path = write_config(tmp_path, f'[auth]\nsecret = "{SECRET}"\nuser_claim = "uid"\n')
    monkeypatch.setenv("SWITCHBOARD_CONFIG", str(path))
    code, out, _ = run_main(capsys, "token", "--sub", "alice", "--tenant", "acme")
    assert code == 0
    verifier = TokenVerifier(AuthConfig(secret=SECRET, user_claim="uid"))
    assert verifier.verify(out.strip()).user_id == "alice"


def test_a_config_file_named_by_the_environment_that_is_missing_names_the_variable(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("SWITCHBOARD_CONFIG", str(tmp_path / "absent.toml"))
    code, _, err = run_main(capsys, "token", "--sub", "alice", "--tenant", "acme")
    assert code == 2
    assert err == (f"config error: SWITCHBOARD_CONFIG: config file not found: "
                   f"{tmp_path / 'absent.toml'}\n")


# -- plugins ---------------------------------------------------------------------------


def test_plugins_lists_presence_and_rooms_with_their_events(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "plugins")
    assert code == 0
    lines = out.splitlines()
    headers = [line for line in lines if not line.startswith(" ")]
    assert {"presence", "rooms"} <= {h.split()[0] for h in headers}
    assert all("(enabled" in h for h in headers)
    events = {line.split()[1] for line in lines if line.startswith(" ")}
    assert {"presence:update", "presence:list", "user:online", "user:offline",
            "room:join", "room:leave"} <= events
    assert any(line.strip().startswith("<- room:join [RoomRequest]") for line in lines)
    assert any(line.strip().startswith("-> user:online") for line in lines)
    assert "  service chat [Chat]" in lines


def test_plugins_shows_a_disabled_plugin(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = write_config(tmp_path, "[plugins.presence]\nenabled = false\n")
    code, out, _ = run_main(capsys, "plugins", "--config", str(path))
    assert code == 0
    assert "presence (disabled" in out
    assert "presence:update" not in out
    assert "room:join" in out


# -- serve -----------------------------------------------------------------------------


def test_serve_with_a_bad_config_exits_2(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = write_config(tmp_path, '[heartbeat]\ninterval = "often"\n')
    code, _, err = run_main(capsys, "serve", "--config", str(path))
    assert code == 2
    assert "heartbeat.interval" in err


async def test_serve_without_its_database_says_so_in_one_line_and_exits_1(
        tmp_path: Path) -> None:
    """A database that does not answer at start is an operator's problem, not a
    bug: one clear line, no traceback, exit status 1."""
    port = free_port()  # nothing listens there
    result = await trio.run_process(
        [str(SCRIPT), "serve", "--port", "0"], check=False, capture_stdout=True,
        capture_stderr=True, env=child_env(
            SWITCHBOARD_STORE__URL=f"postgresql://postgres@127.0.0.1:{port}/switchboard",
            SWITCHBOARD_DATA_DIR=str(tmp_path / "data")))
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "cannot start: connecting to the database failed" in err
    assert "Traceback" not in err


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exits_1(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(None, {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
                                    "SWITCHBOARD_SERVER__PORT": str(port)})
        assert serve(config) == 1
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == (
        f"cannot listen on 127.0.0.1:{port}: Address already in use (another process "
        "listens there: stop it, or choose another port with --port or server.port)")
    assert record.exc_info is None


@pytest.mark.parametrize("secret", ["", SECRET], ids=["development", "with-a-secret"])
def test_serve_with_a_data_dir_it_cannot_use_says_so_in_one_line_and_exits_1(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    """Development mode fails writing its secret there, otherwise SQLite fails
    opening its database: either way one line that names data_dir."""
    (tmp_path / "a-file").write_text("")
    config = load_config(None, {"SWITCHBOARD_DATA_DIR": str(tmp_path / "a-file" / "data"),
                                "SWITCHBOARD_SERVER__PORT": "0",
                                "SWITCHBOARD_AUTH__SECRET": f'"{secret}"'})
    assert serve(config) == 1
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    message = record.getMessage()
    assert message.startswith("cannot start: ")
    assert str(tmp_path / "a-file") in message
    assert message.endswith("(data_dir, or the path in store.url, must be a directory this "
                            "user can write)")
    assert record.exc_info is None


def test_serve_with_a_public_key_file_it_cannot_read_exits_2_naming_the_variable(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
               "SWITCHBOARD_SERVER__PORT": "0",
               "SWITCHBOARD_AUTH__PUBLIC_KEY_FILE": "jwt.pem",
               "SWITCHBOARD_AUTH__ALGORITHMS": '["RS256"]'}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert serve(load_config(None)) == 2
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == (
        "cannot start: config: SWITCHBOARD_AUTH__PUBLIC_KEY_FILE: auth.public_key_file: "
        f"cannot read {tmp_path / 'jwt.pem'}: No such file or directory")
    assert record.exc_info is None


class FailsToStart:
    @hookimpl
    def switchboard_startup(self, app: App) -> None:
        raise RuntimeError("the widget cache is gone")


def test_serve_with_a_plugin_that_fails_to_start_exits_1_naming_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(None, {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
                                "SWITCHBOARD_SERVER__PORT": "0"})
    assert serve(config, plugins={"failing": FailsToStart}) == 1
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "cannot start: RuntimeError: the widget cache is gone"
    assert record.exc_info is not None  # a bug: its traceback is kept for the developer


class ServerProcess:
    """``switchboard serve`` in a child process, its log in a file."""

    def __init__(self, process: trio.Process, port: int, log: Path,
                 env: Mapping[str, str]) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.env = env

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text()

    async def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``/health`` until the process answers (it is a real external process)."""
        async with httpx.AsyncClient(timeout=60) as http:
            with trio.fail_after(timeout):
                while True:
                    if self.process.returncode is not None:
                        raise AssertionError(
                            f"server exited with {self.process.returncode}:\n{self.output()}")
                    try:
                        response = await http.get(self.url("/health"), timeout=1.0)
                    except httpx.TransportError:
                        pass
                    else:
                        if response.status_code == 200:
                            return
                    await trio.sleep(0.05)

    async def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        with trio.fail_after(STOP_TIMEOUT):
            return await self.process.wait()


async def start_server(tmp_path: Path, nursery: trio.Nursery, host: str | None = None, *,
                       config: Path | None = None, cwd: Path | None = None,
                       executable: Path = SCRIPT, base_env: Mapping[str, str] | None = None,
                       start_timeout: float = START_TIMEOUT,
                       extra_env: Mapping[str, str] | None = None) -> ServerProcess:
    """``executable serve`` on a free port: with ``config``, run from ``cwd``;
    else on the defaults with its data in ``tmp_path``."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**(child_env() if base_env is None else base_env), **(extra_env or {})}
    if config is None:
        env.setdefault("SWITCHBOARD_DATA_DIR", str(tmp_path / "data"))
        options = []
    else:
        options = ["--config", str(config)]
    if host is not None:
        options += ["--host", host]
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [str(executable), "serve", "--port", str(port), *options], env=env, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    server = ServerProcess(process, port, log, env)

    async def reap() -> None:
        try:
            await trio.sleep_forever()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()

    nursery.start_soon(reap)
    await server.wait_healthy(start_timeout)
    return server


async def test_serve_answers_http_and_exits_0_on_sigterm(tmp_path: Path,
                                                         nursery: trio.Nursery) -> None:
    server = await start_server(tmp_path, nursery)
    async with httpx.AsyncClient(timeout=60) as http:
        ready = await http.get(server.url("/ready"))
    assert ready.json() == {"status": "ready"}
    assert (tmp_path / "data" / "dev-secret").exists()
    assert await server.stop(signal.SIGTERM) == 0, server.output()
    assert "received SIGTERM" in server.output()


async def test_after_a_stop_serve_leaves_its_garbage_to_the_process_exit(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """What the stopped connections left to the cyclic collector is frozen
    when ``serve`` returns (the process exits next), not collected object by
    object while the interpreter finalizes: a collection then finds nothing."""
    driver = tmp_path / "serve-then-collect"
    driver.write_text(f"#!{sys.executable}\n"
                      "import gc, sys\n"
                      "from switchboard.core.cli import main\n"
                      "code = main(sys.argv[1:])\n"
                      "print('left to the collector:', gc.collect(), flush=True)\n"
                      "sys.exit(code)\n")
    driver.chmod(0o755)
    server = await start_server(tmp_path, nursery, executable=driver)
    config = load_config(None, server.env)
    for user in ("alice", "bob"):
        token = mint_token(config, sub=user, tenant="acme", role="agent", ttl=600,
                           now=time.time())
        async with open_websocket_url(server.url(f"/ws?token={token}", "ws")) as ws:
            with trio.fail_after(5):
                await ws.get_message()
            await ws.send_message('{"type":"room:join","data":{"room":"lead:1"},"id":1}')
            with trio.fail_after(5):
                await ws.get_message()
    assert await server.stop(signal.SIGTERM) == 0, server.output()
    assert "left to the collector: 0" in server.output()


async def test_what_a_client_sends_never_starts_a_line_of_the_servers_log(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """A Socket.IO packet for a namespace of the client's making is logged; a
    newline or a terminal escape in it stays inside that record's line."""
    server = await start_server(tmp_path, nursery)
    config = load_config(None, server.env)
    token = mint_token(config, sub="alice", tenant="acme", role="agent", ttl=600,
                       now=time.time())
    forged = "2026-12-01 00:00:00 ERROR switchboard: forged"  # (no comma: it ends the name)
    async with open_websocket_url(server.url(
            f"/socket.io/?EIO=4&transport=websocket&token={token}", "ws")) as ws:
        with trio.fail_after(5):
            await ws.get_message()  # open
        await ws.send_message(f"42/x\n{forged}\x1b[2J,[\"e\"]")
        await ws.send_message("40")  # answered once the packet before it is logged
        with trio.fail_after(5):
            while not (await ws.get_message()).startswith("40"):
                pass
    assert await server.stop(signal.SIGTERM) == 0, server.output()
    lines = server.output().splitlines()
    assert [line for line in lines if "forged" in line] == [
        line for line in lines if "\\n" + forged + "\\x1b[2J" in line]
    assert len([line for line in lines if "forged" in line]) == 1
    assert not any(line.startswith(forged) or "\x1b" in line for line in lines)


async def send_unknown_events(server: ServerProcess, types: list[str]) -> None:
    """Connect to ``server`` as alice over the plain WebSocket, send an event
    of each of ``types`` (none a plugin handles), and wait for the last answer."""
    config = load_config(None, server.env)
    token = mint_token(config, sub="alice", tenant="acme", role="agent", ttl=600,
                       now=time.time())
    async with open_websocket_url(server.url(f"/ws?token={token}", "ws")) as ws:
        with trio.fail_after(5):
            await ws.get_message()  # the session
        for n, kind in enumerate(types, 1):
            await ws.send_message(json.dumps({"type": kind, "id": n}))
        with trio.fail_after(5):
            while json.loads(await ws.get_message()).get("id") != len(types):
                pass


async def test_what_a_client_repeats_is_logged_a_bounded_number_of_times(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """A client repeating a refused event: ``log.repeat_limit`` lines of that
    kind within ``log.repeat_window``, not one per event."""
    server = await start_server(tmp_path, nursery, extra_env={
        "SWITCHBOARD_LOG__REPEAT_LIMIT": "5", "SWITCHBOARD_LOG__REPEAT_WINDOW": "3600",
        "SWITCHBOARD_LIMITS__CONNECTION": "{ rate = 1000.0, burst = 1000.0 }"})
    await send_unknown_events(server, ["no:such:event"] * 40)
    assert await server.stop(signal.SIGTERM) == 0, server.output()
    refused = [line for line in server.output().splitlines() if "unknown_event" in line]
    assert len(refused) == 5, refused


async def test_a_json_log_is_one_json_object_per_line(tmp_path: Path,
                                                       nursery: trio.Nursery) -> None:
    """``log.format = "json"``: every line ``serve`` writes, from its start to
    its exit, is a JSON object; what a client sent stays inside one message."""
    server = await start_server(tmp_path, nursery,
                                extra_env={"SWITCHBOARD_LOG__FORMAT": "json"})
    await send_unknown_events(server, ["no:such\nevent"])
    assert await server.stop(signal.SIGTERM) == 0, server.output()
    entries = [json.loads(line) for line in server.output().splitlines()]
    assert any("received SIGTERM" in entry["message"] for entry in entries)
    refused = [entry for entry in entries if "unknown_event" in entry["message"]]
    assert len(refused) == 1 and repr("no:such\nevent") in refused[0]["message"]
    assert {entry["level"] for entry in entries} <= {"INFO", "WARNING"}


async def test_token_minted_elsewhere_with_the_same_config_is_accepted_by_serve(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """``serve`` started in one directory and ``token`` run in another agree on
    the development secret: both find it beside the config file."""
    (tmp_path / "site").mkdir()
    (tmp_path / "elsewhere").mkdir()
    config = write_config(tmp_path / "site", "[plugins.presence]\ngrace_period = 1\n")
    server = await start_server(tmp_path, nursery, config=config, cwd=tmp_path)
    minted = await trio.run_process(
        [str(SCRIPT), "token", "--config", "../site/switchboard.toml", "--sub", "alice",
         "--tenant", "acme"], capture_stdout=True, capture_stderr=True, env=child_env(),
        cwd=tmp_path / "elsewhere")
    assert (tmp_path / "site" / "data" / "dev-secret").exists()
    assert not (tmp_path / "elsewhere" / "data").exists()
    token = minted.stdout.decode().strip()
    async with open_websocket_url(server.url(f"/ws?token={token}", "ws")) as ws:
        with trio.fail_after(5):
            session = json.loads(await ws.get_message())
    assert (session["type"], session["data"]["user_id"]) == ("session", "alice")


async def test_serve_closes_websockets_with_1001_on_sigint(tmp_path: Path,
                                                           nursery: trio.Nursery) -> None:
    server = await start_server(tmp_path, nursery)
    config = load_config(None, server.env)
    token = mint_token(config, sub="alice", tenant="acme", role="agent", ttl=600,
                       now=time.time())
    close: Any = None
    async with open_websocket_url(server.url(f"/ws?token={token}", "ws")) as ws:
        with trio.fail_after(5):
            session = await ws.get_message()
        assert '"session"' in session
        server.process.send_signal(signal.SIGINT)
        with trio.fail_after(STOP_TIMEOUT), pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.get_message()
        close = info.value.reason
    assert close.code == 1001
    with trio.fail_after(STOP_TIMEOUT):
        assert await server.process.wait() == 0, server.output()


# -- development mode beyond loopback --------------------------------------------------


async def test_development_mode_refuses_to_listen_on_every_address_in_one_line(
        tmp_path: Path) -> None:
    """Without an auth secret the server signs with a generated secret: it does not
    start on 0.0.0.0 (as in a container) unless told to, and says how to fix it."""
    result = await trio.run_process(
        [str(SCRIPT), "serve", "--host", "0.0.0.0", "--port", "0"], check=False,
        capture_stdout=True, capture_stderr=True,
        env=child_env(SWITCHBOARD_DATA_DIR=str(tmp_path / "data")))
    err = result.stderr.decode()
    assert result.returncode == 2, err
    [line] = err.splitlines()
    assert "cannot start: config: server.host: development mode (no auth.secret)" in line
    assert "SWITCHBOARD_AUTH__SECRET" in line and "SWITCHBOARD_ALLOW_DEV_ON_ALL=true" in line
    assert not (tmp_path / "data" / "dev-secret").exists()


@pytest.mark.parametrize("env", [
    {"SWITCHBOARD_ALLOW_DEV_ON_ALL": "true"},
    {"SWITCHBOARD_AUTH__SECRET": SECRET},
])
async def test_every_address_is_served_with_a_secret_or_when_allowed(
        tmp_path: Path, nursery: trio.Nursery, env: dict[str, str]) -> None:
    server = await start_server(tmp_path, nursery, host="0.0.0.0", extra_env=env)
    assert await server.stop(signal.SIGTERM) == 0, server.output()


@pytest.mark.parametrize("host", ["::1", "localhost", "127.0.0.2"])
def test_development_mode_may_listen_on_any_loopback_address(host: str) -> None:
    from switchboard.core.server import check_exposure
    check_exposure(load_config(None, {"SWITCHBOARD_SERVER__HOST": host}))


# -- plugins beside the installation (plugin_path) -------------------------------------


def install_plugin_files(target: Path) -> None:
    """A third-party plugin as ``pip install --target DIR`` leaves it: its module
    and its distribution's metadata naming the entry point."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "beside_plugin.py").write_text(
        "from switchboard.core import hookimpl\n\n\n"
        "class BesidePlugin:\n"
        "    @hookimpl\n"
        "    def switchboard_startup(self, app):\n"
        "        pass\n")
    info = target / "beside_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beside-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[switchboard.plugins]\nbeside = beside_plugin:BesidePlugin\n")


async def test_plugins_in_a_plugin_path_directory_are_found(tmp_path: Path) -> None:
    install_plugin_files(tmp_path / "plugins")
    result = await trio.run_process(
        [str(SCRIPT), "plugins"], check=False, capture_stdout=True, capture_stderr=True,
        env=child_env(SWITCHBOARD_PLUGIN_PATH=f'["{tmp_path / "plugins"}"]'))
    assert result.returncode == 0, result.stderr.decode()
    assert "beside (enabled, beside-plugin 1.0)" in result.stdout.decode().splitlines()


def test_a_missing_plugin_path_directory_is_a_config_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_PLUGIN_PATH", f'["{tmp_path / "nowhere"}"]')
    code, _, err = run_main(capsys, "plugins")
    assert code == 2
    assert err.strip() == ("config error: SWITCHBOARD_PLUGIN_PATH: plugin_path.0: "
                           f"no such directory: {tmp_path / 'nowhere'}")
