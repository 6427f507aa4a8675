"""Background flushes (storage_backends/fs_writeback.py): streamed writes have each complete
window flushed by a thread of its own while they go on (the fsync at the end then waits for
the tail), only when the backend fsyncs, on a descriptor of the flush's own.

The real `fdatasync` runs in every test; a recorder wraps the flush to see what it flushed."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage_backends import fs_writeback
from storage_backends.base import StorageFull
from storage_backends.filesystem import FilesystemBackend

MiB = 1024 * 1024
WINDOW = fs_writeback.WINDOW


class Flushes:
    def __init__(self) -> None:
        self.sizes: list[int] = []  # the file's size when each flush ran
        self.threads: set[int] = set()
        self.done = threading.Event()


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> Flushes:
    real = fs_writeback._flush
    seen = Flushes()

    def recording(fd: int) -> None:
        seen.sizes.append(os.fstat(fd).st_size)
        seen.threads.add(threading.get_ident())
        real(fd)
        seen.done.set()

    monkeypatch.setattr(fs_writeback, "_flush", recording)
    return seen


async def pieces(size: int, piece: int = MiB) -> AsyncIterator[bytes]:
    for at in range(0, size, piece):
        yield os.urandom(min(piece, size - at))


async def test_a_streamed_object_is_flushed_while_it_is_written(
    tmp_path: Path, flushes: Flushes
) -> None:
    backend = FilesystemBackend(tmp_path)
    size = 3 * WINDOW + 3 * MiB
    assert await backend.put_stream("blobs/x", pieces(size)) == size
    assert flushes.done.wait(10)
    # at least one flush ran mid-stream, none before a window was complete
    assert flushes.sizes and all(WINDOW <= s < size for s in flushes.sizes), flushes.sizes
    assert threading.get_ident() not in flushes.threads  # never the loop's thread
    assert (tmp_path / "blobs/x").stat().st_size == size


async def test_a_part_is_flushed_from_its_own_offset(tmp_path: Path, flushes: Flushes) -> None:
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("blobs/y")
    first = await backend.multipart_upload_part("blobs/y", upload, 1, pieces(WINDOW - MiB))
    assert flushes.sizes == []  # less than a window: the part's own fsync is enough
    size = 2 * WINDOW
    second = await backend.multipart_upload_part("blobs/y", upload, 2, pieces(size))
    assert flushes.done.wait(10)
    assert flushes.sizes and all(s >= 2 * WINDOW - MiB for s in flushes.sizes), flushes.sizes
    await backend.multipart_complete("blobs/y", upload, [first, second])
    assert (tmp_path / "blobs/y").stat().st_size == WINDOW - MiB + size


async def test_nothing_is_flushed_without_fsync(tmp_path: Path, flushes: Flushes) -> None:
    # storage.fsync false: no fsync at the end to shorten, so no extra flush either
    backend = FilesystemBackend(tmp_path, fsync=False)
    await backend.put_stream("blobs/x", pieces(3 * WINDOW))
    upload = await backend.multipart_create("blobs/y")
    await backend.multipart_upload_part("blobs/y", upload, 1, pieces(3 * WINDOW))
    assert flushes.sizes == []


def test_one_flush_at_a_time_on_a_descriptor_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    started: list[int] = []
    real = fs_writeback._flush

    def slow(fd: int) -> None:
        started.append(fd)
        release.wait(10)
        real(fd)

    monkeypatch.setattr(fs_writeback, "_flush", slow)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        wb = fs_writeback.Writeback(fd)
        wb.written(WINDOW)
        wb.written(3 * WINDOW)  # the first flush still runs: no second one
        assert wb.flushes == 1 and len(started) == 1 and started[0] != fd
        os.close(fd)  # the writer may close its own descriptor meanwhile
        fd = -1
        release.set()
    finally:
        release.set()
        if fd >= 0:
            os.close(fd)


async def test_an_error_a_flush_met_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel reports a write-back error once per open file, and the flush shares the
    writer's: without handing it over, the writer's own fsync could succeed after a flush
    saw the disk fill up, and a blob that never reached the disk would be acknowledged."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs_writeback, "_flush", full)
    backend = FilesystemBackend(tmp_path)
    with pytest.raises(StorageFull):
        await backend.put_stream("blobs/x", pieces(2 * WINDOW))
    upload = await backend.multipart_create("blobs/y")
    with pytest.raises(StorageFull):
        await backend.multipart_upload_part("blobs/y", upload, 1, pieces(2 * WINDOW))
    monkeypatch.undo()
    assert not (tmp_path / "blobs/x").exists()
    assert await backend.multipart_list_parts("blobs/y", upload) == []
