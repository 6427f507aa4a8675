"""Early writeback (storage_backends/fs_writeback.py): streamed writes hand each complete window
to the kernel's writeback as they go (the fsync at the end then waits for the tail), only when
the backend fsyncs, and a filesystem that refuses the call still gets its bytes written.

The real `sync_file_range` runs in every test; a recorder wraps it to see which ranges were
handed over."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from storage_backends import fs_writeback
from storage_backends.filesystem import FilesystemBackend

MiB = 1024 * 1024
WINDOW = fs_writeback.WINDOW

pytestmark = pytest.mark.skipif(
    not fs_writeback.available(), reason="sync_file_range is not in this C library"
)

Calls = list[tuple[int, int]]


@pytest.fixture
def handed() -> Iterator[Calls]:
    """(offset, length) of every range handed to writeback, through the real call."""
    real = fs_writeback._sync_file_range
    assert real is not None
    calls: Calls = []

    def recording(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((offset, length))
        return real(fd, offset, length, flags)

    fs_writeback._sync_file_range = recording
    try:
        yield calls
    finally:
        fs_writeback._sync_file_range = real


async def pieces(size: int, piece: int = MiB) -> AsyncIterator[bytes]:
    for at in range(0, size, piece):
        yield os.urandom(min(piece, size - at))


def assert_windows(calls: Calls, start: int, end: int) -> None:
    """The ranges are back to back from `start`, each at least a window, ending within one
    window of `end` (the tail is left to the fsync)."""
    at = start
    for offset, length in calls:
        assert offset == at and length >= WINDOW
        at += length
    assert end - WINDOW < at <= end


async def test_a_streamed_object_is_handed_to_writeback_window_by_window(
    tmp_path: Path, handed: Calls
) -> None:
    backend = FilesystemBackend(tmp_path)
    size = 3 * WINDOW + 3 * MiB
    assert await backend.put_stream("blobs/x", pieces(size)) == size
    assert_windows(handed, 0, size)
    assert len(handed) == 3
    assert (tmp_path / "blobs/x").stat().st_size == size


async def test_a_part_is_handed_over_from_its_own_offset(tmp_path: Path, handed: Calls) -> None:
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("blobs/y")
    first = await backend.multipart_upload_part("blobs/y", upload, 1, pieces(WINDOW + MiB))
    handed.clear()
    size = 2 * WINDOW + MiB
    second = await backend.multipart_upload_part("blobs/y", upload, 2, pieces(size))
    assert_windows(handed, WINDOW + MiB, WINDOW + MiB + size)
    await backend.multipart_complete("blobs/y", upload, [first, second])
    assert (tmp_path / "blobs/y").stat().st_size == WINDOW + MiB + size


async def test_nothing_is_handed_over_without_fsync(tmp_path: Path, handed: Calls) -> None:
    # storage.fsync false: no fsync at the end to shorten, so no extra I/O is started
    backend = FilesystemBackend(tmp_path, fsync=False)
    await backend.put_stream("blobs/x", pieces(3 * WINDOW))
    upload = await backend.multipart_create("blobs/y")
    await backend.multipart_upload_part("blobs/y", upload, 1, pieces(3 * WINDOW))
    assert handed == []


async def test_a_filesystem_that_refuses_it_still_gets_every_byte(
    tmp_path: Path, handed: Calls
) -> None:
    refused: list[int] = []

    def refusing(fd: int, offset: int, length: int, flags: int) -> int:
        refused.append(offset)
        return -1  # as the C call does for EINVAL

    recording: Callable[[int, int, int, int], int] | None = fs_writeback._sync_file_range
    fs_writeback._sync_file_range = refusing
    try:
        backend = FilesystemBackend(tmp_path)
        size = 4 * WINDOW
        assert await backend.put_stream("blobs/x", pieces(size)) == size
    finally:
        fs_writeback._sync_file_range = recording
    assert refused == [0]  # asked once, then plain writes
    assert (tmp_path / "blobs/x").stat().st_size == size
