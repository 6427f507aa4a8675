"""Upload sessions in storage: continuation by another store instance, coalescing under a
minimum part size, the in-stream hash shortcut, size checks and purging."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import pytest

from ocispec.digest import Digest
from registry import errors
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.base import StorageBackend
from storage_backends.memory import MemoryBackend

DATA = bytes(range(256)) * 40  # 10240 bytes


def sha(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


async def body(data: bytes, piece: int = 333) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


async def read_blob(store: RegistryStore, digest: Digest) -> bytes:
    return b"".join([chunk async for chunk in store.blobs.read(digest)])


async def test_another_store_instance_continues_the_session(backend: StorageBackend) -> None:
    first = RegistryStore(backend)
    state = await first.uploads.start("repo")
    await first.uploads.append(state, body(DATA[:4000]), 0, 4000)
    # A restarted server (or another replica) holds nothing in memory: only the storage.
    second = RegistryStore(backend)
    resumed = await second.uploads.load("repo", state.id)
    assert resumed.offset == 4000
    await second.uploads.append(resumed, body(DATA[4000:]), 4000, len(DATA) - 4000)
    digest = await second.uploads.commit(resumed, sha(DATA))
    assert await read_blob(second, digest) == DATA
    assert await second.blobs.is_linked("repo", digest)


@pytest.mark.parametrize(
    "pieces", [[10240], [100, 100, 10040], [3000, 3000, 4240], [1, 1023, 1024, 8192]]
)
async def test_coalescing_with_a_minimum_part_size(pieces: list[int]) -> None:
    backend = MemoryBackend(min_part_size=1024)
    store = RegistryStore(backend, upload_buffer_size=2048)
    state = await store.uploads.start("repo")
    offset = 0
    for size in pieces:
        # A fresh store per request: the tail must come back from storage.
        store = RegistryStore(backend, upload_buffer_size=2048)
        state = await store.uploads.load("repo", state.id)
        state = await store.uploads.append(state, body(DATA[offset : offset + size]), offset, size)
        offset += size
        assert all(p.size >= 1024 for p in state.parts)
        assert all(p.size <= 2048 for p in state.parts)
        tail_size = len(await backend.get(state.tail)) if state.tail else 0
        assert tail_size < 1024
        assert sum(p.size for p in state.parts) + tail_size == offset
    digest = await store.uploads.commit(state, sha(DATA))
    assert await read_blob(store, digest) == DATA


async def test_old_tail_is_removed_when_replaced() -> None:
    backend = MemoryBackend(min_part_size=1024)
    store = RegistryStore(backend, upload_buffer_size=2048)
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, body(DATA[:100]), 0, 100)
    old_tail = state.tail
    assert old_tail is not None
    state = await store.uploads.append(state, body(DATA[100:200]), 100, 100)
    assert state.tail != old_tail
    assert not await backend.exists(old_tail)


class _CountingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.streamed: list[str] = []

    async def stream(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        self.streamed.append(path)
        async for chunk in super().stream(path, offset, length):
            yield chunk


async def test_single_request_upload_is_not_read_back() -> None:
    backend = _CountingBackend()
    store = RegistryStore(backend)
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, body(DATA))
    assert state.hashed is not None and state.hashed.size == len(DATA)
    await store.uploads.commit(state, sha(DATA))
    assert backend.streamed == []


async def test_multi_request_upload_is_verified_by_reading_back() -> None:
    """Requests of one upload that landed in different processes (no running hash kept)."""
    backend = _CountingBackend()
    store = RegistryStore(backend)
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, body(DATA[:10]))
    store = RegistryStore(backend)  # the next request in another worker process
    state = await store.uploads.append(state, body(DATA[10:]))
    with pytest.raises(errors.DIGEST_INVALID):
        await store.uploads.commit(state, sha(DATA + b"x"))
    assert backend.streamed == [paths.upload_data(state.id)]


async def test_wrong_length_is_size_invalid_and_keeps_the_offset(
    registry_store: RegistryStore,
) -> None:
    state = await registry_store.uploads.start("repo")
    with pytest.raises(errors.SIZE_INVALID):
        await registry_store.uploads.append(state, body(DATA[:100]), 0, 200)
    reloaded = await registry_store.uploads.load("repo", state.id)
    assert reloaded.offset == 0
    await registry_store.uploads.append(reloaded, body(DATA), 0, len(DATA))
    assert (
        await read_blob(registry_store, await registry_store.uploads.commit(reloaded, sha(DATA)))
        == DATA
    )


async def test_monolithic_size_mismatch_is_size_invalid(registry_store: RegistryStore) -> None:
    with pytest.raises(errors.SIZE_INVALID):
        await registry_store.uploads.put_monolithic("repo", sha(DATA), body(DATA), len(DATA) + 1)
    assert not await registry_store.blobs.exists(sha(DATA))


async def test_state_file_is_json_in_storage(
    registry_store: RegistryStore, backend: StorageBackend
) -> None:
    state = await registry_store.uploads.start("repo", "sha512")
    raw = json.loads(await backend.get(paths.upload_state(state.id)))
    assert raw["name"] == "repo" and raw["algorithm"] == "sha512" and raw["offset"] == 0


async def test_purge_removes_only_stale_sessions(
    registry_store: RegistryStore, backend: StorageBackend
) -> None:
    uploads = registry_store.uploads
    stale = await uploads.start("repo")
    await uploads.append(stale, body(DATA[:10]))
    fresh = await uploads.start("repo")
    now = fresh.updated
    assert await uploads.purge(older_than=3600, now=now + 10) == 0
    stale_state = await uploads.load("repo", stale.id)
    stale_state.updated = now - 7200
    await backend.put(paths.upload_state(stale.id), stale_state.to_json())
    assert await uploads.purge(older_than=3600, now=now + 10) == 1
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):
        await uploads.load("repo", stale.id)
    assert (await uploads.load("repo", fresh.id)).id == fresh.id
    assert [k async for k in backend.walk(paths.upload_dir(stale.id))] == []


async def test_purge_removes_orphans_without_state(
    registry_store: RegistryStore, backend: StorageBackend
) -> None:
    orphan = paths.upload_data("00000000-0000-4000-8000-000000000000")
    await backend.put(orphan, b"half a monolithic push")
    modified = (await backend.stat(orphan)).modified
    assert await registry_store.uploads.purge(older_than=60, now=modified + 1) == 0
    assert await registry_store.uploads.purge(older_than=60, now=modified + 120) == 1
    assert not await backend.exists(orphan)


async def test_racing_first_chunks_never_publish_unverified_bytes(
    backend: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two PATCHes at offset 0 of one session (an attacker racing itself): B writes part 1 and
    stalls before saving its state; A overwrites part 1 and saves; B saves last. The state now
    holds B's in-stream hash over A's bytes. Committing with B's digest must not publish A's
    bytes as B (the part's ETag no longer matches), whatever else happens."""
    store = RegistryStore(backend)
    a, b = b"A" * 5000, b"B" * 5000
    state = await store.uploads.start("repo")
    # an empty first PATCH opens the backend's upload, so both racers write into the same one
    await store.uploads.append(state, body(b""), 0, 0)
    first = await store.uploads.load("repo", state.id)
    second = await store.uploads.load("repo", state.id)
    real_put = backend.put
    gate = asyncio.Event()

    async def put(path: str, data: bytes) -> None:
        if path == paths.upload_state(state.id) and sha(b).hex.encode() in data:
            await gate.wait()  # B's state write waits until A is done
        await real_put(path, data)

    monkeypatch.setattr(backend, "put", put)
    slow_b = asyncio.create_task(store.uploads.append(second, body(b), 0, len(b)))
    await asyncio.sleep(0.2)
    await store.uploads.append(first, body(a), 0, len(a))
    gate.set()
    await slow_b
    final = await store.uploads.load("repo", state.id)
    if backend.min_part_size > 0:
        # S3: bodies this small are kept as tails under fresh keys, so the last state saved
        # is consistent (B's tail, B's hash) and the commit is right to publish B.
        await store.uploads.commit(final, sha(b))
        assert await read_blob(store, sha(b)) == b
        return
    with pytest.raises(errors.BLOB_UPLOAD_INVALID):  # a 400 for the racing client, not a 500
        await store.uploads.commit(final, sha(b))
    assert not await backend.exists(paths.blob_data(sha(b)))
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):
        await store.uploads.load("repo", state.id)  # the inconsistent session is gone


