"""Storage calls the hot push paths make: a repository's catalog marker is looked up once per
process, a closing PUT that carries the last bytes does not save the session state it is
about to commit (a failed commit leaves the stored state, and the retry works), a body
reaches storage in MiB pieces, hashed on the way, and a manifest PUT is five round trips of
batched operations (eighteen S3 requests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from registry import errors
from registry.app import create_app
from registry.observe.storage import InstrumentedBackend
from registry.settings import Settings
from registry.stores import paths
from registry.stores.repository import RegistryStore
from registry.stores.uploads import PIECE_SIZE
from storage_backends.base import Op, Part, Result
from storage_backends.filesystem import FilesystemBackend
from storage_backends.memory import MemoryBackend
from storage_backends.s3 import S3Backend
from tests.support.moto_server import moto_endpoint  # noqa: F401


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


class Calls(MemoryBackend):
    """Memory storage counting the storage calls made from outside (not the memory backend's
    own calls to itself, such as `move` reading and writing)."""

    _COUNTED = (
        "get", "put", "put_stream", "exists", "stat", "move", "delete", "delete_prefix",
        "multipart_create", "multipart_upload_part", "multipart_complete", "multipart_abort",
        "multipart_list_parts",
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self._depth = 0
        for name in self._COUNTED:
            setattr(self, name, self._counted(name, getattr(self, name)))

    def _counted(self, name: str, method: Callable[..., Awaitable[object]]) -> object:
        async def call(*args: object, **kwargs: object) -> object:
            if self._depth == 0:
                self.calls.append(name)
            self._depth += 1
            try:
                return await method(*args, **kwargs)
            finally:
                self._depth -= 1

        return call


async def test_a_small_blob_push_is_a_state_write_and_a_streamed_put_without_multipart() -> None:
    """POST + a closing PUT with the whole body: the session state, one load, the data's
    stream, then touch, exists, move, link, clean-up. No multipart upload is opened, joined
    or aborted (each a storage round trip: 5 of the old 14 calls)."""
    backend = Calls()
    app = create_app(Settings(), backend=backend)
    data = b"a small config blob" * 50
    digest = _sha(data)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            await client.post("/v2/warm/blobs/uploads/")  # catalog marker look-ups of startup
            backend.calls.clear()
            location = (await client.post("/v2/repo/blobs/uploads/")).headers["location"]
            put = await client.put(f"{location}?digest={digest}", content=data)
            assert put.status_code == 201, put.text
            pushed = list(backend.calls)
            pulled = await client.get(f"/v2/repo/blobs/{digest}")
            assert pulled.content == data
    assert not [c for c in pushed if c.startswith("multipart_")], pushed
    # state put; state get; then in one storage plan: touch put, exists, the bytes' put, link put,
    # the session's removal; the new repository's catalog marker (look-up, write: once per
    # process). It was 10, with a streamed put to the session and a move.
    assert pushed == [
        "put", "get", "put", "exists", "put", "put", "delete_prefix", "exists", "put"
    ], pushed  # fmt: skip


async def test_a_whole_body_put_with_a_wrong_digest_publishes_nothing() -> None:
    backend = MemoryBackend()
    store = RegistryStore(backend)
    data = b"not what the digest says" * 10
    state = await store.uploads.start("repo")
    with pytest.raises(errors.RegistryError) as refused:
        await store.uploads.commit_whole(state, _sha(b"other"), _once(data), None, len(data))
    assert refused.value.code == "DIGEST_INVALID"
    assert not await backend.exists(paths.blob_data(_sha(data)))
    assert not await backend.exists(paths.blob_data(_sha(b"other")))
    assert [k async for k in backend.walk(paths.UPLOADS)] == []


async def test_a_whole_body_put_with_a_short_body_keeps_the_session_for_a_retry() -> None:
    backend = MemoryBackend()
    store = RegistryStore(backend)
    data = b"twelve bytes"
    state = await store.uploads.start("repo")
    with pytest.raises(errors.RegistryError) as refused:
        await store.uploads.commit_whole(state, _sha(data), _once(data[:5]), None, len(data))
    assert refused.value.code == "SIZE_INVALID"
    again = await store.uploads.load("repo", state.id)
    await store.uploads.commit_whole(again, _sha(data), _once(data), None, len(data))
    assert b"".join([c async for c in store.blobs.read(_sha(data))]) == data


async def test_a_commit_after_a_whole_body_put_died_before_publishing_finishes_it() -> None:
    """Crash safety: the data reached the session's data key, the server died before the
    move; the client's retried PUT (without a body) finds it, re-hashes it and publishes."""
    backend = MemoryBackend()
    store = RegistryStore(backend)
    data = b"half-committed" * 20
    state = await store.uploads.start("repo")
    await backend.put(paths.upload_data(state.id), data)  # what the dead PUT had written
    state = await store.uploads.load("repo", state.id)
    await store.uploads.commit(state, _sha(data))
    assert await store.blobs.is_linked("repo", _sha(data))
    assert b"".join([c async for c in store.blobs.read(_sha(data))]) == data


