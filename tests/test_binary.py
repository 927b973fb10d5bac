"""The single-file executable (``contrib/build-binary``), run from a copy of that
file alone: no virtualenv, no Python on its path.

``.ci/run`` builds it and names it in ``TEST_SWITCHBOARD_BINARY``; without that
variable the tests use ``dist/switchboard`` of this checkout and fail, saying
how to build it, when it is not there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from switchboard.core.auth import TokenVerifier
from switchboard.core.config import AuthConfig
from trio_websocket import open_websocket_url

from tests.databases import database_url
from tests.test_cli import SECRET, STOP_TIMEOUT, install_plugin_files, start_server

ROOT = Path(__file__).resolve().parent.parent
VARIABLE = "TEST_SWITCHBOARD_BINARY"
#: A one-file executable unpacks itself (50 MB) before the interpreter starts.
START_TIMEOUT = 60.0


def built_binary() -> Path:
    named = os.environ.get(VARIABLE)
    path = Path(named) if named else ROOT / "dist" / "switchboard"
    if not path.is_file():
        how = f"{VARIABLE}={named} names no file" if named else f"{path} is not built"
        pytest.fail(f"{how}: build the single-file executable with contrib/build-binary",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the executable alone in an empty directory."""
    alone = tmp_path_factory.mktemp("binary") / "switchboard"
    shutil.copy2(built_binary(), alone)
    yield alone


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """No virtualenv, no PYTHON* variables, only the system's directories on PATH."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


def run(binary: Path, tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *argv], capture_output=True, text=True, cwd=tmp_path,
                          env=bare_env(tmp_path, **env), timeout=120, check=False)


def test_token_is_signed_with_the_configured_secret(binary: Path, tmp_path: Path) -> None:
    result = run(binary, tmp_path, "token", "--sub", "alice", "--tenant", "acme",
                 SWITCHBOARD_AUTH__SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    identity = TokenVerifier(AuthConfig(secret=SECRET)).verify(result.stdout.strip())
    assert (identity.user_id, identity.tenant_id, identity.role) == ("alice", "acme", "agent")


def test_check_config_accepts_a_good_file(binary: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[server]\nport = 9000\n[plugins.chat]\nenabled = false\n')
    result = run(binary, tmp_path, "check-config", str(good))
    assert (result.returncode, result.stdout.strip()) == (0, f"{good}: ok"), result.stderr


def test_first_party_plugins_come_with_it_and_plugins_beside_it_load(binary: Path,
                                                                      tmp_path: Path) -> None:
    install_plugin_files(tmp_path / "plugins")
    result = run(binary, tmp_path, "plugins",
                 SWITCHBOARD_PLUGIN_PATH=f'["{tmp_path / "plugins"}"]')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "chat (enabled, switchboard 0.1.0)" in lines
    assert "whatsapp (enabled, switchboard 0.1.0)" in lines
    assert "beside (enabled, beside-plugin 1.0)" in lines


async def test_serve_on_postgresql_answers_health_and_a_websocket_then_stops_on_sigterm(
        binary: Path, tmp_path: Path, nursery: trio.Nursery) -> None:
    """The database driver (psycopg and its compiled part) comes with it too."""
    with database_url("postgresql", tmp_path) as url:
        server = await start_server(tmp_path, nursery, executable=binary,
                                    base_env=bare_env(tmp_path), start_timeout=START_TIMEOUT,
                                    extra_env={"SWITCHBOARD_STORE__URL": url})
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url("/ready"))).json() == {"status": "ready"}
        # minted by the same file with the development secret its server made
        minted = await trio.run_process(
            [str(binary), "token", "--sub", "alice", "--tenant", "acme"], cwd=tmp_path,
            env=server.env, capture_stdout=True, capture_stderr=True, check=False)
        assert minted.returncode == 0, minted.stderr.decode()
        token = minted.stdout.decode().strip()
        async with open_websocket_url(server.url(f"/ws?token={token}", "ws")) as ws:
            with trio.fail_after(5):
                session = await ws.get_message()
            assert '"session"' in session
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(STOP_TIMEOUT):
            assert await server.process.wait() == 0, server.output()
