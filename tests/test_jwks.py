"""Tokens of an identity provider, verified with the keys of its JWKS URL,
served by a real HTTP server: key ids, rotation, the provider being down."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import trio
from backends import Backend, backend_fixture  # noqa: F401  (the backend fixture)
from cryptography.hazmat.primitives.asymmetric import rsa
from switchboard.core.auth import AuthError, JwksKeys, TokenVerifier
from switchboard.core.config import AuthConfig, Config
from switchboard.testing import Harness, make_config
from trio_websocket import ConnectionRejected, open_websocket_url

KEYS = {name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for name in ("k1", "k2")}


def jwk_set(*kids: str) -> dict[str, Any]:
    keys = []
    for kid in kids:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(KEYS[kid].public_key(), as_dict=True)
        keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": keys}


def token(kid: str, user: str = "ann", **claims: Any) -> str:
    body = {"sub": user, "tenant_id": "t1", "role": "agent", "exp": int(time.time()) + 600,
            **claims}
    return jwt.encode(body, KEYS[kid], algorithm="RS256", headers={"kid": kid})


def verifier(backend: Backend, **options: Any) -> TokenVerifier:
    keys = JwksKeys(backend.url("/jwks"), **options)
    return TokenVerifier(AuthConfig(jwks_url=backend.url("/jwks"), algorithms=["RS256"]),
                         jwks=keys)


async def test_a_token_is_verified_with_the_key_of_its_kid(backend: Backend) -> None:
    backend.on("/jwks", lambda _: jwk_set("k1", "k2"))
    check = verifier(backend)
    assert (await check.verify_async(token("k1"))).user_id == "ann"
    assert (await check.verify_async(token("k2", "bob"))).user_id == "bob"
    assert len(backend.calls_to("/jwks")) == 1  # one fetch, kept


async def test_a_rotated_key_is_fetched_when_a_token_names_it(backend: Backend) -> None:
    backend.on("/jwks", lambda _: jwk_set("k1"))
    check = verifier(backend, refetch_after=0)
    assert (await check.verify_async(token("k1"))).user_id == "ann"
    backend.on("/jwks", lambda _: jwk_set("k2"))  # the provider rotates
    assert (await check.verify_async(token("k2"))).user_id == "ann"
    assert len(backend.calls_to("/jwks")) == 2


async def test_an_unknown_kid_does_not_fetch_again_within_the_refetch_time(
        backend: Backend) -> None:
    backend.on("/jwks", lambda _: jwk_set("k1"))
    check = verifier(backend, refetch_after=60)
    await check.verify_async(token("k1"))
    for _ in range(5):
        with pytest.raises(AuthError, match="no key 'k2'"):
            await check.verify_async(token("k2"))
    assert len(backend.calls_to("/jwks")) == 1


async def test_keys_already_known_keep_working_while_the_provider_is_down(
        backend: Backend) -> None:
    backend.on("/jwks", lambda _: jwk_set("k1"))
    check = verifier(backend, max_age=0)  # every token fetches the set again
    await check.verify_async(token("k1"))
    backend.on("/jwks", lambda _: (503, b"down for maintenance"))
    assert (await check.verify_async(token("k1"))).user_id == "ann"


async def test_while_the_set_is_fetched_again_a_known_key_verifies_without_waiting(
        backend: Backend) -> None:
    backend.on("/jwks", lambda _: jwk_set("k1"))
    check = verifier(backend, max_age=0, timeout=3600)  # due again at every token
    await check.verify_async(token("k1"))
    backend.hang = trio.Event()  # the provider is slow to answer the next fetch
    async with trio.open_nursery() as nursery:
        nursery.start_soon(check.verify_async, token("k1"))  # fetches the set again
        await backend.wait_calls("/jwks", 2)
        with trio.fail_after(30):  # (the provider answers only after this one)
            assert (await check.verify_async(token("k1", "bob"))).user_id == "bob"
        backend.hang.set()
    assert len(backend.calls_to("/jwks")) == 2


@pytest.mark.parametrize("failure", ["status", "garbage", "array", "text", "deep", "timeout"])
async def test_a_provider_that_cannot_give_its_keys_refuses_with_auth_unavailable(
        backend: Backend, failure: str) -> None:
    # (a JSON array or string raised AttributeError, a deep one RecursionError)
    answers = {"status": (500, b"oops"), "garbage": (200, b"{not json"),
               "array": (200, b"[]"), "text": (200, b'"keys"'),
               "deep": (200, b"[" * 5000 + b"]" * 5000)}
    if failure in answers:
        backend.on("/jwks", lambda _: answers[failure])
    else:
        backend.hang = trio.Event()  # accepts, never answers
    check = verifier(backend, timeout=0.3)
    with pytest.raises(AuthError) as info:
        await check.verify_async(token("k1"))
    assert (info.value.code, info.value.status) == ("auth_unavailable", 503)
    assert backend.url("/jwks") in info.value.message


async def test_a_token_without_kid_or_of_another_algorithm_is_refused(
        backend: Backend) -> None:
    backend.on("/jwks", lambda _: jwk_set("k1"))
    check = verifier(backend)
    no_kid = jwt.encode({"sub": "ann", "tenant_id": "t1"}, KEYS["k1"], algorithm="RS256")
    with pytest.raises(AuthError, match="kid"):
        await check.verify_async(no_kid)
    hs = jwt.encode({"sub": "ann", "tenant_id": "t1"}, "a-shared-secret-of-32-bytes-0123",
                    algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(AuthError, match="not allowed"):
        await check.verify_async(hs)


class TestOverTheWire:
    @pytest.fixture
    def switchboard_config(self, backend: Backend) -> Config:
        return make_config({"auth": {"secret": "", "jwks_url": backend.url("/jwks"),
                                     "algorithms": ["RS256"],
                                     # real time, on a machine that may be busy: the
                                     # provider's answer must not be cut short
                                     "jwks_timeout": 10.0}})

    async def test_a_browser_connects_with_a_provider_token(
            self, switchboard_live: Harness, backend: Backend) -> None:
        backend.on("/jwks", lambda _: jwk_set("k1"))
        async with open_websocket_url(switchboard_live.ws_url(token("k1"))) as ws:
            with trio.fail_after(10):
                assert '"user_id":"ann"' in await ws.get_message()

    async def test_the_provider_down_refuses_the_handshake_503_and_says_why(
            self, switchboard_live: Harness, backend: Backend) -> None:
        backend.on("/jwks", lambda _: (502, b"bad gateway"))
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(switchboard_live.ws_url(token("k1"))):
                pass
        assert info.value.status_code == 503
        assert b"auth_unavailable" in (info.value.body or b"")
