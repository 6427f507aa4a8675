"""The reverse tag index: deleting a manifest by digest finds its tags from the digest's
markers (one listing), re-checks each tag, and never reads the repository's other tags."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from ocispec.digest import Digest
from registry import errors
from registry.app import create_app
from registry.settings import Settings
from registry.stores import paths
from registry.stores.repository import RegistryStore
from registry.stores.tags import TagStore
from storage_backends.base import StorageBackend
from storage_backends.memory import MemoryBackend
from storage_backends.s3 import S3Backend
from tests.registry.helpers import digest_of, push_image, put_manifest

D1 = Digest("sha256", "1" * 64)
D2 = Digest("sha256", "2" * 64)


async def markers(backend: StorageBackend, name: str, digest: Digest) -> list[str]:
    return [k.rsplit("/", 1)[1] async for k in backend.walk(paths.tag_markers_dir(name, digest))]


async def test_set_writes_a_marker_and_a_move_drops_the_old_one(
    registry_store: RegistryStore,
) -> None:
    tags, backend = registry_store.tags, registry_store.backend
    await tags.set("r", "t", D1)
    assert await markers(backend, "r", D1) == ["t"]
    await tags.set("r", "t", D2)
    assert await markers(backend, "r", D1) == []
    assert await markers(backend, "r", D2) == ["t"]
    await tags.set("r", "t", D2)  # re-set to the same digest keeps its marker
    assert await markers(backend, "r", D2) == ["t"]
    await tags.delete("r", "t")
    assert await markers(backend, "r", D2) == []
    with pytest.raises(errors.RegistryError, match="manifest unknown"):
        await tags.delete("r", "t")


async def test_untag_removes_exactly_the_tags_pointing_to_the_digest(
    registry_store: RegistryStore,
) -> None:
    tags, backend = registry_store.tags, registry_store.backend
    for tag, digest in [("a", D1), ("b", D1), ("c", D2), ("moved", D1)]:
        await tags.set("r", tag, digest)
    await tags.set("r", "moved", D2)
    # A crash after the forward write and before the old marker's drop: a stale marker.
    await tags.set("r", "stale", D1)
    await backend.put(paths.tag_link("r", "stale"), str(D2).encode())
    await backend.put(paths.tag_index_flag("r"), b"")

    assert await tags.pointing_to("r", D1) == ["a", "b"]
    assert await tags.untag("r", D1) == ["a", "b"]
    assert await tags.names("r") == ["c", "moved", "stale"]
    assert all([await tags.resolve("r", t) == D2 for t in ("c", "moved", "stale")])
    assert await markers(backend, "r", D1) == []
    assert sorted(await markers(backend, "r", D2)) == ["c", "moved"]


async def test_a_repository_tagged_before_the_index_is_scanned_once(
    registry_store: RegistryStore,
) -> None:
    tags, backend = registry_store.tags, registry_store.backend
    for tag, digest in [("a", D1), ("b", D2), ("c", D1)]:  # as the old code wrote them
        await backend.put(paths.tag_link("old", tag), str(digest).encode())
    assert not await backend.exists(paths.tag_index_flag("old"))
    assert await tags.pointing_to("old", D1) == ["a", "c"]
    assert await backend.exists(paths.tag_index_flag("old"))
    assert await markers(backend, "old", D2) == ["b"]
    assert await tags.untag("old", D2) == ["b"]
    assert await tags.names("old") == ["a", "c"]


class Interleave(MemoryBackend):
    """A memory backend that runs `hook` just after a write or delete of one key, standing
    in for another replica acting at that instant."""

    def __init__(self) -> None:
        super().__init__()
        self.after: dict[str, list[tuple[str, bytes | None]]] = {}

    async def _then(self, path: str) -> None:
        for key, value in self.after.pop(path, []):
            await (super().delete(key) if value is None else super().put(key, value))

    async def put(self, path: str, data: bytes) -> None:
        await super().put(path, data)
        await self._then(path)

    async def delete(self, path: str) -> None:
        await super().delete(path)
        await self._then(path)


async def test_a_marker_dropped_by_a_concurrent_move_is_restored_by_the_writer() -> None:
    backend = Interleave()
    tags = TagStore(backend)
    marker = paths.tag_marker("r", D1, "t")
    # Another replica, moving `t` away from D1 a moment ago, drops D1's marker right after
    # our marker write (its re-read of `t` came before our forward write).
    backend.after[marker] = [(marker, None)]
    await tags.set("r", "t", D1)
    assert await backend.exists(marker)


async def test_a_dropped_marker_comes_back_when_the_tag_was_set_again() -> None:
    backend = Interleave()
    tags = TagStore(backend)
    await tags.set("r", "t", D1)
    await tags.set("r", "u", D2)
    # While we move `t` to D2, another replica sets it back to D1 (marker, then forward
    # tag, both done before we drop D1's marker).
    link = paths.tag_link("r", "t")
    backend.after[link] = [(link, str(D1).encode())]
    await tags.set("r", "t", D2)
    assert await tags.resolve("r", "t") == D1
    assert await markers(backend, "r", D1) == ["t"]


async def test_delete_by_digest_over_the_api(
    client: httpx.AsyncClient, registry_store: RegistryStore
) -> None:
    one, _ = await push_image(client, "app", [b"one"])
    two, _ = await push_image(client, "app", [b"two"])
    for tag, data in [("a", one), ("b", one), ("c", two), ("moved", one), ("moved", two)]:
        assert (await put_manifest(client, "app", tag, data)).status_code == 201
    response = await client.delete(f"/v2/app/manifests/{digest_of(one)}")
    assert response.status_code == 202
    listed = await client.get("/v2/app/tags/list")
    assert listed.json()["tags"] == ["c", "moved"]
    for tag in ("a", "b"):
        assert (await client.get(f"/v2/app/manifests/{tag}")).status_code == 404
    assert (await client.get("/v2/app/manifests/moved")).content == two
    assert await markers(registry_store.backend, "app", Digest.parse(digest_of(one))) == []


TAGS = 1000


@pytest.mark.slow
async def test_delete_by_digest_on_s3_costs_constant_requests(
    counted_s3: tuple[S3Backend, Counter[str]],
) -> None:
    backend, calls = counted_s3
    app = create_app(Settings(upload_purge_interval=0), backend=backend)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://r") as client,
    ):
        target, _ = await push_image(client, "big", [b"target"])
        other, _ = await push_image(client, "big", [b"other"])
        for tag, data in [("x", target), ("y", target), ("keep", other)]:
            assert (await put_manifest(client, "big", tag, data)).status_code == 201
        # The repository's first delete by digest scans its (three) tags once and flags it.
        warm, _ = await push_image(client, "big", [b"warm"])
        assert (await put_manifest(client, "big", "w", warm)).status_code == 201
        assert (await client.delete(f"/v2/big/manifests/{digest_of(warm)}")).status_code == 202
        assert await backend.exists(paths.tag_index_flag("big"))
        # The other tags point elsewhere; written directly (their markers are not under the
        # target's digest either way) to keep the set-up to one request per tag.
        link = str(Digest.parse(digest_of(other))).encode()
        names = [f"t{i:05d}" for i in range(TAGS)]
        for start in range(0, TAGS, 100):
            batch = names[start : start + 100]
            await asyncio.gather(*(backend.put(paths.tag_link("big", t), link) for t in batch))

        calls.clear()
        response = await client.delete(f"/v2/big/manifests/{digest_of(target)}")
        assert response.status_code == 202
        # No walk of the tags (TAGS / PAGE_SIZE lists) nor a read per tag: a few requests
        # for the manifest, one listing of its markers, and a few per tag of it.
        assert calls["ListObjectsV2"] <= 2, calls
        assert sum(calls.values()) <= 20, calls
        assert (await client.get("/v2/big/manifests/x")).status_code == 404
        assert (await client.get("/v2/big/manifests/keep")).status_code == 200
        assert len((await client.get("/v2/big/tags/list")).json()["tags"]) == TAGS + 1
