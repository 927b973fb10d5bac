"""JWT verification: algorithms, keys, expiry, claim names, audience/issuer, minting."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from switchboard.core.auth import (
    AuthError,
    Identity,
    TokenVerifier,
    make_verifier,
    mint_token,
)
from switchboard.core.config import AuthConfig, Config, ConfigError
from switchboard.testing import make_config

SECRET = "unit-test-secret-0123456789abcdef"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "tenant_id": "acme", "role": "agent",
            "exp": int(time.time()) + 600, **extra}


def hs_verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(AuthConfig(secret=SECRET, **settings))


def hs_token(body: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(body, secret, algorithm="HS256")


def public_pem(key: PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- algorithms and keys ---------------------------------------------------------


def test_hs256_token_gives_the_identity() -> None:
    body = claims()
    identity = hs_verifier().verify(hs_token(body))
    assert identity == Identity("alice", "acme", "agent", float(body["exp"]))
    assert identity.claims["sub"] == "alice"


def test_rs256_token_is_verified_with_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(AuthConfig(public_key=public_pem(rsa_key), algorithms=["RS256"]))
    identity = verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))
    assert (identity.user_id, identity.tenant_id) == ("alice", "acme")


def test_es256_token_is_verified_with_a_public_key_file(
        ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    pem = tmp_path / "public.pem"
    pem.write_text(public_pem(ec_key))
    verifier = TokenVerifier(AuthConfig(public_key_file=str(pem), algorithms=["ES256"]))
    identity = verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))
    assert identity.user_id == "alice"


def test_make_verifier_prefers_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    config = make_config({"auth": {"secret": "", "public_key": public_pem(rsa_key),
                                   "algorithms": ["RS256"]}})
    verifier, generated = make_verifier(config)
    assert generated is False
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).user_id == "alice"


def test_token_signed_with_another_secret_is_rejected() -> None:
    with pytest.raises(AuthError, match="invalid token"):
        hs_verifier().verify(hs_token(claims(), "some-other-secret-0123456789abcd"))


def test_token_signed_with_another_private_key_is_rejected(
        rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(AuthConfig(public_key=public_pem(rsa_key), algorithms=["RS256"]))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        verifier.verify(jwt.encode(claims(), other, algorithm="RS256"))


def test_algorithm_not_configured_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = hs_verifier()  # HS256 only
    with pytest.raises(AuthError):
        verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_unsigned_token_is_rejected() -> None:
    with pytest.raises(AuthError):
        hs_verifier().verify(jwt.encode(claims(), "", algorithm="none"))


def test_garbage_token_is_rejected() -> None:
    with pytest.raises(AuthError, match="invalid token"):
        hs_verifier().verify("not-a-jwt")


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_rejected(token: str | None) -> None:
    with pytest.raises(AuthError, match="missing token"):
        hs_verifier().verify(token)


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError, match="no auth secret"):
        TokenVerifier(AuthConfig())


# -- expiry -----------------------------------------------------------------------


def test_expired_token_is_rejected() -> None:
    with pytest.raises(AuthError, match="token expired"):
        hs_verifier().verify(hs_token(claims(exp=int(time.time()) - 5)))


def test_leeway_accepts_a_token_that_just_expired() -> None:
    exp = int(time.time()) - 5
    identity = hs_verifier(leeway=60.0).verify(hs_token(claims(exp=exp)))
    assert identity.expires_at == exp + 60.0


def test_token_without_exp_never_expires() -> None:
    body = claims()
    del body["exp"]
    assert hs_verifier().verify(hs_token(body)).expires_at is None


# -- claims -------------------------------------------------------------------------


def test_claim_names_are_configurable() -> None:
    verifier = hs_verifier(user_claim="uid", tenant_claim="org", role_claim="kind")
    identity = verifier.verify(hs_token({"uid": 42, "org": "globex", "kind": "customer",
                                         "sub": "ignored", "tenant_id": "ignored"}))
    assert (identity.user_id, identity.tenant_id, identity.role) == ("42", "globex", "customer")


def test_token_without_the_user_claim_is_rejected() -> None:
    with pytest.raises(AuthError, match="'uid'"):
        hs_verifier(user_claim="uid").verify(hs_token(claims()))


@pytest.mark.parametrize(("claim", "value", "problem"), [
    ("sub", "u" * 201, "1 to 200 characters"),
    ("tenant_id", "acme\x00", "control characters"),
    ("role", "agent\n", "control characters"),
])
def test_claims_that_cannot_be_stored_are_rejected(claim: str, value: str,
                                                   problem: str) -> None:
    """Ids go into rooms and database rows: one the store could not keep is a bad token."""
    with pytest.raises(AuthError, match=f"'{claim}' .*{problem}"):
        hs_verifier().verify(hs_token(claims(**{claim: value})))


def test_token_without_a_tenant_is_rejected_when_there_is_no_default() -> None:
    body = claims()
    del body["tenant_id"]
    with pytest.raises(AuthError, match="'tenant_id'"):
        hs_verifier().verify(hs_token(body))


def test_default_tenant_is_given_to_tokens_without_one() -> None:
    body = claims()
    del body["tenant_id"]
    assert hs_verifier(default_tenant="main").verify(hs_token(body)).tenant_id == "main"


def test_default_tenant_does_not_override_the_claim() -> None:
    assert hs_verifier(default_tenant="main").verify(hs_token(claims())).tenant_id == "acme"


def test_missing_role_is_empty() -> None:
    body = claims()
    del body["role"]
    assert hs_verifier().verify(hs_token(body)).role == ""


# -- audience and issuer ----------------------------------------------------------------


def test_matching_audience_and_issuer_are_accepted() -> None:
    verifier = hs_verifier(audience="switchboard", issuer="https://id.example")
    token = hs_token(claims(aud="switchboard", iss="https://id.example"))
    assert verifier.verify(token).user_id == "alice"


@pytest.mark.parametrize("extra", [{"aud": "another-service"}, {}],
                         ids=["wrong", "missing"])
def test_audience_is_checked(extra: dict[str, str]) -> None:
    with pytest.raises(AuthError, match="invalid token"):
        hs_verifier(audience="switchboard").verify(hs_token(claims(**extra)))


@pytest.mark.parametrize("extra", [{"iss": "https://evil.example"}, {}],
                         ids=["wrong", "missing"])
def test_issuer_is_checked(extra: dict[str, str]) -> None:
    with pytest.raises(AuthError, match="invalid token"):
        hs_verifier(issuer="https://id.example").verify(hs_token(claims(**extra)))


# -- minting -------------------------------------------------------------------------------


def verify_minted(config: Config, token: str) -> Identity:
    verifier, _ = make_verifier(config)
    return verifier.verify(token)


def test_minted_token_is_accepted_by_the_servers_verifier() -> None:
    config = make_config()
    now = time.time()
    token = mint_token(config, sub="bob", tenant="acme", role="admin", ttl=120, now=now)
    identity = verify_minted(config, token)
    assert (identity.user_id, identity.tenant_id, identity.role) == ("bob", "acme", "admin")
    assert identity.expires_at == int(now + 120)
    assert identity.claims["iat"] == int(now)


def test_minted_token_uses_the_configured_claims_audience_and_issuer() -> None:
    config = make_config({"auth": {"user_claim": "uid", "tenant_claim": "org",
                                   "audience": "sb", "issuer": "me"}})
    token = mint_token(config, sub="bob", tenant="acme", role="agent", ttl=60,
                       now=time.time())
    identity = verify_minted(config, token)
    assert (identity.user_id, identity.tenant_id) == ("bob", "acme")
    assert (identity.claims["aud"], identity.claims["iss"]) == ("sb", "me")


def test_minted_token_without_ttl_has_no_expiry() -> None:
    config = make_config()
    token = mint_token(config, sub="bob", tenant="acme", role="agent", ttl=None,
                       now=time.time())
    assert "exp" not in verify_minted(config, token).claims


def test_development_tokens_use_a_secret_kept_in_the_data_dir(tmp_path: Path) -> None:
    config = make_config({"auth": {"secret": ""}, "data_dir": str(tmp_path)})
    token = mint_token(config, sub="bob", tenant="acme", role="agent", ttl=60,
                       now=time.time())
    secret = (tmp_path / "dev-secret").read_text().strip()
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "bob"
    verifier, generated = make_verifier(config)
    assert generated is True
    assert verifier.verify(token).user_id == "bob"


# -- tokens that must be refused, never crash the verifier ------------------------


def signed_by_hand(body: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made without pyjwt (which refuses a PEM key as a secret)."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(body).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def rs_verifier(key: PrivateKey, algorithms: list[str]) -> TokenVerifier:
    return TokenVerifier(AuthConfig(public_key=public_pem(key), algorithms=algorithms))


def test_an_hs256_token_signed_with_the_public_key_is_refused(
        rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = rs_verifier(rsa_key, ["RS256", "HS256"])
    # the classic algorithm confusion: the public key used as an HMAC secret
    token = signed_by_hand(claims(sub="eve"), public_pem(rsa_key).encode())
    with pytest.raises(AuthError, match="does not fit the configured key"):
        verifier.verify(token)


def test_a_token_of_another_key_family_is_refused(rsa_key: rsa.RSAPrivateKey,
                                                    ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = rs_verifier(rsa_key, ["RS256", "ES256"])
    with pytest.raises(AuthError, match="does not fit"):
        verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))


def test_a_token_of_another_curve_is_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = rs_verifier(ec_key, ["ES256", "ES384"])
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(jwt.encode(claims(), other, algorithm="ES384"))


@pytest.mark.parametrize("exp", [10**400, -1, "2000000000", True, 1e300, [2000000000]])
def test_a_validly_signed_token_with_an_impossible_exp_is_refused(exp: Any) -> None:
    token = jwt.api_jws.encode(
        json.dumps({"sub": "alice", "tenant_id": "acme", "exp": exp}).encode()
        if exp != 10**400 else
        b'{"sub":"alice","tenant_id":"acme","exp":' + str(exp).encode() + b"}",
        SECRET, algorithm="HS256")
    with pytest.raises(AuthError):
        hs_verifier().verify(token)


@pytest.mark.parametrize("claim, value", [
    ("tenant_id", ["acme", "globex"]),
    ("tenant_id", {"id": "acme"}),
    ("role", ["agent"]),
    ("role", 7),
])
def test_claims_of_the_wrong_type_are_refused(claim: str, value: Any) -> None:
    with pytest.raises(AuthError, match=f"claim '{claim}' must be a string"):
        hs_verifier().verify(hs_token(claims(**{claim: value})))


@pytest.mark.parametrize("value", [True, 1.5, ["alice"]])
def test_a_user_claim_of_the_wrong_type_is_refused(value: Any) -> None:
    verifier = hs_verifier(user_claim="user_id")
    with pytest.raises(AuthError, match="claim 'user_id' must be a string"):
        verifier.verify(hs_token(claims(user_id=value)))
    with pytest.raises(AuthError, match="invalid token"):  # pyjwt checks 'sub' itself
        hs_verifier().verify(hs_token(claims(sub=value)))


def test_integer_user_and_tenant_ids_are_taken_as_text() -> None:
    identity = hs_verifier(user_claim="user_id").verify(hs_token(claims(user_id=42,
                                                                         tenant_id=7)))
    assert (identity.user_id, identity.tenant_id) == ("42", "7")


def test_exp_is_required_in_production_mode_unless_configured_otherwise() -> None:
    body = claims()
    del body["exp"]
    production = make_config({"mode": "production"})
    verifier, _ = make_verifier(production)
    with pytest.raises(AuthError, match="exp"):
        verifier.verify(hs_token(body, secret=production.auth.secret))
    relaxed = make_config({"mode": "production", "auth": {"require_exp": False}})
    assert make_verifier(relaxed)[0].verify(
        hs_token(body, secret=relaxed.auth.secret)).expires_at is None
    strict = make_config({"auth": {"require_exp": True}})
    with pytest.raises(AuthError, match="exp"):
        make_verifier(strict)[0].verify(hs_token(body, secret=strict.auth.secret))


def test_a_public_key_that_is_not_pem_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        TokenVerifier(AuthConfig(public_key="not a key", algorithms=["RS256"]))
    assert info.value.key == "auth.public_key"


# -- verified tokens remembered ---------------------------------------------------


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = hs_verifier()
    now = time.time()
    token = hs_token(claims(exp=int(now) + 60))
    first = verifier.verify(token)
    assert verifier.verify(token) == first  # (from the verified tokens)
    monkeypatch.setattr("switchboard.core.auth.time.time", lambda: now + 61)
    with pytest.raises(AuthError, match="token expired"):
        verifier.verify(token)


def test_a_refused_token_is_refused_again_and_a_good_one_still_accepted() -> None:
    verifier = hs_verifier()
    bad = hs_token(claims(), secret="another-secret-0123456789abcdef!")
    for _ in range(2):
        with pytest.raises(AuthError, match="invalid token"):
            verifier.verify(bad)
    assert verifier.verify(hs_token(claims())).user_id == "alice"


def test_remembered_tokens_are_bounded_and_the_least_recently_used_go_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("switchboard.core.auth.VERIFIED_TOKENS", 3)
    verifier = hs_verifier()
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr("switchboard.core.auth.jwt.decode", counting_decode)
    a, b, c, d = (hs_token(claims(sub=name)) for name in "abcd")
    for token in (a, b, c, a, d):  # a used again: b is now the least recently used
        verifier.verify(token)
    assert decoded == [a, b, c, d]
    assert verifier.verify(a).user_id == "a" and verifier.verify(c).user_id == "c"
    assert decoded == [a, b, c, d]  # still remembered
    assert verifier.verify(b).user_id == "b"
    assert decoded == [a, b, c, d, b]  # forgotten, decoded and checked again


def test_users_of_a_tenant_share_its_name_and_their_role() -> None:
    verifier = hs_verifier()
    # (built at run time, so the strings in the tokens are not the constants')
    tenant, role = "".join(["ac", "me"]), "".join(["ag", "ent"])
    one, two = (verifier.verify(hs_token(claims(sub=name, tenant_id=tenant, role=role)))
                for name in ("alice", "bob"))
    assert one.tenant_id is two.tenant_id and one.role is two.role
    assert one.claims["tenant_id"] is two.tenant_id and two.claims["role"] is one.role


@pytest.mark.parametrize("token", ["\ud800", "eyJhbGciOiJIUzI1NiJ9.\udfff.x", "a\x00b"])
def test_a_token_that_is_not_text_utf8_can_carry_is_refused_as_invalid(token: str) -> None:
    with pytest.raises(AuthError, match="invalid token"):
        hs_verifier().verify(token)