class Reads(MemoryBackend):
    """Memory storage recording the keys streamed back."""

    def __init__(self) -> None:
        super().__init__()
        self.streamed: list[str] = []

    def stream(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        self.streamed.append(path)
        return super().stream(path, offset, length)


async def test_a_chunked_upload_in_one_process_is_hashed_in_stream_not_read_back() -> None:
    """Each PATCH goes on with the hash of the bytes before it (kept per process), so the
    commit of a multi-PATCH upload does not read the assembled blob back to hash it."""
    backend = Reads()
    store = RegistryStore(backend)
    parts = [b"first " * 100, b"second " * 100, b"third " * 100]
    data = b"".join(parts)
    state = await store.uploads.start("repo")
    for part in parts[:-1]:
        state = await store.uploads.append(state, _once(part), state.offset, len(part))
        state = await store.uploads.load("repo", state.id)  # as the next request does
    state = await store.uploads.append(
        state, _once(parts[-1]), state.offset, len(parts[-1]), save=False
    )
    await store.uploads.commit(state, _sha(data))
    assert paths.upload_data(state.id) not in backend.streamed
    assert b"".join([c async for c in store.blobs.read(_sha(data))]) == data


async def test_a_kept_hash_of_other_bytes_than_the_state_vouches_for_is_not_used() -> None:
    """Another process's request replaced the session's bytes (and state) at the same offset:
    the hash this process kept is of other bytes, so it is dropped and the commit hashes what
    is stored; the digest of the replaced bytes is refused."""
    backend = Reads()
    store = RegistryStore(backend)
    other = RegistryStore(backend)  # another worker process on the same storage
    x, y, z = b"X" * 500, b"Y" * 500, b"Z" * 500
    state = await store.uploads.start("repo")
    await store.uploads.append(state, _once(x), 0, len(x))  # keeps H(X) in `store`
    racing = await other.uploads.load("repo", state.id)
    racing.offset, racing.parts, racing.hashed = 0, [], None
    await other.uploads.append(racing, _once(y), 0, len(y))  # part 1 and the state: Y
    state = await store.uploads.load("repo", state.id)
    state = await store.uploads.append(state, _once(z), len(y), len(z), save=False)
    with pytest.raises(errors.RegistryError) as refused:
        await store.uploads.commit(state, _sha(x + z))
    assert refused.value.code == "DIGEST_INVALID"
    assert paths.upload_data(state.id) in backend.streamed  # hashed from storage
    assert not await backend.exists(paths.blob_data(_sha(x + z)))


async def test_a_small_blob_push_on_s3_opens_no_multipart_upload(
    counted_s3: tuple[S3Backend, Counter[str]],
) -> None:
    backend, calls = counted_s3
    store = RegistryStore(backend)
    data = b"a small config blob on s3" * 40
    await store.catalog.mark("repo")  # the catalog marker: once per process, not counted
    calls.clear()
    state = await store.uploads.start("repo")
    state = await store.uploads.load("repo", state.id)
    await store.uploads.commit_whole(state, _sha(data), _once(data), None, len(data))
    assert not {op for op in calls if "Multipart" in op or op in ("UploadPart", "ListParts")}
    # state put; state get; touch; head; the data's PutObject; link; list + delete (clean-up).
    # It was 11 (the data to the session, then copy + delete to move it), and before that
    # 17: the multipart's create, part, list and complete, a tail written and read back
    assert sum(calls.values()) <= 8, calls
    assert "CopyObject" not in calls, calls
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


class FsHops(FilesystemBackend):
    """The filesystem, counting calls handed to its worker threads and other thread hops."""

    hops: list[str]

    def _run(self, call: Callable[..., Any], *args: Any) -> Any:
        self.hops.append(getattr(call, "__name__", "call"))
        return super()._run(call, *args)


async def test_a_manifest_put_on_the_filesystem_is_one_thread_hop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its five rounds run as one plan (`StorageBackend.rounds`) in one worker thread, also
    through the metrics wrapper the app puts around storage (it was one hop per round)."""
    fs = FsHops(tmp_path / "storage")
    fs.hops = []
    await fs.open()
    store = RegistryStore(InstrumentedBackend(fs))
    config, layer = b'{"os":"linux"}', b"layer bytes"
    for blob in (config, layer):
        await _push_blob(store, blob)
    await store.manifests.put("repo", "first", _image_manifest(config, layer, 0), mt.OCI_MANIFEST)
    fs.hops = []
    other_threads: list[object] = []
    real_to_thread = asyncio.to_thread

    async def to_thread(call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        other_threads.append(call)
        return await real_to_thread(call, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    await store.manifests.put("repo", "v1", _image_manifest(config, layer, 1), mt.OCI_MANIFEST)
    assert fs.hops == ["_rounds_sync"] and other_threads == []
    digest = await store.tags.resolve("repo", "v1")
    assert await store.tags.pointing_to("repo", digest) == ["v1"]
    assert (await store.manifests.get("repo", "v1")).digest == digest
    await fs.close()


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
