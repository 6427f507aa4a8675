from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from starlette.requests import Request

from registry.auth import TokenAccess
from registry.auth.base import ANONYMOUS, Principal, pull, push
from registry.auth.scopes import ResourceScope
from tests.support.auth import basic, bearer


def check(*needs: str) -> dict[str, Any]:
    return {"params": [("need", n) for n in needs]}


async def token_for(client: httpx.AsyncClient, *scopes: str, user: str | None = None) -> str:
    headers = basic(user, f"{user}-pw") if user else {}
    r = await client.get("/token", params=[("scope", s) for s in scopes], headers=headers)
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


async def test_root_challenges_anonymous_callers_without_scope(client: httpx.AsyncClient) -> None:
    r = await client.get("/check")
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert r.headers["www-authenticate"] == 'Bearer realm="http://reg.test/token",service="pyreg"'


async def test_root_accepts_any_valid_token_or_basic(client: httpx.AsyncClient) -> None:
    token = await token_for(client)  # anonymous, no scope
    assert (await client.get("/check", headers=bearer(token))).status_code == 200
    r = await client.get("/check", headers=basic("bob", "bob-pw"))
    assert r.status_code == 200 and r.json() == {"name": "bob"}


async def test_public_pull_needs_no_credentials(client: httpx.AsyncClient) -> None:
    r = await client.get("/check", **check("repository:library/alpine:pull"))
    assert r.status_code == 200 and r.json() == {"name": None}


async def test_private_pull_challenges_with_the_scope(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/check", **check("repository:team-a/app:pull", "repository:team-a/app:push")
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        'Bearer realm="http://reg.test/token",service="pyreg",'
        'scope="repository:team-a/app:pull,push"'
    )
    assert r.json()["errors"][0]["detail"][1] == {
        "Type": "repository",
        "Name": "team-a/app",
        "Action": "push",
    }


async def test_catalog_always_challenges_anonymous_callers(client: httpx.AsyncClient) -> None:
    r = await client.get("/check", **check("registry:catalog:*"))
    assert r.status_code == 401
    assert 'scope="registry:catalog:*"' in r.headers["www-authenticate"]
    token = await token_for(client, "registry:catalog:*")
    r = await client.get("/check", headers=bearer(token), **check("registry:catalog:*"))
    assert r.status_code == 200


async def test_token_with_the_scope_is_accepted(client: httpx.AsyncClient) -> None:
    token = await token_for(client, "repository:team-a/app:pull,push", user="alice")
    r = await client.get(
        "/check",
        headers=bearer(token),
        **check("repository:team-a/app:pull", "repository:team-a/app:push"),
    )
    assert r.status_code == 200 and r.json() == {"name": "alice"}


async def test_token_for_another_repository_is_too_weak(client: httpx.AsyncClient) -> None:
    token = await token_for(client, "repository:team-a/one:pull,push", user="alice")
    r = await client.get("/check", headers=bearer(token), **check("repository:team-a/two:pull"))
    assert r.status_code == 401
    www = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in www and "repository:team-a/two:pull" in www


async def test_authenticated_but_not_allowed_is_denied(client: httpx.AsyncClient) -> None:
    token = await token_for(client, "repository:team-a/app:pull,push", user="bob")
    r = await client.get(
        "/check",
        headers=bearer(token),
        **check("repository:team-a/app:pull", "repository:team-a/app:push"),
    )
    assert r.status_code == 403
    assert r.json()["errors"][0]["code"] == "DENIED"


