from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from registry.auth.base import ANONYMOUS, CATALOG, Principal, pull, push
from registry.auth.keys import SigningKey, from_pem, generate_pem
from registry.auth.scopes import ResourceScope
from registry.auth.tokens import TokenError, TokenService

ALICE = Principal("alice")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return from_pem(generate_pem())


def service(key: SigningKey, **kw: Any) -> TokenService:
    args: dict[str, Any] = {"issuer": "pyreg", "service": "reg", "ttl": 300, "refresh_ttl": 3600}
    args.update(kw)
    return TokenService(key, **args)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "pyreg",
        "sub": "alice",
        "aud": "reg",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "x",
        "access": [{"type": "repository", "name": "a", "actions": ["pull"]}],
    }
    base.update(overrides)
    return base


def test_issued_token_carries_the_claims(key: SigningKey) -> None:
    svc = service(key)
    issued = svc.issue_access(ALICE, [ResourceScope("repository", "a", ("pull", "push"))])
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "ES256" and header["kid"] == key.kid
    body = jwt.decode(issued.token, key.public, algorithms=["ES256"], audience="reg")
    assert {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"} <= set(body)
    assert body["exp"] - body["iat"] == 300 and issued.expires_in == 300
    assert body["access"] == [{"type": "repository", "name": "a", "actions": ["pull", "push"]}]
    assert issued.issued_at.endswith("Z")


def test_verify_access_grants_exactly_the_access(key: SigningKey) -> None:
    svc = service(key)
    token = svc.issue_access(ALICE, [ResourceScope("repository", "a", ("pull",))]).token
    grant = svc.verify_access(token)
    assert grant.principal == ALICE
    assert grant.covers(pull("a"))
    assert not grant.covers(push("a"))
    assert not grant.covers(pull("b"))


def test_anonymous_subject_and_catalog_wildcard(key: SigningKey) -> None:
    svc = service(key)
    token = svc.issue_access(ANONYMOUS, [ResourceScope("registry", "catalog", ("*",))]).token
    grant = svc.verify_access(token)
    assert grant.principal.anonymous
    assert grant.covers(CATALOG)


def test_expired_token_is_refused(key: SigningKey) -> None:
    now = [time.time()]
    svc = service(key, clock=lambda: now[0])
    token = svc.issue_access(ALICE, []).token
    svc.verify_access(token)
    now[0] += 301
    with pytest.raises(TokenError):
        svc.verify_access(token)
    forged = jwt.encode(claims(exp=int(time.time()) - 5), key.private, algorithm="ES256")
    with pytest.raises(TokenError):
        service(key).verify_access(forged)


@pytest.mark.parametrize(
    "override",
    [{"aud": "other"}, {"iss": "someone-else"}, {"nbf": 600}, {"sub": 5}],
)
def test_wrong_claims_are_refused(key: SigningKey, override: dict[str, Any]) -> None:
    if "nbf" in override:  # seconds from now, taken when the test runs (not when collected)
        override = {"nbf": int(time.time()) + override["nbf"]}
    token = jwt.encode(claims(**override), key.private, algorithm="ES256")
    with pytest.raises(TokenError):
        service(key).verify_access(token)


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub", "jti", "access"])
def test_missing_claims_are_refused(key: SigningKey, missing: str) -> None:
    body = claims()
    del body[missing]
    with pytest.raises(TokenError):
        service(key).verify_access(jwt.encode(body, key.private, algorithm="ES256"))


@pytest.mark.parametrize(
    "access", [{"type": "repository"}, [1], [{"type": "r", "name": "a", "actions": "pull"}]]
)
def test_malformed_access_claim_is_refused(key: SigningKey, access: Any) -> None:
    token = jwt.encode(claims(access=access), key.private, algorithm="ES256")
    with pytest.raises(TokenError):
        service(key).verify_access(token)


def test_tampered_payload_is_refused(key: SigningKey) -> None:
    token = service(key).issue_access(ALICE, [ResourceScope("repository", "a", ("pull",))]).token
    header, payload, signature = token.split(".")
    body = json.loads(unb64(payload))
    body["access"][0]["name"] = "b"
    tampered = ".".join([header, b64(json.dumps(body).encode()), signature])
    with pytest.raises(TokenError):
        service(key).verify_access(tampered)


def test_tampered_signature_is_refused(key: SigningKey) -> None:
    token = service(key).issue_access(ALICE, []).token
    header, payload, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    with pytest.raises(TokenError):
        service(key).verify_access(".".join([header, payload, b64(bytes(raw))]))


def test_token_from_another_key_is_refused(key: SigningKey) -> None:
    other = from_pem(generate_pem())
    token = service(other).issue_access(ALICE, []).token
    with pytest.raises(TokenError):
        service(key).verify_access(token)


def test_alg_none_is_refused(key: SigningKey) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(TokenError):
            service(key).verify_access(token)


def test_hs256_keyed_with_the_public_key_is_refused(key: SigningKey) -> None:
    public_pem = key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    with pytest.raises(TokenError):
        service(key).verify_access(f"{header}.{payload}.{signature}")


def test_refresh_and_access_tokens_are_not_interchangeable(key: SigningKey) -> None:
    svc = service(key)
    refresh = svc.issue_refresh(ALICE, "cred-1")
    assert svc.verify_refresh(refresh) == (ALICE, "cred-1")
    with pytest.raises(TokenError):
        svc.verify_access(refresh)
    with pytest.raises(TokenError):
        svc.verify_refresh(svc.issue_access(ALICE, []).token)
    with pytest.raises(TokenError):
        svc.issue_refresh(ANONYMOUS, "cred-1")


def test_a_refresh_token_without_a_credential_binding_is_refused(key: SigningKey) -> None:
    """Refresh tokens issued before they were bound to the htpasswd entry carry no `cred`:
    they could outlive a password change, so they are no longer honoured."""
    svc = service(key)
    claims, _ = svc._claims("alice", svc._refresh_audience, 3600)
    with pytest.raises(TokenError):
        svc.verify_refresh(svc._sign(claims))


@pytest.mark.parametrize("garbage", ["", "a.b.c", "not-a-jwt", "...."])
def test_garbage_is_refused(key: SigningKey, garbage: str) -> None:
    with pytest.raises(TokenError):
        service(key).verify_access(garbage)
