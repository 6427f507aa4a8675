from __future__ import annotations

import time

import bcrypt
import httpx
import jwt
import pytest

from registry.auth import TokenAccess
from registry.auth.htpasswd import remove_user, set_user
from tests.support.auth import TEST_COST, basic


def access_of(access: TokenAccess, token: str) -> list[dict[str, object]]:
    body = jwt.decode(
        token, access.tokens.key.public, algorithms=[access.tokens.key.algorithm], audience="pyreg"
    )
    result: list[dict[str, object]] = body["access"]
    return result


async def test_get_with_basic_grants_the_intersection(
    client: httpx.AsyncClient, access: TokenAccess
) -> None:
    r = await client.get(
        "/token",
        params=[
            ("service", "pyreg"),
            ("scope", "repository:team-a/app:pull,push"),
            ("scope", "repository:library/alpine:pull,push"),
            ("scope", "repository:private/x:pull"),
        ],
        headers=basic("bob", "bob-pw"),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    assert r.headers["cache-control"] == "no-store"
    assert access_of(access, body["token"]) == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull"]},
        {"type": "repository", "name": "library/alpine", "actions": ["pull"]},
    ]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == "bob" and claims["aud"] == "pyreg" and claims["iss"] == "pyreg"


async def test_several_scopes_in_one_parameter(
    client: httpx.AsyncClient, access: TokenAccess
) -> None:
    r = await client.get(
        "/token",
        params={"scope": "repository:team-a/app:pull,push registry:catalog:*"},
        headers=basic("alice", "alice-pw"),
    )
    assert access_of(access, r.json()["token"]) == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


async def test_anonymous_get_gets_public_pulls_only(
    client: httpx.AsyncClient, access: TokenAccess
) -> None:
    r = await client.get(
        "/token",
        params=[
            ("scope", "repository:library/alpine:pull,push"),
            ("scope", "repository:team-a/app:pull"),
        ],
    )
    assert r.status_code == 200
    token = r.json()["token"]
    assert access_of(access, token) == [
        {"type": "repository", "name": "library/alpine", "actions": ["pull"]}
    ]
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == ""
    assert "refresh_token" not in r.json()


@pytest.mark.parametrize(
    "headers",
    [basic("alice", "wrong"), basic("mallory", "alice-pw"), basic("alice", "")],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
async def test_bad_credentials_get_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    r = await client.get("/token", params={"scope": "repository:library/a:pull"}, headers=headers)
    assert r.status_code == 401
    assert "token" not in r.json()


@pytest.mark.parametrize(
    "params",
    [{"service": "someone-else"}, {"scope": "repository"}, {"scope": "repository:UP:pull"}],
)
async def test_malformed_requests_get_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    r = await client.get("/token", params=params)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "INVALID_REQUEST"


async def test_malformed_basic_header_gets_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/token", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 400


async def test_offline_token_gives_a_refresh_token(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/token", params={"offline_token": "true"}, headers=basic("alice", "alice-pw")
    )
    assert r.status_code == 200 and r.json()["refresh_token"]


async def test_post_password_grant_and_refresh(
    client: httpx.AsyncClient, access: TokenAccess
) -> None:
    r = await client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "alice-pw",
            "service": "pyreg",
            "client_id": "podman",
            "access_type": "offline",
            "scope": "repository:private/x:pull repository:team-a/app:push",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "repository:private/x:pull repository:team-a/app:push"
    refresh = body["refresh_token"]
    assert access_of(access, body["access_token"])[0]["name"] == "private/x"

    r = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": "pyreg",
            "client_id": "podman",
            "scope": "repository:private/y:pull",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] == refresh
    assert access_of(access, r.json()["access_token"]) == [
        {"type": "repository", "name": "private/y", "actions": ["pull"]}
    ]


async def test_post_without_offline_gives_no_refresh_token(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/token",
        data={"grant_type": "password", "username": "bob", "password": "bob-pw"},
    )
    assert r.status_code == 200 and "refresh_token" not in r.json()


