"""`GET /v2/_catalog`: pagination and filtering by what the caller may pull."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request

from registry.app import create_app
from registry.auth.base import ANONYMOUS, Access, Principal
from registry.settings import Settings
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import error_codes, push_blob

REPOS = ["zeta", "a/b", "a", "a-b", "a/b/c", "m.n"]


async def _fill(client: httpx.AsyncClient) -> None:
    for repo in REPOS:
        await push_blob(client, repo, repo.encode())


async def test_catalog_lists_repositories_sorted(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/_catalog")).json() == {"repositories": []}
    await _fill(client)
    response = await client.get("/v2/_catalog")
    assert response.status_code == 200
    assert response.json() == {"repositories": sorted(REPOS)}


async def test_catalog_pagination(client: httpx.AsyncClient) -> None:
    await _fill(client)
    seen: list[str] = []
    url = "/v2/_catalog?n=4"
    for _ in range(10):
        response = await client.get(url)
        seen += response.json()["repositories"]
        link = response.headers.get("link")
        if link is None:
            break
        url = link[1 : link.index(">")]
        assert url.startswith("/v2/_catalog?n=4&last=")
    assert seen == sorted(REPOS)


async def test_catalog_invalid_n(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/_catalog?n=x")
    assert response.status_code == 400
    assert error_codes(response) == ["PAGINATION_NUMBER_INVALID"]


class _OnlyPublic:
    async def authorize(self, request: Request, needs: list[Access]) -> Principal:
        return ANONYMOUS

    async def may(self, request: Request, principal: Principal, need: Access) -> bool:
        return need.name.startswith("public")


@pytest.fixture
async def filtered_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            for repo in ("public/one", "private/two", "public/three"):
                await push_blob(c, repo, b"x")
            app.state.access = _OnlyPublic()
            yield c


async def test_catalog_shows_only_pullable_repositories(
    filtered_client: httpx.AsyncClient,
) -> None:
    response = await filtered_client.get("/v2/_catalog")
    assert response.json() == {"repositories": ["public/one", "public/three"]}
