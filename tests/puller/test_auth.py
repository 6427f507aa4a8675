"""The auth flow: challenge parsing, scopes, and Basic and Bearer against the reference
registry (htpasswd, and token auth trusting a test token service)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from ocispec.reference import Reference
from puller.pull import pull
from puller.push import push
from puller.store import GraphStore
from pyreg.cli import main as cli_main
from regclient.api import RegistryClient, Unauthorized
from regclient.auth import (
    MAX_TOKEN_BODY,
    AuthError,
    RegistryAuth,
    parse_www_authenticate,
    scopes_for,
)
from regclient.credentials import Credentials
from tests.puller.conftest import put_image
from tests.support.docker_registry import DockerRegistry, TokenAuthConfig, start_registry
from tests.support.images import build_image, file
from tests.support.loopback_http import LoopbackHTTPServer
from tests.support.split_origin import SplitOrigin
from tests.support.token_server import ISSUER, SERVICE, TokenServer

USERS = {"alice": "s3cret"}


def test_parse_bearer_challenge_keeps_commas_inside_quotes() -> None:
    [c] = parse_www_authenticate(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }


def test_parse_several_challenges() -> None:
    got = parse_www_authenticate('Basic realm="x", Bearer realm="y",service=z')
    assert [(c.scheme, c.params) for c in got] == [
        ("basic", {"realm": "x"}),
        ("bearer", {"realm": "y", "service": "z"}),
    ]


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "/v2/a/b/manifests/v1", ["repository:a/b:pull"]),
        ("HEAD", "/v2/a/b/blobs/sha256:x", ["repository:a/b:pull"]),
        ("PUT", "/v2/a/b/manifests/v1", ["repository:a/b:pull,push"]),
        ("PATCH", "/v2/a/blobs/uploads/u1", ["repository:a:pull,push"]),
        ("DELETE", "/v2/a/manifests/sha256:x", ["repository:a:delete"]),
        (
            "POST",
            "/v2/new/blobs/uploads/?mount=sha256:x&from=old/repo",
            ["repository:new:pull,push", "repository:old/repo:pull"],
        ),
        ("GET", "/v2/_catalog?n=10", ["registry:catalog:*"]),
        ("GET", "/v2/", []),
    ],
)
def test_scopes_for_requests(method: str, url: str, expected: list[str]) -> None:
    assert scopes_for(httpx.Request(method, "http://r" + url)) == expected


# -- Basic: docker-registry with htpasswd -------------------------------------------------------


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[DockerRegistry]:
    registry = start_registry(tmp_path / "basic-registry", users=USERS)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.mark.interop
async def test_basic_auth_push_and_pull(
    basic_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = build_image([[file("a", b"basic")]])
    ref = Reference.parse(f"{basic_registry.host}/private/app:v1")
    put_image(store, str(ref), image)
    creds = Credentials("alice", "s3cret")
    async with RegistryClient(ref.registry, credentials=creds) as client:
        await push(client, store, ref)
    async with RegistryClient(ref.registry, credentials=creds) as client:
        result = await pull(client, GraphStore(tmp_path / "other"), ref)
    assert result.digest == image.digest


@pytest.mark.interop
@pytest.mark.parametrize("creds", [None, Credentials("alice", "wrong")])
async def test_basic_auth_refuses_anonymous_and_wrong_password(
    basic_registry: DockerRegistry, creds: Credentials | None
) -> None:
    async with RegistryClient(basic_registry.host, credentials=creds) as client:
        with pytest.raises(Unauthorized):
            await client.ping()
        with pytest.raises(Unauthorized):
            await client.tags("private/app")


# -- Bearer: docker-registry with token auth ----------------------------------------------------


@pytest.fixture
def token_setup(tmp_path: Path) -> Iterator[tuple[DockerRegistry, TokenServer]]:
    with TokenServer(tmp_path / "token", USERS, anonymous_pull=True) as server:
        config = TokenAuthConfig(server.realm, SERVICE, ISSUER, server.rootcertbundle)
        registry = start_registry(tmp_path / "token-registry", token=config)
        try:
            yield registry, server
        finally:
            registry.stop()


@pytest.mark.interop
async def test_bearer_push_fetches_one_token_per_scope_and_caches_it(
    token_setup: tuple[DockerRegistry, TokenServer], store: GraphStore
) -> None:
    registry, server = token_setup
    image = build_image([[file("a", b"1")], [file("b", b"2")]])
    ref = Reference.parse(f"{registry.host}/team/app:v1")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry, credentials=Credentials("alice", "s3cret")) as client:
        await push(client, store, ref)
        assert (await client.get_manifest("team/app", "v1")).digest == image.digest
    scopes = [r.scopes for r in server.requests]
    # ping (no scope), pushes (pull,push), HEAD/GET checks (pull): each fetched once
    assert sorted(scopes) == sorted(
        [(), ("repository:team/app:pull",), ("repository:team/app:pull,push",)]
    )
    assert {r.user for r in server.requests} == {"alice"}


@pytest.mark.interop
async def test_bearer_mount_asks_for_pull_on_the_source(
    token_setup: tuple[DockerRegistry, TokenServer], store: GraphStore
) -> None:
    registry, server = token_setup
    image = build_image([[file("a", b"mount me")]])
    first = Reference.parse(f"{registry.host}/team/app:v1")
    second = Reference.parse(f"{registry.host}/team/copy:v1")
    put_image(store, str(first), image)
    store.images.set(str(second), image.digest)
    async with RegistryClient(first.registry, credentials=Credentials("alice", "s3cret")) as c:
        await push(c, store, first)
        result = await push(c, store, second)
    assert len(result.mounted) == 2
    assert ("repository:team/app:pull", "repository:team/copy:pull,push") in [
        tuple(sorted(r.scopes)) for r in server.requests
    ]


@pytest.mark.interop
async def test_bearer_anonymous_pull_and_refused_push(
    token_setup: tuple[DockerRegistry, TokenServer], store: GraphStore, tmp_path: Path
) -> None:
    registry, server = token_setup
    image = build_image([[file("a", b"public")]])
    ref = Reference.parse(f"{registry.host}/pub/app:v1")
    put_image(store, str(ref), image)
    store.images.set(str(ref.with_tag("v2")), image.digest)
    async with RegistryClient(ref.registry, credentials=Credentials("alice", "s3cret")) as c:
        await push(c, store, ref)
    async with RegistryClient(ref.registry) as anonymous:
        result = await pull(anonymous, GraphStore(tmp_path / "anon"), ref)
        assert result.digest == image.digest
        with pytest.raises(Unauthorized):
            await push(anonymous, store, ref.with_tag("v2"))
    assert any(r.user is None for r in server.requests)


@pytest.mark.interop
async def test_bearer_token_is_fetched_again_after_it_expires(
    token_setup: tuple[DockerRegistry, TokenServer],
) -> None:
    registry, server = token_setup
    server.expires_in = 1
    async with RegistryClient(registry.host, credentials=Credentials("alice", "s3cret")) as c:
        await c.ping()
        await c.head_manifest("team/x", "v1")
        await c.head_manifest("team/x", "v1")
        before = len(server.requests)
        await asyncio.sleep(1.1)
        await c.head_manifest("team/x", "v1")
    assert before == 2  # ping + one pull token, reused
    assert len(server.requests) == 3


@pytest.mark.interop
async def test_identity_token_uses_the_oauth2_refresh_grant(
    token_setup: tuple[DockerRegistry, TokenServer],
) -> None:
    registry, server = token_setup
    server.refresh_tokens["refresh-abc"] = "alice"
    creds = Credentials(identity_token="refresh-abc")
    async with RegistryClient(registry.host, credentials=creds) as c:
        await c.ping()
        assert await c.head_manifest("team/x", "v1") is None
    assert [r.grant_type for r in server.requests] == ["refresh_token", "refresh_token"]
    assert all(r.method == "POST" and r.user == "alice" for r in server.requests)


@pytest.mark.interop
async def test_bearer_with_wrong_password_is_a_clear_error(
    token_setup: tuple[DockerRegistry, TokenServer],
) -> None:
    registry, _ = token_setup
    async with RegistryClient(registry.host, credentials=Credentials("alice", "nope")) as c:
        with pytest.raises(AuthError, match="answered 401"):
            await c.ping()


# -- where credentials may go (a malicious or misconfigured registry) ---------------------------


def _registry_challenging(realm: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        challenge = f'Bearer realm="{realm}",service="reg"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        ("https://reg.example", "http://auth.example/token"),  # plain HTTP elsewhere
        ("https://reg.example", "http://reg.example/token"),  # a downgrade of the same host
        ("http://reg.example", "http://auth.example/token"),  # insecure registry, other host
        ("https://reg.example", "ftp://auth.example/token"),
    ],
)
async def test_password_is_not_sent_to_a_plain_http_realm(registry: str, realm: str) -> None:
    seen: list[httpx.Request] = []
    transport = _registry_challenging(realm, seen)
    auth = RegistryAuth(Credentials("alice", "s3cret"), transport=transport)
    async with httpx.AsyncClient(transport=transport, auth=auth, base_url=registry) as client:
        with pytest.raises(AuthError, match="plain HTTP"):
            await client.get("/v2/a/manifests/v1")
    await auth.aclose()
    assert [r.url.host for r in seen] == ["reg.example"]  # the realm was never contacted


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        ("https://reg.example", "https://auth.example/token"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token"),
        ("http://reg.example", "http://reg.example/token"),  # the insecure registry itself
    ],
)
async def test_password_goes_to_an_https_loopback_or_own_realm(registry: str, realm: str) -> None:
    tokens: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            tokens.append(request)
            return httpx.Response(200, json={"token": "t", "expires_in": 300})
        if request.headers.get("authorization") == "Bearer t":
            return httpx.Response(200, json={})
        challenge = f'Bearer realm="{realm}",service="reg"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    transport = httpx.MockTransport(handler)
    auth = RegistryAuth(Credentials("alice", "s3cret"), transport=transport)
    async with httpx.AsyncClient(transport=transport, auth=auth, base_url=registry) as client:
        assert (await client.get("/v2/a/manifests/v1")).status_code == 200
    await auth.aclose()
    assert len(tokens) == 1 and tokens[0].headers["authorization"].startswith("Basic ")


async def test_a_redirect_target_cannot_take_over_auth() -> None:
    """A blob redirect to another host that answers 401: its challenge is not adopted (the
    password would go to its realm), and our Authorization never reaches it."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "storage.example":
            challenge = 'Bearer realm="https://evil.example/token",service="evil"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "t", "expires_in": 300})
        if request.headers.get("authorization") != "Bearer t":
            challenge = 'Bearer realm="https://reg.example/token",service="reg"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if "/blobs/" not in request.url.path:
            return httpx.Response(200, json={})
        return httpx.Response(307, headers={"Location": "https://storage.example/blob"})

    transport = httpx.MockTransport(handler)
    auth = RegistryAuth(Credentials("alice", "s3cret"), transport=transport)
    async with httpx.AsyncClient(
        transport=transport, auth=auth, base_url="https://reg.example", follow_redirects=True
    ) as client:
        await client.get("/v2/a/manifests/v1")  # learns the registry's challenge
        response = await client.get("/v2/a/blobs/sha256:" + "a" * 64)  # sent with a token
    await auth.aclose()
    assert response.status_code == 401
    assert auth.challenge is not None and auth.challenge.params["realm"].startswith(
        "https://reg.example"
    )
    assert not [r for r in seen if r.url.host == "evil.example"]
    assert all("authorization" not in r.headers for r in seen if r.url.host == "storage.example")