async def test_racing_first_chunks_of_a_fresh_session_each_get_their_own_upload(
    backend: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend's upload is opened by the first bytes: two PATCHes racing on a fresh
    session open one each, so the state saved last points at its own bytes and its own hash,
    and the commit publishes exactly those."""
    store = RegistryStore(backend)
    a, b = b"A" * 5000, b"B" * 5000
    state = await store.uploads.start("repo")
    assert state.multipart_id == ""
    first = await store.uploads.load("repo", state.id)
    second = await store.uploads.load("repo", state.id)
    real_put = backend.put
    gate = asyncio.Event()

    async def put(path: str, data: bytes) -> None:
        if path == paths.upload_state(state.id) and sha(b).hex.encode() in data:
            await gate.wait()
        await real_put(path, data)

    monkeypatch.setattr(backend, "put", put)
    slow_b = asyncio.create_task(store.uploads.append(second, body(b), 0, len(b)))
    await asyncio.sleep(0.2)
    await store.uploads.append(first, body(a), 0, len(a))
    gate.set()
    await slow_b
    final = await store.uploads.load("repo", state.id)
    assert final.multipart_id not in ("", first.multipart_id)  # B's own upload
    await store.uploads.commit(final, sha(b))
    assert await read_blob(store, sha(b)) == b
    assert not await backend.exists(paths.blob_data(sha(a)))