async def test_post_wrong_password_and_bad_refresh_token(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": "nope"}
    )
    assert r.status_code == 401
    r = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": "forged.jwt.here"}
    )
    assert r.status_code == 401


async def test_an_access_token_is_no_refresh_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/token", headers=basic("alice", "alice-pw"))
    r = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": r.json()["token"]}
    )
    assert r.status_code == 401


async def test_refresh_token_dies_with_its_user(
    client: httpx.AsyncClient, access: TokenAccess
) -> None:
    from registry.auth.htpasswd import remove_user

    r = await client.get("/token", params={"offline_token": "true"}, headers=basic("bob", "bob-pw"))
    refresh = r.json()["refresh_token"]
    remove_user(access.authenticator.users.path, "bob")
    r = await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert r.status_code == 401


async def refresh_with(client: httpx.AsyncClient, refresh: str) -> int:
    r = await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    return r.status_code


async def test_refresh_token_dies_with_a_password_change(
    client: httpx.AsyncClient, access: TokenAccess
) -> None:
    """A refresh token kept working after its user's password was changed."""
    r = await client.get("/token", params={"offline_token": "true"}, headers=basic("bob", "bob-pw"))
    refresh = r.json()["refresh_token"]
    assert await refresh_with(client, refresh) == 200
    set_user(access.authenticator.users.path, "bob", "new-pw", cost=TEST_COST)
    assert await refresh_with(client, refresh) == 401
    r = await client.get("/token", params={"offline_token": "true"}, headers=basic("bob", "new-pw"))
    assert await refresh_with(client, r.json()["refresh_token"]) == 200


async def test_a_new_user_of_the_same_name_does_not_inherit_refresh_tokens(
    client: httpx.AsyncClient, access: TokenAccess
) -> None:
    """After `user remove` + `user add` of the same name (and even the same password), the
    old person's refresh token worked for the new one."""
    r = await client.get("/token", params={"offline_token": "true"}, headers=basic("bob", "bob-pw"))
    refresh = r.json()["refresh_token"]
    path = access.authenticator.users.path
    remove_user(path, "bob")
    set_user(path, "bob", "bob-pw", cost=TEST_COST)
    assert await refresh_with(client, refresh) == 401


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ({"grant_type": "authorization_code"}, None),
        ({"grant_type": "password", "username": "alice"}, None),
        ({}, None),
        (b"grant_type=password", "application/json"),
    ],
)
async def test_post_malformed_gets_400(
    client: httpx.AsyncClient, data: object, content_type: str | None
) -> None:
    if isinstance(data, bytes):
        r = await client.post("/token", content=data, headers={"content-type": content_type or ""})
    else:
        r = await client.post("/token", data=data)  # type: ignore[arg-type]
    assert r.status_code == 400


async def test_oversized_form_gets_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/token",
        content=b"a=" + b"x" * 70_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400


async def test_lockout_after_repeated_failures(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        r = await client.get("/token", headers=basic("alice", "wrong"))
        assert r.status_code == 401
    started = time.monotonic()
    r = await client.get("/token", headers=basic("alice", "alice-pw"))  # right, but locked
    assert r.status_code == 429
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert 0 < int(r.headers["retry-after"]) <= 60
    assert time.monotonic() - started < 0.5  # refused before any bcrypt work
    r = await client.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": "alice-pw"}
    )
    assert r.status_code == 429


async def test_a_password_change_during_the_login_ends_the_refresh_token(
    client: httpx.AsyncClient, access: TokenAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is bound to the entry as it was before the check: one issued while the
    password changes must not be bound to the new entry."""
    path = access.authenticator.users.path
    real_checkpw = bcrypt.checkpw
    changed: list[bool] = []

    def change_then_check(password: bytes, hashed: bytes) -> bool:
        if not changed:
            changed.append(True)
            set_user(path, "bob", "new-pw", cost=TEST_COST)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", change_then_check)
    r = await client.get("/token", params={"offline_token": "true"}, headers=basic("bob", "bob-pw"))
    assert r.status_code == 200 and changed
    assert await refresh_with(client, r.json()["refresh_token"]) == 401
