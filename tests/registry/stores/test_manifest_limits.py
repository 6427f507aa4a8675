"""Bounded work per manifest PUT: a documented cap on descriptors (refused before any storage
call), reference checks in bounded rounds with bounded concurrency, nothing written for a
refused manifest, and other clients served while a manifest at the cap is checked."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from registry.app import create_app
from registry.settings import Settings
from registry.stores import paths
from registry.stores.manifests import CHECK_BATCH, CHECK_CONCURRENCY, MAX_DESCRIPTORS
from registry.stores.repository import RegistryStore
from storage_backends.memory import MemoryBackend


class Watching(MemoryBackend):
    """Memory storage whose existence checks and writes take a moment (yielding to the loop,
    as real storage does) and are counted, with the most of them in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.writes: list[str] = []
        self.in_flight = 0
        self.peak = 0

    def reset(self) -> None:
        self.calls, self.writes, self.peak = 0, [], 0

    async def _busy(self) -> None:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.001)
        finally:
            self.in_flight -= 1

    async def exists(self, path: str) -> bool:
        await self._busy()
        return await super().exists(path)

    async def put(self, path: str, data: bytes) -> None:
        self.writes.append(path)
        await self._busy()
        await super().put(path, data)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[httpx.AsyncClient, Watching, RegistryStore]]:
    backend = Watching()
    app = create_app(Settings(upload_purge_interval=0), backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            yield client, backend, app.state.store


def _digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def _manifest(digests: list[Digest]) -> bytes:
    def desc(d: Digest, media_type: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": str(d), "size": 1}

    config, *layers = digests
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": desc(config, mt.OCI_CONFIG),
            "layers": [desc(d, mt.OCI_LAYER_GZIP) for d in layers],
        }
    ).encode()


def _blobs(count: int) -> list[bytes]:
    return [f"blob-{i}".encode() for i in range(count)]


async def _put(client: httpx.AsyncClient, name: str, data: bytes) -> httpx.Response:
    headers = {"Content-Type": mt.OCI_MANIFEST}
    return await client.put(f"/v2/{name}/manifests/v1", content=data, headers=headers)


async def test_more_descriptors_than_the_cap_are_refused_before_any_storage_call(
    setup: tuple[httpx.AsyncClient, Watching, RegistryStore],
) -> None:
    client, backend, _ = setup
    data = _manifest([_digest(b) for b in _blobs(MAX_DESCRIPTORS + 1)])
    backend.reset()
    response = await _put(client, "big", data)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "MANIFEST_INVALID"
    assert str(MAX_DESCRIPTORS) in error["message"]
    assert backend.calls == 0 and backend.writes == []


async def test_a_manifest_of_missing_blobs_writes_nothing_and_stops_early(
    setup: tuple[httpx.AsyncClient, Watching, RegistryStore],
) -> None:
    client, backend, _ = setup
    data = _manifest([_digest(b) for b in _blobs(MAX_DESCRIPTORS)])
    backend.reset()
    response = await _put(client, "big", data)
    assert response.status_code == 404, response.text
    assert response.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert backend.writes == []  # no in-use marks, no manifest bytes, no revision
    assert [k async for k in backend.walk("blobs")] == []
    # one round (and the look-up of the manifest's own bytes), not 1024 digests' worth
    assert backend.calls <= 3 * CHECK_BATCH + 1
    assert backend.peak <= CHECK_CONCURRENCY


async def test_a_manifest_at_the_cap_is_checked_with_bounded_concurrency_while_others_answer(
    setup: tuple[httpx.AsyncClient, Watching, RegistryStore],
) -> None:
    client, backend, store = setup
    blobs = _blobs(MAX_DESCRIPTORS)
    digests = [_digest(b) for b in blobs]
    for blob, digest in zip(blobs, digests, strict=True):
        await MemoryBackend.put(backend, paths.blob_data(digest), blob)
        await MemoryBackend.put(backend, paths.layer_link("big", digest), str(digest).encode())
    await store.catalog.mark("big")
    backend.reset()
    big = asyncio.create_task(_put(client, "big", _manifest(digests)))
    # Other clients' requests meanwhile (each needs storage too): all answered while the big
    # manifest is still being checked.
    await asyncio.sleep(0.05)
    assert not big.done()
    small = await asyncio.gather(
        *(client.head(f"/v2/big/blobs/{digests[i]}") for i in range(0, 50, 5))
    )
    assert [r.status_code for r in small] == [200] * 10
    assert not big.done()
    response = await big
    assert response.status_code == 201, response.text
    assert backend.peak <= CHECK_CONCURRENCY + 10  # the big PUT's bound plus the small ones
