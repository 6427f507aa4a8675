"""Storage calls the hot push paths make: a repository's catalog marker is looked up once per
process, a closing PUT that carries the last bytes does not save the session state it is
about to commit (a failed commit leaves the stored state, and the retry works), a body
reaches storage in MiB pieces, hashed on the way, and a manifest PUT is five round trips of
batched operations (eighteen S3 requests)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Sequence

import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from registry import errors
from registry.stores import paths
from registry.stores.repository import RegistryStore
from registry.stores.uploads import PIECE_SIZE
from storage_backends.base import Op, Part, Result
from storage_backends.memory import MemoryBackend
from storage_backends.s3 import S3Backend


class Counting(MemoryBackend):
    """Memory storage recording the keys it was asked about or given."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []
        self.written: list[str] = []

    async def exists(self, path: str) -> bool:
        self.looked_up.append(path)
        return await super().exists(path)

    async def put(self, path: str, data: bytes) -> None:
        self.written.append(path)
        await super().put(path, data)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def test_a_repository_is_marked_in_the_catalog_with_one_look_up_per_process() -> None:
    backend = Counting()
    catalog = RegistryStore(backend).catalog
    await catalog.mark("repo")
    await catalog.mark("repo")
    await catalog.mark("repo")
    marker = paths.catalog_marker("repo")
    assert backend.looked_up.count(marker) == 1
    assert backend.written.count(marker) == 1
    assert await catalog.names() == ["repo"]
    # another process (a fresh store) finds the marker with one look-up and writes nothing
    other = RegistryStore(backend).catalog
    await other.mark("repo")
    assert backend.looked_up.count(marker) == 2 and backend.written.count(marker) == 1


async def test_a_closing_put_with_the_bytes_does_not_save_the_state_it_commits() -> None:
    backend = Counting()
    store = RegistryStore(backend)
    data = b"small blob" * 10
    state = await store.uploads.start("repo")
    saved = backend.written.count(paths.upload_state(state.id))
    state = await store.uploads.append(state, _once(data), None, len(data), save=False)
    assert backend.written.count(paths.upload_state(state.id)) == saved
    await store.uploads.commit(state, _sha(data))
    assert b"".join([c async for c in store.blobs.read(_sha(data))]) == data


async def test_a_failed_commit_after_an_unsaved_append_can_be_retried() -> None:
    backend = MemoryBackend()
    store = RegistryStore(backend)
    data = b"retry me" * 100
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, _once(data), None, len(data), save=False)
    wrong = _sha(b"something else")
    with pytest.raises(errors.RegistryError):  # DIGEST_INVALID: the session goes, as before
        await store.uploads.commit(state, wrong)
    # a client retrying the whole push starts a new session and succeeds
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, _once(data), None, len(data), save=False)
    await store.uploads.commit(state, _sha(data))
    assert await store.blobs.is_linked("repo", _sha(data))


class Pieces(MemoryBackend):
    """Memory storage recording the sizes of the pieces each part arrives in."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[int] = []

    async def multipart_upload_part(
        self,
        path: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        size: int | None = None,
    ) -> Part:
        async def seen() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                self.pieces.append(len(chunk))
                yield chunk

        return await super().multipart_upload_part(path, upload_id, number, seen(), size)


async def test_a_body_reaches_storage_in_mib_pieces_hashed_on_the_way() -> None:
    """uvicorn hands a body over in ~64 KiB pieces; storage gets PIECE_SIZE buffers (each
    hashed in a worker thread while written), and the in-stream hash still matches."""
    backend = Pieces()
    store = RegistryStore(backend)
    data = bytes(range(256)) * (10 * 1024)  # 2.5 MiB
    state = await store.uploads.start("repo")

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    state = await store.uploads.append(state, body(), None, len(data))
    assert backend.pieces == [PIECE_SIZE, PIECE_SIZE, len(data) - 2 * PIECE_SIZE]
    assert state.hashed is not None and state.hashed.hex == hashlib.sha256(data).hexdigest()
    await store.uploads.commit(state, _sha(data))
    assert b"".join([c async for c in store.blobs.read(_sha(data))]) == data


class RoundTrips(MemoryBackend):
    """Memory storage counting round trips (a batch is one) and the operations in them."""

    def __init__(self) -> None:
        super().__init__()
        self.trips: list[str] = []
        self.ops = 0
        self._in_batch = False

    async def batch(self, ops: Sequence[Op]) -> list[Result]:
        self.trips.append(f"batch of {len(ops)}")
        self._in_batch = True
        try:
            return await super().batch(ops)
        finally:
            self._in_batch = False

    def _single(self, name: str) -> None:
        self.ops += 1
        if not self._in_batch:
            self.trips.append(name)

    async def exists(self, path: str) -> bool:
        self._single("exists")
        return await super().exists(path)

    async def get(self, path: str) -> bytes:
        self._single("get")
        return await super().get(path)

    async def put(self, path: str, data: bytes) -> None:
        self._single("put")
        await super().put(path, data)


def _image_manifest(config: bytes, layer: bytes, n: int) -> bytes:
    def desc(data: bytes, media_type: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": str(_sha(data)), "size": len(data)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": desc(config, mt.OCI_CONFIG),
            "layers": [desc(layer, mt.OCI_LAYER_GZIP)],
            "annotations": {"n": str(n)},
        }
    ).encode()


async def _push_blob(store: RegistryStore, data: bytes) -> None:
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, _once(data), None, len(data), save=False)
    await store.uploads.commit(state, _sha(data))


async def test_a_manifest_put_is_five_round_trips() -> None:
    """Config + one layer, by tag: the read-only check (with the look-up of the manifest's
    own bytes), marks + bytes + revision, the re-check + tag marker + old target, the tag,
    the marker and revision re-checks: 5 sequential round trips (were 8 rounds of 18
    separate calls), 18 operations in them, whatever the storage."""
    backend = RoundTrips()
    store = RegistryStore(backend)
    config, layer = b'{"os":"linux"}', b"layer bytes"
    for blob in (config, layer):
        await _push_blob(store, blob)
    await store.manifests.put("repo", "first", _image_manifest(config, layer, 0), mt.OCI_MANIFEST)
    backend.trips, backend.ops = [], 0
    await store.manifests.put("repo", "v1", _image_manifest(config, layer, 1), mt.OCI_MANIFEST)
    assert backend.trips == ["batch of 5", "batch of 5", "batch of 5", "batch of 1", "batch of 2"]
    assert backend.ops == 18
    assert await store.tags.pointing_to("repo", (await store.tags.resolve("repo", "v1"))) == ["v1"]


async def test_a_manifest_put_costs_eighteen_s3_requests(
    counted_s3: tuple[S3Backend, Counter[str]],
) -> None:
    """The same on S3 (moto): one request per operation, none more for the batches."""
    backend, calls = counted_s3
    store = RegistryStore(backend)
    config, layer = b'{"os":"linux"}', b"layer bytes"
    for blob in (config, layer):
        await _push_blob(store, blob)
    await store.manifests.put("repo", "first", _image_manifest(config, layer, 0), mt.OCI_MANIFEST)
    calls.clear()
    await store.manifests.put("repo", "v1", _image_manifest(config, layer, 1), mt.OCI_MANIFEST)
    # HEAD: 2 links + 2 blobs + own bytes, 3 re-checks, marker, revision; PUT: 3 marks,
    # bytes, revision, marker, tag; GET: the tag's old target
    assert calls == Counter({"HeadObject": 10, "PutObject": 7, "GetObject": 1}), calls