# -- credentials stay on the registry's origin --------------------------------------------------


@pytest.fixture(params=["basic", "bearer"])
def any_auth_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DockerRegistry]:
    if request.param == "basic":
        registry = start_registry(tmp_path / "basic-registry", users=USERS)
        try:
            yield registry
        finally:
            registry.stop()
        return
    with TokenServer(tmp_path / "token", USERS) as server:
        config = TokenAuthConfig(server.realm, SERVICE, ISSUER, server.rootcertbundle)
        registry = start_registry(tmp_path / "token-registry", token=config)
        try:
            yield registry
        finally:
            registry.stop()


@pytest.mark.interop
def test_credentials_never_go_to_another_origin(
    any_auth_registry: DockerRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pyreg push` and `pyreg pull` (and a catalog read page by page) through a registry
    whose upload Locations, blob GETs (307) and next-page Links lead to another port: that
    origin never sees Authorization."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    with SplitOrigin(any_auth_registry.host) as split:
        ref = f"{split.front}/private/app:v1"
        home = tmp_path / "home"
        monkeypatch.setenv("PYREG_HOME", str(home))
        image = build_image([[file("a", b"split")], [file("b", b"origin")]])
        put_image(GraphStore(home), ref, image)
        assert cli_main(["login", "-u", "alice", "-p", "s3cret", split.front]) == 0
        assert cli_main(["push", "-q", "--concurrency", "1", ref]) == 0
        assert cli_main(["tag", ref, f"{split.front}/private/other:v1"]) == 0
        assert cli_main(["push", "-q", f"{split.front}/private/other:v1"]) == 0
        monkeypatch.setenv("PYREG_HOME", str(tmp_path / "fresh"))
        assert cli_main(["pull", "-q", ref]) == 0
        assert asyncio.run(_catalog_page_by_page(split.front)) == ["private/app", "private/other"]
    uploads = [path for method, path, _ in split.foreign_seen if method == "PUT"]
    assert len(uploads) == 3 and all("/blobs/uploads/" in path for path in uploads)
    assert any("/blobs/sha256:" in path for _, path, _ in split.foreign_seen)  # redirected
    assert any("/_catalog" in path for _, path, _ in split.foreign_seen)  # next page
    leaked = [seen for seen in split.foreign_seen if seen[2] is not None]
    assert leaked == []
    assert any(auth for _, _, auth in split.front_seen)  # the registry itself did get them


async def _catalog_page_by_page(registry: str) -> list[str]:
    async with RegistryClient(registry, credentials=Credentials("alice", "s3cret")) as client:
        return await client.catalog(page_size=1)


# -- the token service's answer is capped --------------------------------------------------------


class _EndlessTokenService(BaseHTTPRequestHandler):
    """A registry whose token realm answers 200 with 64 MiB of blanks before a valid token:
    read whole, it would even be accepted."""

    protocol_version = "HTTP/1.1"
    sent: list[int] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            port = self.server.server_address[1]  # type: ignore[index]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token",service="x"'
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/v2/"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        try:
            for _ in range(1024):
                self.wfile.write(b" " * 65536)
                sent += 65536
            self.wfile.write(b'{"token": "t"}')
        except OSError:
            pass  # the client hung up
        finally:
            self.sent.append(sent)


async def test_an_endless_token_answer_is_refused_unread() -> None:
    _EndlessTokenService.sent = []
    server = LoopbackHTTPServer(_EndlessTokenService)
    server.start()
    try:
        async with RegistryClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(AuthError, match=f"more than {MAX_TOKEN_BODY} bytes"):
                await client.ping()
    finally:
        server.stop()
    assert len(_EndlessTokenService.sent) == 1
    assert _EndlessTokenService.sent[0] < 32 * 1024 * 1024  # stopped long before the end
