"""The ``switchboard`` command: check-config, token, plugins and serve."""

from __future__ import annotations

import os
import signal
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
from switchboard.core.cli import main, serve
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


def test_token_without_a_secret_creates_and_reuses_a_development_secret(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(data_dir))
    _, first, _ = run_main(capsys, "token", "--sub", "alice", "--tenant", "acme")
    secret = (data_dir / "dev-secret").read_text().strip()
    _, second, _ = run_main(capsys, "token", "--sub", "bob", "--tenant", "acme")
    assert (data_dir / "dev-secret").read_text().strip() == secret
    verifier = TokenVerifier(AuthConfig(secret=secret))
    assert verifier.verify(first.strip()).user_id == "alice"
    assert verifier.verify(second.strip()).user_id == "bob"


def test_token_uses_the_data_dir_of_the_config_file(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    data_dir = tmp_path / "from-file"
    path = write_config(tmp_path, f'data_dir = "{data_dir}"\n')
    code, out, _ = run_main(capsys, "token", "--config", str(path), "--sub", "alice",
                            "--tenant", "acme")
    assert code == 0
    verifier = TokenVerifier(AuthConfig(secret=development_secret(data_dir)))
    assert verifier.verify(out.strip()).user_id == "alice"


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

    async def wait_healthy(self) -> None:
        """Poll ``/health`` until the process answers (it is a real external process)."""
        async with httpx.AsyncClient(timeout=60) as http:
            with trio.fail_after(START_TIMEOUT):
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


async def start_server(tmp_path: Path, nursery: trio.Nursery) -> ServerProcess:
    port = free_port()
    log = tmp_path / "serve.log"
    env = child_env(SWITCHBOARD_DATA_DIR=str(tmp_path / "data"))
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [str(SCRIPT), "serve", "--port", str(port)], env=env,
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
    await server.wait_healthy()
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
