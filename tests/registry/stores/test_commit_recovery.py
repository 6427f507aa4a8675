"""A commit killed part-way is finished (or cleanly refused) by the retried PUT, on every
backend; and what crashes leave in `_uploads/` is purged by age whatever it holds.

The crash is simulated by running the commit's own steps up to the crash point on the
storage, then handing the session to a fresh store (a restarted server)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocispec.digest import Digest
from registry import errors
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.base import NotFound, StorageBackend
from storage_backends.filesystem import FilesystemBackend
from storage_backends.s3 import S3Backend

DATA = bytes(range(256)) * 40  # 10240 bytes: a part and (with a minimum part size) a tail


def sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _session_with_data(backend: StorageBackend) -> tuple[RegistryStore, str]:
    store = RegistryStore(backend, upload_buffer_size=4096)
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, body(DATA[:6000]), 0, 6000)
    state = await store.uploads.append(state, body(DATA[6000:]), 6000, len(DATA) - 6000)
    return store, state.id


async def _join_like_commit(backend: StorageBackend, store: RegistryStore, upload_id: str) -> None:
    """The commit's steps up to and including the join of the parts, then the "kill"."""
    state = await store.uploads.load("repo", upload_id)
    await store.uploads._join(state, paths.upload_data(upload_id))
    assert await backend.exists(paths.upload_data(upload_id))


async def test_a_commit_killed_after_the_join_is_finished_by_the_retry(
    backend: StorageBackend,
) -> None:
    store, upload_id = await _session_with_data(backend)
    await _join_like_commit(backend, store, upload_id)
    # A restarted server: nothing in memory, the session as the crash left it.
    fresh = RegistryStore(backend, upload_buffer_size=4096)
    state = await fresh.uploads.load("repo", upload_id)
    digest = await fresh.uploads.commit(state, sha(DATA))
    assert b"".join([c async for c in fresh.blobs.read(digest)]) == DATA
    assert await fresh.blobs.is_linked("repo", digest)
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):
        await fresh.uploads.load("repo", upload_id)
    # and a second retry (the client did not see the first answer) is a clean 404
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):
        await fresh.uploads.commit(state, sha(DATA))


async def test_a_commit_killed_after_publishing_answers_upload_unknown(
    backend: StorageBackend,
) -> None:
    store, upload_id = await _session_with_data(backend)
    await _join_like_commit(backend, store, upload_id)
    await store.uploads._publish(paths.upload_data(upload_id), sha(DATA))  # then the kill
    fresh = RegistryStore(backend, upload_buffer_size=4096)
    state = await fresh.uploads.load("repo", upload_id)
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):
        await fresh.uploads.commit(state, sha(DATA))
    # the session is gone (no 500 loop, nothing left for the TTL), the blob is intact
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):
        await fresh.uploads.load("repo", upload_id)
    assert b"".join([c async for c in fresh.blobs.read(sha(DATA))]) == DATA


async def test_a_session_left_by_a_crash_at_start_is_purged_by_age(
    backend: StorageBackend,
) -> None:
    """Killed inside start(): the multipart upload exists, the state was never written (on
    the filesystem a `.tmp.*` of it is all the session directory holds)."""
    upload_id = "8c4c3f3a-0b7c-4a53-9d59-3d0d5d3e8a11"
    multipart = await backend.multipart_create(paths.upload_data(upload_id))
    if isinstance(backend, FilesystemBackend):
        session = backend.root / paths.upload_dir(upload_id)
        session.mkdir(parents=True)
        (session / ".tmp.0123abcd").write_bytes(b'{"id": "half a state')
    store = RegistryStore(backend)
    if not isinstance(backend, S3Backend):  # moto dates every multipart upload 2010-11-10
        # fresh leftovers may be a start still running: kept
        await store.uploads.purge(older_than=3600)
        assert await backend.multipart_list_parts(paths.upload_data(upload_id), multipart) == []
    # a day later they go, whatever the directory holds
    assert await store.uploads.purge(older_than=3600, now=time.time() + 2 * 86400) >= 1
    with pytest.raises(NotFound):
        await backend.multipart_list_parts(paths.upload_data(upload_id), multipart)
    if isinstance(backend, FilesystemBackend):
        assert not (backend.root / paths.upload_dir(upload_id)).exists()
        assert not (backend.root / ".multipart" / multipart).exists()


async def test_stray_temp_files_anywhere_are_swept_by_age(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path / "storage")
    await backend.open()
    await backend.put("blobs/sha256/ab/abcd/data", b"content")
    old = backend.root / "blobs/sha256/ab/abcd/.tmp.dead"
    old.write_bytes(b"a write that crashed")
    young = backend.root / "blobs/sha256/ab/abcd/.tmp.live"
    young.write_bytes(b"a write in progress")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert await backend.sweep_leftovers("", older_than=3600) == 1
    assert not old.exists() and young.exists()
    assert await backend.get("blobs/sha256/ab/abcd/data") == b"content"


async def test_renames_fsync_their_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename is durable only once its directory is fsync'd: every publish does that."""
    backend = FilesystemBackend(tmp_path / "storage")
    await backend.open()
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isdir(target):
            synced.append(os.path.relpath(target, backend.root))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    await backend.put("a/b/link", b"x")
    assert "a/b" in synced
    await backend.put_stream("c/data", body(b"y" * 10))
    assert "c" in synced
    await backend.move("c/data", "d/data")
    assert "d" in synced
    upload = await backend.multipart_create("e/data")
    part = await backend.multipart_upload_part("e/data", upload, 1, body(b"z"))
    await backend.multipart_complete("e/data", upload, [part])
    assert "e" in synced


async def test_pyreg_gc_sweeps_what_a_crash_at_start_left(tmp_path: Path) -> None:
    """The same leftovers through `pyreg gc`'s collector: a session directory holding only an
    old `.tmp.*`, its orphaned `.multipart/` session, and a stray temp file elsewhere."""
    from registry.gc import GarbageCollector

    backend = FilesystemBackend(tmp_path / "storage")
    await backend.open()
    upload_id = "8c4c3f3a-0b7c-4a53-9d59-3d0d5d3e8a11"
    multipart = await backend.multipart_create(paths.upload_data(upload_id))
    session = backend.root / paths.upload_dir(upload_id)
    session.mkdir(parents=True)
    leftovers = [
        session / ".tmp.0123abcd",
        backend.root / "repositories" / "app" / ".tmp.feed",
        *(backend.root / ".multipart" / multipart).rglob("*"),
        backend.root / ".multipart" / multipart,
    ]
    for path in leftovers[:2]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
    past = time.time() - 7200
    for path in leftovers:
        os.utime(path, (past, past))
    report = await GarbageCollector(backend, upload_ttl=3600).run()
    assert report.uploads_purged + report.leftovers_swept >= 3
    assert not any(path.exists() for path in leftovers)
    assert not session.exists()