async def test_anonymous_token_without_rights_is_challenged(client: httpx.AsyncClient) -> None:
    token = await token_for(client, "repository:private/x:pull")
    r = await client.get("/check", headers=bearer(token), **check("repository:private/x:pull"))
    assert r.status_code == 401


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer garbage", "Bearer a.b.c", "Digest x", "Basic", "Negotiate abc"]
)
async def test_malformed_authorization_is_401(client: httpx.AsyncClient, header: str) -> None:
    r = await client.get(
        "/check", headers={"Authorization": header}, **check("repository:library/a:pull")
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer ")


async def test_forged_tokens_are_refused(client: httpx.AsyncClient, access: TokenAccess) -> None:
    now = int(time.time())
    claims = {
        "iss": "pyreg",
        "sub": "alice",
        "aud": "pyreg",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "x",
        "access": [{"type": "repository", "name": "private/x", "actions": ["pull"]}],
    }
    need = check("repository:private/x:pull")
    good = jwt.encode(claims, access.tokens.key.private, algorithm="ES256")
    assert (await client.get("/check", headers=bearer(good), **need)).status_code == 200
    forged = [
        jwt.encode({**claims, "exp": now - 10}, access.tokens.key.private, algorithm="ES256"),
        jwt.encode({**claims, "aud": "other"}, access.tokens.key.private, algorithm="ES256"),
        jwt.encode({**claims, "iss": "other"}, access.tokens.key.private, algorithm="ES256"),
        jwt.encode(claims, "", algorithm="none"),
        jwt.encode(claims, "a-shared-secret-of-32-bytes-len!", algorithm="HS256"),
    ]
    for token in forged:
        r = await client.get("/check", headers=bearer(token), **need)
        assert r.status_code == 401, token
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_basic_on_v2_checks_password_and_rules(client: httpx.AsyncClient) -> None:
    need = check("repository:private/x:pull")
    assert (await client.get("/check", headers=basic("alice", "alice-pw"), **need)).is_success
    r = await client.get("/check", headers=basic("bob", "bob-pw"), **need)
    assert r.status_code == 403
    r = await client.get("/check", headers=basic("alice", "wrong"), **need)
    assert r.status_code == 401
    r = await client.get("/check", headers=basic("nobody", "alice-pw"), **need)
    assert r.status_code == 401


async def test_basic_on_v2_locks_out_after_failures(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.get("/check", headers=basic("alice", "x"))).status_code == 401
    r = await client.get("/check", headers=basic("alice", "alice-pw"))
    assert r.status_code == 429
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert "retry-after" in r.headers


async def test_configured_realm_is_used(auth_config: dict[str, Any]) -> None:
    from registry.auth import build_access
    from storage_backends.memory import MemoryBackend

    auth_config["realm"] = "https://auth.example/token"
    controller = await build_access(auth_config, MemoryBackend())
    assert isinstance(controller, TokenAccess)
    scope = {"type": "http", "method": "GET", "path": "/v2/", "headers": [(b"host", b"x:1")]}
    assert controller.challenge(Request(scope), []) == (
        'Bearer realm="https://auth.example/token",service="pyreg"'
    )


async def test_may_answers_from_the_rules(access: TokenAccess) -> None:
    request: Any = None  # `may` does not look at the request
    assert await access.may(request, ANONYMOUS, pull("library/x"))
    assert not await access.may(request, ANONYMOUS, pull("team-a/x"))
    assert await access.may(request, Principal("bob"), pull("team-a/x"))
    assert not await access.may(request, Principal("bob"), push("team-a/x"))
    assert not await access.may(request, Principal("bob"), pull("private/x"))


def test_issued_scope_names_round_trip(access: TokenAccess) -> None:
    issued = access.tokens.issue_access(
        Principal("alice"), [ResourceScope("repository", "team-a/app", ("pull",))]
    )
    assert access.tokens.verify_access(issued.token).covers(pull("team-a/app"))


async def test_a_token_for_something_else_still_gets_public_content(
    client: httpx.AsyncClient,
) -> None:
    token = await token_for(client, "repository:team-a/app:pull", user="bob")
    r = await client.get("/check", headers=bearer(token), **check("repository:library/x:pull"))
    assert r.status_code == 200 and r.json() == {"name": "bob"}
    r = await client.get("/check", headers=bearer(token), **check("repository:library/x:push"))
    assert r.status_code == 403
