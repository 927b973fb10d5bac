"""Metrics of refusals and error answers, by code: a backend behind the proxy
plugin chooses the codes of its refusals, and a plugin those of its errors,
so the codes counted on their own are bounded and the rest are counted
together. Real clients through the real listener, a real HTTP backend."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from backends import Backend, backend_fixture  # noqa: F401  (the backend fixture)
from quart import Blueprint
from switchboard.core import ClientError, hookimpl
from switchboard.core.config import Config
from switchboard.core.http import read_json, require_api_key
from switchboard.core.metrics import MAX_CODE_LABELS, OTHER_CODES
from switchboard.testing import Harness, make_config
from trio_websocket import ConnectionRejected, open_websocket_url

EXTRA = 30


class RefusingPlugin:
    """A route that answers each request with the error code it is sent."""

    @hookimpl
    def switchboard_blueprints(self) -> Blueprint:
        bp = Blueprint("refusing", __name__)

        @bp.post("/api/v1/refusals")
        @require_api_key
        async def refuse() -> Any:
            body = await read_json()
            raise ClientError(str(body["code"]), "refused as asked")

        return bp


@pytest.fixture
def switchboard_config(backend: Backend) -> Config:
    return make_config({
        "plugins": {"proxy": {"connect_url": backend.url("/connect"), "timeout": 10.0}},
        "limits": {"connection": {"rate": 1000.0, "burst": 1000.0}}})


@pytest.fixture
def switchboard_plugins() -> dict[str, object]:
    return {"refusing": RefusingPlugin()}


def counted(metrics: str, name: str, label: str) -> dict[str, float]:
    return {code: float(value) for code, value in re.findall(
        rf'^{name}_total\{{{label}="([^"]*)"\}} (\S+)$', metrics, re.M)}


async def metrics_text(live: Harness) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(live.http_url("/metrics"))
    assert response.status_code == 200
    return response.text


async def test_a_backend_cannot_grow_the_metrics_with_the_codes_of_its_refusals(
        switchboard_live: Harness, backend: Backend) -> None:
    attempts = iter(range(MAX_CODE_LABELS + EXTRA + 1))

    def refuse(body: Any) -> dict[str, Any]:
        n = next(attempts)
        code = "expired_0" if n == MAX_CODE_LABELS + EXTRA else f"expired_{n}"
        return {"error": {"code": code, "message": "log in again", "status": 401}}

    backend.on("/connect", refuse)
    host, port = switchboard_live.server.addresses[0]
    for _ in range(MAX_CODE_LABELS + EXTRA + 1):
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(f"ws://{host}:{port}/ws"):
                pass
        assert info.value.status_code == 401
    rejects = counted(await metrics_text(switchboard_live),
                      "switchboard_handshake_rejects", "reason")
    own = {code for code in rejects if code.startswith("expired_")}
    assert len(own) == MAX_CODE_LABELS
    assert rejects["expired_0"] == 2  # a code counted on its own stays so
    assert rejects[OTHER_CODES] == EXTRA


async def test_a_plugin_cannot_grow_the_metrics_with_the_codes_of_its_errors(
        switchboard_live: Harness) -> None:
    async with httpx.AsyncClient(base_url=switchboard_live.http_url()) as http:
        for n in range(MAX_CODE_LABELS + EXTRA):
            response = await http.post("/api/v1/refusals", json={"code": f"no_{n}"},
                                       headers=switchboard_live.api_headers())
            assert response.status_code == 400
            assert response.json()["code"] == f"no_{n}"
        # a new code after the bound, whoever chose it, is counted with the rest
        response = await http.post("/api/v1/refusals", content=b"{not json",
                                   headers={**switchboard_live.api_headers(),
                                            "content-type": "application/json"})
        assert response.status_code == 400
    errors = counted(await metrics_text(switchboard_live),
                     "switchboard_client_errors", "code")
    own = {code for code in errors if code.startswith("no_")}
    assert len(own) == MAX_CODE_LABELS
    assert errors[OTHER_CODES] == EXTRA + 1
