"""The Redis blob-descriptor cache against a real redis-server: hits save storage round trips,
deleted blobs never come back from it (blob DELETE, GC), Redis down changes nothing but speed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ocispec.digest import Digest
from registry.app import create_app
from registry.gc import GarbageCollector
from registry.settings import Settings
from registry.shared import open_redis
from registry.shared.blobcache import RedisBlobCache
from registry.stores import paths
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import push_blob
from tests.registry.test_gc import age_everything
from tests.support.redis_server import RedisServer, redis_server, redis_url  # noqa: F401

REPO = "cache/repo"


async def _client(backend: MemoryBackend, url: str) -> AsyncIterator[httpx.AsyncClient]:
    # A long timeout: on a busy machine a slow answer must not count as "Redis down".
    settings = Settings(redis_url=url, redis_timeout=30, upload_purge_interval=0)
    app = create_app(settings, backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


@pytest.fixture
async def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
async def client(
    backend: MemoryBackend,
    redis_server: RedisServer,  # noqa: F811 (a server of this test's own: a clean cache)
) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(backend, redis_server.url):
        yield c


async def test_a_hit_needs_no_storage(client: httpx.AsyncClient, backend: MemoryBackend) -> None:
    digest = await push_blob(client, REPO, b"cached bytes")
    assert (await client.head(f"/v2/{REPO}/blobs/{digest}")).status_code == 200  # fills
    # Take the link away behind the store's back: only a cache hit still answers.
    await backend.delete(paths.layer_link(REPO, Digest.parse(digest)))
    hit = await client.head(f"/v2/{REPO}/blobs/{digest}")
    assert hit.status_code == 200
    assert hit.headers["content-length"] == str(len(b"cached bytes"))
    # Other repositories are not served from this repository's entry.
    assert (await client.head(f"/v2/other/repo/blobs/{digest}")).status_code == 404


async def test_blob_delete_is_not_undone_by_the_cache(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, REPO, b"soon gone")
    assert (await client.head(f"/v2/{REPO}/blobs/{digest}")).status_code == 200
    assert (await client.delete(f"/v2/{REPO}/blobs/{digest}")).status_code == 202
    assert (await client.head(f"/v2/{REPO}/blobs/{digest}")).status_code == 404


async def test_a_refill_after_forget_is_refused(redis_server: RedisServer) -> None:  # noqa: F811
    # A read that looked at storage before a delete and fills the cache after it.
    cache = RedisBlobCache(open_redis(redis_server.url, timeout=30))
    digest = Digest.parse("sha256:" + "a" * 64)
    try:
        await cache.remember(REPO, digest, 10)
        assert await cache.linked_size(REPO, digest) == 10
        assert await cache.forget(digest)
        await cache.remember(REPO, digest, 10)  # the late refill
        assert await cache.linked_size(REPO, digest) is None
    finally:
        await cache.guard.close()


async def test_gc_takes_blobs_out_of_the_cache(
    client: httpx.AsyncClient,
    backend: MemoryBackend,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    digest = await push_blob(client, REPO, b"orphan")
    assert (await client.head(f"/v2/{REPO}/blobs/{digest}")).status_code == 200  # cached
    age_everything(backend, 7200)
    guard = open_redis(redis_server.url, timeout=30)
    try:
        gc = GarbageCollector(backend, grace=60, blob_cache=RedisBlobCache(guard))
        report = await gc.run()
    finally:
        await guard.close()
    assert str(digest) in {str(d) for d in report.deleted}
    assert (await client.head(f"/v2/{REPO}/blobs/{digest}")).status_code == 404


async def test_gc_keeps_blobs_it_cannot_take_out_of_the_cache(
    client: httpx.AsyncClient,
    backend: MemoryBackend,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    digest = await push_blob(client, REPO, b"orphan while redis is down")
    assert (await client.head(f"/v2/{REPO}/blobs/{digest}")).status_code == 200
    age_everything(backend, 7200)
    guard = open_redis(redis_server.url, timeout=30)
    redis_server.stop()
    try:
        report = await GarbageCollector(backend, grace=60, blob_cache=RedisBlobCache(guard)).run()
    finally:
        await guard.close()
    assert report.deleted == []
    assert await backend.exists(paths.blob_data(Digest.parse(digest)))


async def test_redis_down_changes_nothing_but_speed(
    client: httpx.AsyncClient,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    digest = await push_blob(client, REPO, b"still served")
    redis_server.stop()
    for _ in range(3):
        response = await client.get(f"/v2/{REPO}/blobs/{digest}")
        assert response.status_code == 200
        assert response.content == b"still served"
    pushed = await push_blob(client, REPO, b"pushed while redis is down")
    assert (await client.head(f"/v2/{REPO}/blobs/{pushed}")).status_code == 200
