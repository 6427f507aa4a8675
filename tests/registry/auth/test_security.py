"""End-to-end security of the real app (`registry.app.create_app`) with access control on.

alice owns `private/*`; mallory is a logged-in user who owns only `mallory/*`; `library/*` is
public for pulls. Every "refused" test here passes only because of a rule in registry/auth:
with open access (no `auth` section) each of them would get the content.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from registry.app import create_app
from registry.auth import TokenAccess
from registry.settings import Settings
from storage_backends.memory import MemoryBackend
from tests.support.auth import auth_section, basic, bearer

USERS = {"alice": "alice-pw", "mallory": "mallory-pw", "admin": "admin-pw"}
RULES: list[dict[str, Any]] = [
    {"repository": "library/*", "pull": ["anonymous"], "push": ["admin"]},
    {"repository": "private/*", "pull": ["alice"], "push": ["alice"], "delete": ["alice"]},
    {"repository": "mallory/*", "push": ["mallory"]},
]
ALICE = basic("alice", "alice-pw")
MALLORY = basic("mallory", "mallory-pw")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Pushed:
    repo: str
    manifest: str  # digest
    layer: str
    referrer: str


async def push_image(client: httpx.AsyncClient, repo: str, auth: dict[str, str]) -> Pushed:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = f"secret layer of {repo}".encode()
    for blob in (config, layer, b"{}"):
        r = await client.post(
            f"/v2/{repo}/blobs/uploads/?digest={digest_of(blob)}", content=blob, headers=auth
        )
        assert r.status_code == 201, r.text

    def manifest(extra: dict[str, Any]) -> bytes:
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(layer),
                    "size": len(layer),
                }
            ],
            **extra,
        }
        return json.dumps(body).encode()

    image = manifest({})
    headers = {**auth, "Content-Type": OCI_MANIFEST}
    r = await client.put(f"/v2/{repo}/manifests/v1", content=image, headers=headers)
    assert r.status_code == 201, r.text
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(image), "size": len(image)}
    signature = manifest({"artifactType": "application/x.signature", "subject": subject})
    r = await client.put(
        f"/v2/{repo}/manifests/{digest_of(signature)}", content=signature, headers=headers
    )
    assert r.status_code == 201, r.text
    return Pushed(repo, digest_of(image), digest_of(layer), digest_of(signature))


@pytest.fixture
async def app_and_client(
    tmp_path: Path,
) -> AsyncIterator[tuple[TokenAccess, httpx.AsyncClient]]:
    auth = auth_section(
        tmp_path, USERS, RULES, lockout={"max_failures": 3, "window": 60, "lock_for": 60}
    )
    app = create_app(Settings(storage_url="memory://", auth=auth), backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        access = app.state.access
        assert isinstance(access, TokenAccess)
        transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 4444))
        async with httpx.AsyncClient(transport=transport, base_url="http://reg.test") as client:
            yield access, client


@pytest.fixture
def client(app_and_client: tuple[TokenAccess, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture
def access(app_and_client: tuple[TokenAccess, httpx.AsyncClient]) -> TokenAccess:
    return app_and_client[0]


@pytest.fixture
async def private(client: httpx.AsyncClient) -> Pushed:
    return await push_image(client, "private/app", ALICE)


async def get_token(
    client: httpx.AsyncClient, *scopes: str, auth: dict[str, str] | None = None
) -> str:
    r = await client.get("/token", params=[("scope", s) for s in scopes], headers=auth or {})
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def reads(p: Pushed) -> list[tuple[str, str]]:
    """Every way to read something out of a repository."""
    return [
        ("GET", f"/v2/{p.repo}/manifests/v1"),
        ("HEAD", f"/v2/{p.repo}/manifests/v1"),
        ("GET", f"/v2/{p.repo}/manifests/{p.manifest}"),
        ("GET", f"/v2/{p.repo}/tags/list"),
        ("GET", f"/v2/{p.repo}/referrers/{p.manifest}"),
        ("GET", f"/v2/{p.repo}/blobs/{p.layer}"),
        ("HEAD", f"/v2/{p.repo}/blobs/{p.layer}"),
    ]


async def test_the_owner_can_read_everything(client: httpx.AsyncClient, private: Pushed) -> None:
    # The control for the refusals below: the same requests succeed with the right user.
    for method, url in reads(private):
        r = await client.request(method, url, headers=ALICE)
        assert r.status_code == 200, (method, url, r.status_code)
    r = await client.get(f"/v2/{private.repo}/referrers/{private.manifest}", headers=ALICE)
    assert [m["digest"] for m in r.json()["manifests"]] == [private.referrer]


async def test_anonymous_gets_nothing_from_a_private_repository(
    client: httpx.AsyncClient, private: Pushed
) -> None:
    for method, url in reads(private):
        r = await client.request(method, url)
        assert r.status_code == 401, (method, url, r.status_code)
        www = r.headers["www-authenticate"]
        assert www.startswith('Bearer realm="http://reg.test/token",service="pyreg"')
        assert 'scope="repository:private/app:pull"' in www
        assert private.layer.encode() not in r.content or method == "HEAD"


async def test_anonymous_token_gets_nothing_either(
    client: httpx.AsyncClient, private: Pushed
) -> None:
    token = await get_token(client, "repository:private/app:pull")
    for method, url in reads(private):
        r = await client.request(method, url, headers=bearer(token))
        assert r.status_code == 401, (method, url, r.status_code)


async def test_another_user_is_denied(client: httpx.AsyncClient, private: Pushed) -> None:
    token = await get_token(client, "repository:private/app:pull", auth=MALLORY)
    for auth in (MALLORY, bearer(token)):
        for method, url in reads(private):
            r = await client.request(method, url, headers=auth)
            assert r.status_code == 403, (method, url, r.status_code)
            if method == "GET":
                assert r.json()["errors"][0]["code"] == "DENIED"


async def test_catalog_lists_only_what_the_caller_may_pull(
    client: httpx.AsyncClient, private: Pushed
) -> None:
    await push_image(client, "library/alpine", basic("admin", "admin-pw"))
    await push_image(client, "mallory/tools", MALLORY)
    r = await client.get("/v2/_catalog")
    assert r.status_code == 401
    assert 'scope="registry:catalog:*"' in r.headers["www-authenticate"]
    anonymous = await get_token(client, "registry:catalog:*")
    r = await client.get("/v2/_catalog", headers=bearer(anonymous))
    assert r.json()["repositories"] == ["library/alpine"]
    r = await client.get("/v2/_catalog", headers=MALLORY)
    assert r.json()["repositories"] == ["library/alpine", "mallory/tools"]
    r = await client.get("/v2/_catalog", headers=ALICE)
    assert r.json()["repositories"] == ["library/alpine", "private/app"]


@pytest.mark.parametrize("with_source", [True, False])
async def test_no_mount_out_of_a_private_repository(
    client: httpx.AsyncClient, private: Pushed, with_source: bool
) -> None:
    query = f"mount={private.layer}" + ("&from=private/app" if with_source else "")
    r = await client.post(f"/v2/mallory/loot/blobs/uploads/?{query}", headers=MALLORY)
    assert r.status_code == 202  # a plain upload session, not the blob
    assert "/blobs/uploads/" in r.headers["location"]
    r = await client.get(f"/v2/mallory/loot/blobs/{private.layer}", headers=MALLORY)
    assert r.status_code == 404
    # The owner may mount between her own repositories, naming the source.
    r = await client.post(f"/v2/private/copy/blobs/uploads/?{query}", headers=ALICE)
    assert r.status_code == (201 if with_source else 202)


async def test_anonymous_cannot_push_or_delete(client: httpx.AsyncClient, private: Pushed) -> None:
    r = await client.post("/v2/library/alpine/blobs/uploads/")
    assert r.status_code == 401
    assert 'scope="repository:library/alpine:pull,push"' in r.headers["www-authenticate"]
    r = await client.delete(f"/v2/{private.repo}/manifests/{private.manifest}")
    assert r.status_code == 401
    r = await client.delete(f"/v2/{private.repo}/manifests/{private.manifest}", headers=MALLORY)
    assert r.status_code == 403
    r = await client.get(f"/v2/{private.repo}/manifests/v1", headers=ALICE)
    assert r.status_code == 200  # still there


async def test_public_pull_is_anonymous_but_push_is_not(client: httpx.AsyncClient) -> None:
    public = await push_image(client, "library/alpine", basic("admin", "admin-pw"))
    for method, url in reads(public):
        r = await client.request(method, url)
        assert r.status_code == 200, (method, url, r.status_code)
    r = await client.post("/v2/library/alpine/blobs/uploads/", headers=MALLORY)
    assert r.status_code == 403


async def test_root_challenges_then_accepts(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="http://reg.test/token",service="pyreg"'
    assert (await client.get("/v2/", headers=bearer(await get_token(client)))).status_code == 200
    assert (await client.get("/v2/", headers=ALICE)).status_code == 200
    assert (await client.get("/v2/", headers=basic("alice", "nope"))).status_code == 401


async def test_token_flow_push_and_pull(client: httpx.AsyncClient) -> None:
    token = await get_token(client, "repository:private/new:pull,push", auth=ALICE)
    pushed = await push_image(client, "private/new", bearer(token))
    r = await client.get(f"/v2/private/new/blobs/{pushed.layer}", headers=bearer(token))
    assert r.status_code == 200 and r.content == b"secret layer of private/new"


async def test_token_for_another_repository_is_refused(
    client: httpx.AsyncClient, private: Pushed
) -> None:
    token = await get_token(client, "repository:private/other:pull", auth=ALICE)
    r = await client.get(f"/v2/{private.repo}/manifests/v1", headers=bearer(token))
    assert r.status_code == 401
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


async def test_pull_token_cannot_push(client: httpx.AsyncClient, private: Pushed) -> None:
    token = await get_token(client, "repository:private/app:pull", auth=ALICE)
    r = await client.post("/v2/private/app/blobs/uploads/", headers=bearer(token))
    assert r.status_code == 401


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def test_forged_tokens_are_refused(
    client: httpx.AsyncClient, access: TokenAccess, private: Pushed
) -> None:
    url = f"/v2/{private.repo}/manifests/v1"
    weak = await get_token(client, "repository:private/other:pull", auth=ALICE)
    header, payload, signature = weak.split(".")
    claims = json.loads(_unb64(payload))
    claims["access"] = [{"type": "repository", "name": "private/app", "actions": ["pull"]}]
    claims["sub"] = "alice"
    tampered_payload = ".".join([header, _b64(json.dumps(claims).encode()), signature])

    good = await get_token(client, "repository:private/app:pull", auth=ALICE)
    assert (await client.get(url, headers=bearer(good))).status_code == 200
    g_header, g_payload, g_signature = good.split(".")
    raw = bytearray(_unb64(g_signature))
    raw[-1] ^= 0x01
    tampered_signature = ".".join([g_header, g_payload, _b64(bytes(raw))])

    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    alg_none = f"{none_header}.{_b64(json.dumps(claims).encode())}."

    public_pem = access.tokens.key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    hs_input = f"{hs_header}.{_b64(json.dumps(claims).encode())}"
    hs_sig = _b64(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    hs256_public = f"{hs_input}.{hs_sig}"

    now = int(time.time())
    expired = jwt.encode(
        {**claims, "iat": now - 600, "nbf": now - 600, "exp": now - 300},
        access.tokens.key.private,
        algorithm=access.tokens.key.algorithm,
    )
    for name, token in [
        ("tampered payload", tampered_payload),
        ("tampered signature", tampered_signature),
        ("alg none", alg_none),
        ("HS256 with the public key", hs256_public),
        ("expired", expired),
    ]:
        r = await client.get(url, headers=bearer(token))
        assert r.status_code == 401, name
        assert 'error="invalid_token"' in r.headers["www-authenticate"], name


async def test_wrong_password_and_unknown_user_get_no_token(client: httpx.AsyncClient) -> None:
    # Three failures: exactly the lockout threshold of this fixture, so all are plain 401s.
    scope = {"scope": "repository:private/app:pull"}
    r = await client.get("/token", params=scope, headers=basic("alice", "wrong"))
    assert r.status_code == 401 and "token" not in r.json()
    r = await client.get("/token", params=scope, headers=basic("nobody", "alice-pw"))
    assert r.status_code == 401 and "token" not in r.json()
    r = await client.get("/v2/private/app/tags/list", headers=basic("alice", "wrong"))
    assert r.status_code == 401


async def test_lockout_after_repeated_failures(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        r = await client.get("/token", headers=basic("alice", "guess"))
        assert r.status_code == 401
    r = await client.get("/token", headers=ALICE)
    assert r.status_code == 429
    r = await client.get("/v2/", headers=ALICE)
    assert r.status_code == 429
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert int(r.headers["retry-after"]) > 0


async def test_nobody_else_touches_an_upload_session(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/private/app/blobs/uploads/", headers=ALICE)
    assert r.status_code == 202
    location = r.headers["location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]
    for auth, status in (({}, 401), (MALLORY, 403)):
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            params = {"digest": digest_of(b"x")} if method == "PUT" else {}
            r = await client.request(method, location, headers=auth, content=b"x", params=params)
            assert r.status_code == status, (method, auth, r.status_code)
    # Through her own repository's path, the session is simply unknown.
    r = await client.get(f"/v2/mallory/x/blobs/uploads/{upload_id}", headers=MALLORY)
    assert r.status_code == 404
    r = await client.get(location, headers=ALICE)
    assert r.status_code == 204  # still alice's, untouched


async def test_blob_delete_needs_the_delete_right(
    client: httpx.AsyncClient, private: Pushed
) -> None:
    url = f"/v2/{private.repo}/blobs/{private.layer}"
    assert (await client.delete(url)).status_code == 401
    assert (await client.delete(url, headers=MALLORY)).status_code == 403
    assert (await client.get(url, headers=ALICE)).status_code == 200


@pytest.mark.parametrize("with_source", [True, False])
async def test_a_narrow_token_cannot_mount_from_its_holders_other_repositories(
    client: httpx.AsyncClient, private: Pushed, with_source: bool
) -> None:
    """A token for `private/ci` only (say, handed to a CI job) mounted alice's `private/app`
    layer into `private/ci` and read it there: mounts checked the rules for alice, not the
    token's scopes."""
    query = f"mount={private.layer}" + ("&from=private/app" if with_source else "")
    narrow = await get_token(client, "repository:private/ci:pull,push", auth=ALICE)
    r = await client.post(f"/v2/private/ci/blobs/uploads/?{query}", headers=bearer(narrow))
    assert r.status_code == 202  # a plain upload session, not the blob
    r = await client.get(f"/v2/private/ci/blobs/{private.layer}", headers=bearer(narrow))
    assert r.status_code == 404
    # With the source in its scopes (what clients ask for when they mount) it works.
    wide = await get_token(
        client, "repository:private/ci:pull,push", "repository:private/app:pull", auth=ALICE
    )
    r = await client.post(f"/v2/private/ci/blobs/uploads/?{query}", headers=bearer(wide))
    assert r.status_code == (201 if with_source else 202)  # no mount without `from`


