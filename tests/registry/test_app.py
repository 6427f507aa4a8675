"""App-wide behaviour: names, error rendering, unknown routes, crashes, the version header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request

from registry import errors
from registry.app import create_app
from registry.auth.base import Access, Principal
from registry.settings import Settings
from storage_backends.base import Stat
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import digest_of, error_codes, push_blob


async def test_v2_root(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.parametrize(
    "name",
    ["UPPER", "a/%2E%2E/b", "%2E%2E", "a%2Fb", "a%2fb", "a//b", "-a", "a_", "a/b.", "x" * 256],
)
async def test_invalid_repository_names_are_name_invalid(
    client: httpx.AsyncClient, name: str
) -> None:
    for url in (
        f"/v2/{name}/tags/list",
        f"/v2/{name}/manifests/latest",
        f"/v2/{name}/blobs/{digest_of(b'x')}",
        f"/v2/{name}/referrers/{digest_of(b'x')}",
    ):
        response = await client.get(url)
        assert response.status_code == 400, (url, response.text)
        assert error_codes(response) == ["NAME_INVALID"]
    response = await client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status_code == 400


@pytest.mark.parametrize("name", ["a", "a/b/c/d", "a.b-c__d/e--f", "x" * 255, "0"])
async def test_valid_repository_names(client: httpx.AsyncClient, name: str) -> None:
    await push_blob(client, name, b"x")
    assert (await client.get(f"/v2/{name}/tags/list")).status_code == 200


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    for url in ("/v2/a/unknown/thing", "/other", "/v2/a/blobs/x/y"):
        response = await client.get(url)
        assert response.status_code == 404
        assert error_codes(response) == ["UNSUPPORTED"]
        assert response.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_wrong_method_is_json_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/a/tags/list")
    assert response.status_code == 405
    assert error_codes(response) == ["UNSUPPORTED"]
    response = await client.patch("/v2/a/manifests/latest")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}


class _BrokenBackend(MemoryBackend):
    async def stat(self, path: str) -> Stat:
        raise RuntimeError("disk on fire: secret internals")


@pytest.fixture
async def broken_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), backend=_BrokenBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


async def test_unexpected_error_is_json_500_without_traceback(
    broken_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    digest = await push_blob(broken_client, "a", b"x")
    response = await broken_client.get(f"/v2/a/blobs/{digest}")
    assert response.status_code == 500
    assert error_codes(response) == ["UNKNOWN"]
    assert "disk on fire" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert "disk on fire" in caplog.text  # logged server-side instead


class _Challenging:
    async def authorize(self, request: Request, needs: list[Access]) -> Principal:
        raise errors.UNAUTHORIZED(
            headers={"WWW-Authenticate": 'Bearer realm="http://auth/token"'},
            detail=[n.scope() for n in needs],
        )

    async def may(self, request: Request, principal: Principal, need: Access) -> bool:
        return False


@pytest.fixture
async def locked_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        app.state.access = _Challenging()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


@pytest.mark.parametrize(
    ("method", "url", "scopes"),
    [
        ("GET", "/v2/", []),
        ("GET", "/v2/a/b/tags/list", ["repository:a/b:pull"]),
        ("PUT", "/v2/a/manifests/t", ["repository:a:pull", "repository:a:push"]),
        ("POST", "/v2/a/blobs/uploads/", ["repository:a:pull", "repository:a:push"]),
        ("DELETE", "/v2/a/manifests/t", ["repository:a:delete"]),
        ("DELETE", f"/v2/a/blobs/{digest_of(b'x')}", ["repository:a:delete"]),
        ("GET", "/v2/_catalog", ["registry:catalog:*"]),
    ],
)
async def test_access_is_checked_with_the_route_needs(
    locked_client: httpx.AsyncClient, method: str, url: str, scopes: list[str]
) -> None:
    response = await locked_client.request(method, url)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="http://auth/token"'
    assert error_codes(response) == ["UNAUTHORIZED"]
    assert response.json()["errors"][0]["detail"] == scopes


async def test_stale_upload_sessions_are_purged_in_the_background() -> None:
    from registry.stores import paths

    backend = MemoryBackend()
    app = create_app(Settings(upload_ttl=60, upload_purge_interval=0.02), backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            stale = (await client.post("/v2/a/blobs/uploads/")).headers["docker-upload-uuid"]
            fresh = (await client.post("/v2/a/blobs/uploads/")).headers["location"]
            state = await app.state.store.uploads.load("a", stale)
            state.updated -= 3600
            await backend.put(paths.upload_state(stale), state.to_json())
            for _ in range(100):
                if not await backend.exists(paths.upload_state(stale)):
                    break
                await asyncio.sleep(0.02)
            assert not await backend.exists(paths.upload_state(stale))
            assert (await client.get(fresh)).status_code == 204
