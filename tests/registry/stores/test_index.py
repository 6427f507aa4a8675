"""Tag and catalog indexes: pages come from bounded listings in the spec's byte order, and on S3
a page costs a constant number of requests however many tags there are."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from ocispec.digest import Digest
from registry.app import create_app
from registry.settings import Settings
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.s3 import S3Backend
from tests.registry.stores.conftest import PAGE_SIZE

D = Digest("sha256", "ab" * 32)
TRICKY_TAGS = ["A", "a", "a-b", "a.b", "a0", "a_b", "ab", "b", "v1", "v1.0", "v1-rc", "v10"]
TRICKY_REPOS = ["a", "a-b", "a.b", "a/b", "a/b/c", "a0", "a9", "a_b", "ab", "b"]


async def all_pages(store: RegistryStore, name: str | None, n: int) -> list[str]:
    out: list[str] = []
    last = None
    while True:
        if name is None:
            page = await store.catalog.page(n, last)
        else:
            page = await store.list_tags(name, n, last)
        assert len(page.items) <= n
        out += page.items
        if page.next_last is None:
            return out
        last = page.next_last


async def test_tag_pages_follow_byte_order(registry_store: RegistryStore) -> None:
    for tag in reversed(TRICKY_TAGS):
        await registry_store.tags.set("repo", tag, D)
    await registry_store.catalog.mark("repo")
    expected = sorted(TRICKY_TAGS)
    for n in (1, 2, 5, 100):
        assert await all_pages(registry_store, "repo", n) == expected
    page = await registry_store.list_tags("repo", 3, "a")
    assert page.items == ["a-b", "a.b", "a0"] and page.next_last == "a0"
    assert (await registry_store.list_tags("repo", 3, "zzz")).items == []
    assert (await registry_store.list_tags("repo", 0, None)).next_last is None
    assert (await registry_store.list_tags("repo", None, "v1")).items == ["v1-rc", "v1.0", "v10"]


async def test_catalog_pages_follow_byte_order(registry_store: RegistryStore) -> None:
    for name in reversed(TRICKY_REPOS):
        await registry_store.catalog.mark(name)
    expected = sorted(TRICKY_REPOS)
    for n in (1, 3, 100):
        assert await all_pages(registry_store, None, n) == expected
    # `last` need not be a repository, nor even made of name characters.
    assert (await registry_store.catalog.page(2, "a/")).items == ["a/b", "a/b/c"]
    assert (await registry_store.catalog.page(2, "a:")).items == ["a_b", "ab"]
    assert (await registry_store.catalog.page(None, "a9")).items == ["a_b", "ab", "b"]
    for odd in ("\x00", "a\uffff", "a" * 2000):
        page = await asyncio.wait_for(registry_store.catalog.page(2, odd), timeout=10)
        assert page.items == [n for n in expected if n > odd][:2], odd


async def test_catalog_page_skips_invisible_repositories(registry_store: RegistryStore) -> None:
    for i in range(250):
        await registry_store.catalog.mark(f"r{i:03d}")

    async def even(name: str) -> bool:
        return int(name[1:]) % 2 == 0

    page = await registry_store.catalog.page(100, None, even)
    assert page.items == [f"r{i:03d}" for i in range(0, 200, 2)]
    rest = await registry_store.catalog.page(100, page.next_last, even)
    assert rest.items == [f"r{i:03d}" for i in range(200, 250, 2)] and rest.next_last is None


# -- request counting on S3 ------------------------------------------------------------------

TAGS = 2000


@pytest.mark.slow
async def test_a_page_of_tags_on_s3_costs_constant_requests(
    counted_s3: tuple[S3Backend, Counter[str]],
) -> None:
    backend, calls = counted_s3
    store = RegistryStore(backend)
    tags = [f"t{i:05d}" for i in range(TAGS)]
    for start in range(0, TAGS, 100):
        batch = tags[start : start + 100]  # tag links only: one request each, as listed
        await asyncio.gather(
            *(backend.put(paths.tag_link("big", t), str(D).encode()) for t in batch)
        )
    await store.catalog.mark("big")

    app = create_app(Settings(upload_purge_interval=0), backend=backend)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://r") as client,
    ):
        for last in (None, "t01000", "t01950"):
            calls.clear()
            params = {"n": "100"} if last is None else {"n": "100", "last": last}
            response = await client.get("/v2/big/tags/list", params=params)
            assert response.status_code == 200
            begin = 0 if last is None else tags.index(last) + 1
            assert response.json()["tags"] == tags[begin : begin + 100]
            # One listing for the page, one existence check of the repository.
            assert calls["ListObjectsV2"] == 1, calls
            assert sum(calls.values()) <= 2, calls

        calls.clear()
        response = await client.get("/v2/_catalog", params={"n": "10"})
        assert response.json()["repositories"] == ["big"]
        assert sum(calls.values()) == 1, calls

        # The contrast: the whole list walks every key, TAGS / PAGE_SIZE requests.
        calls.clear()
        assert len((await client.get("/v2/big/tags/list")).json()["tags"]) == TAGS
        assert calls["ListObjectsV2"] >= TAGS // PAGE_SIZE


@pytest.mark.parametrize("last", ["\x00", "a\x01", "v1\uffff", "a~", "a" * 300, "a b"])
async def test_tag_page_after_a_last_that_is_no_tag(
    registry_store: RegistryStore, last: str
) -> None:
    """`last` comes from the query string. Used as S3's StartAfter, control characters and
    U+FFFF got errors botocore retried for ~25 s, then a 500."""
    for tag in TRICKY_TAGS:
        await registry_store.tags.set("repo", tag, D)
    await registry_store.catalog.mark("repo")
    expected = sorted(t for t in TRICKY_TAGS if t > last)
    page = await asyncio.wait_for(registry_store.list_tags("repo", 3, last), timeout=10)
    assert page.items == expected[:3]
    assert page.next_last == (expected[2] if len(expected) > 3 else None)