async def test_a_narrow_token_still_mounts_public_content(client: httpx.AsyncClient) -> None:
    public = await push_image(client, "library/base", basic("admin", "admin-pw"))
    narrow = await get_token(client, "repository:private/ci:pull,push", auth=ALICE)
    query = f"mount={public.layer}&from=library/base"
    r = await client.post(f"/v2/private/ci/blobs/uploads/?{query}", headers=bearer(narrow))
    assert r.status_code == 201


def _shape(r: httpx.Response, repo: str) -> tuple[int, tuple[str, ...], str]:
    challenge = r.headers.get("www-authenticate", "").replace(repo, "<repo>")
    return r.status_code, tuple(e["code"] for e in r.json().get("errors", [])), challenge


async def test_refusals_do_not_tell_which_private_repositories_exist(
    client: httpx.AsyncClient, private: Pushed
) -> None:
    """Anonymous callers, another user (Basic or token) and an anonymous token get the same
    answer for alice's existing repository, a missing one under her rule, and one no rule
    covers: no probing for private names, tags or digests."""
    anonymous = await get_token(client)
    mallory_token = await get_token(client, auth=MALLORY)
    for auth in ({}, MALLORY, bearer(mallory_token), bearer(anonymous)):
        for method, path in reads(private):
            shapes = set()
            for repo in (private.repo, "private/missing", "nobody/rules/this"):
                r = await client.request(method, path.replace(private.repo, repo), headers=auth)
                assert r.status_code in (401, 403), (method, path, r.status_code)
                if method != "HEAD":
                    shapes.add(_shape(r, repo))
            assert len(shapes) <= 1, (auth, method, path, shapes)
