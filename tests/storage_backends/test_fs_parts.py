"""The filesystem's multipart parts written in place (storage_backends/fs_parts.py): completing
parts written in order is a rename, a writer killed mid-part loses nothing acknowledged and
the retry resumes, one writer at a time, the layout before this one still completes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage_backends import filesystem, fs_parts
from storage_backends.base import Part, StorageError, StorageUnavailable
from storage_backends.filesystem import FilesystemBackend

MiB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]


def pattern(size: int, seed: int) -> bytes:
    return (bytes(range(seed, seed + 200)) * (size // 200 + 1))[:size]


async def pieces(data: bytes, piece: int = MiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


def session_dir(root: Path, upload_id: str) -> Path:
    return root / ".multipart" / upload_id


async def test_parts_written_in_order_complete_by_a_rename(tmp_path: Path) -> None:
    """The completion publishes the very file the parts were written into: no second copy
    of the data (and no second fsync of it)."""
    backend = FilesystemBackend(tmp_path)
    blobs = [pattern(MiB + 17, 1), pattern(2 * MiB, 3), pattern(12345, 5)]
    upload = await backend.multipart_create("up/data")
    parts = [
        await backend.multipart_upload_part("up/data", upload, n, pieces(b), len(b))
        for n, b in enumerate(blobs, 1)
    ]
    written = os.stat(session_dir(tmp_path, upload) / fs_parts.DATA)
    assert written.st_size == sum(map(len, blobs))
    await backend.multipart_complete("up/data", upload, parts)
    published = os.stat(tmp_path / "up" / "data")
    assert (published.st_ino, published.st_dev) == (written.st_ino, written.st_dev)
    assert (tmp_path / "up" / "data").read_bytes() == b"".join(blobs)
    assert not session_dir(tmp_path, upload).exists()


_KILLED_WRITER = """
import asyncio, json, sys, time
from storage_backends.filesystem import FilesystemBackend

async def main() -> None:
    backend = FilesystemBackend(sys.argv[1])
    upload = await backend.multipart_create("up/data")
    first = bytes([1]) * (1024 * 1024 + 5)
    async def once(data):
        yield data
    part = await backend.multipart_upload_part("up/data", upload, 1, once(first), len(first))
    print(json.dumps([upload, part.number, part.size, part.etag]), flush=True)
    async def slow():
        for _ in range(5):
            yield bytes([9]) * (1024 * 1024)
        print("writing", flush=True)
        await asyncio.sleep(3600)  # killed here, MiBs of part 2 written and unacknowledged
        yield b""
    await backend.multipart_upload_part("up/data", upload, 2, slow(), 8 * 1024 * 1024)

asyncio.run(main())
"""


def _kill_a_writer_mid_part(root: Path) -> tuple[str, Part]:
    """Runs the writer above in its own process, SIGKILLs it once part 2's first bytes are in
    the data file; returns the upload id and the part it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(root)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        upload, number, size, etag = json.loads(child.stdout.readline())
        assert child.stdout.readline().strip() == "writing"
        data_file = session_dir(root, upload) / fs_parts.DATA
        deadline = time.monotonic() + 30
        while os.stat(data_file).st_size <= size and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    return upload, Part(number, size, etag)


async def test_a_writer_killed_mid_part_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """SIGKILL while part 2 streams in: part 1 stays whole, the partial bytes of part 2 are
    cut off by the retry (another process), and the completion is still a rename."""
    upload, first = await asyncio.to_thread(_kill_a_writer_mid_part, tmp_path)
    size = first.size
    data_file = session_dir(tmp_path, upload) / fs_parts.DATA
    assert os.stat(data_file).st_size > size  # the dead request's bytes are there
    backend = FilesystemBackend(tmp_path)  # a restarted server: nothing but the storage
    assert await backend.multipart_list_parts("up/data", upload) == [first]
    second = pattern(2 * MiB + 3, 7)
    retried = await backend.multipart_upload_part("up/data", upload, 2, pieces(second), None)
    before = os.stat(data_file)
    assert before.st_size == size + len(second)  # resumed at the acknowledged end
    await backend.multipart_complete("up/data", upload, [first, retried])
    published = os.stat(tmp_path / "up" / "data")
    assert published.st_ino == before.st_ino
    assert (tmp_path / "up" / "data").read_bytes() == bytes([1]) * size + second


class ClientGone(Exception):
    """The request's body broke off (the server's receive raises; not a storage error)."""


async def test_a_part_cut_short_leaves_no_record_and_the_retry_resumes(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("k")
    first = pattern(MiB, 1)
    p1 = await backend.multipart_upload_part("k", upload, 1, pieces(first), len(first))

    async def broken() -> AsyncIterator[bytes]:
        yield pattern(MiB, 2)
        raise ClientGone

    with pytest.raises(ClientGone):
        await backend.multipart_upload_part("k", upload, 2, broken(), 4 * MiB)
    with pytest.raises(StorageError):  # a short body is no part either
        await backend.multipart_upload_part("k", upload, 2, pieces(b"xyz"), 4)
    assert await backend.multipart_list_parts("k", upload) == [p1]
    second = pattern(3 * MiB, 4)
    p2 = await backend.multipart_upload_part("k", upload, 2, pieces(second), len(second))
    await backend.multipart_complete("k", upload, [p1, p2])
    assert await backend.get("k") == first + second


async def test_a_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("k")
    held = fs_parts.try_lock(session_dir(tmp_path, upload))  # another request, mid-part
    assert held is not None
    assert fs_parts.try_lock(session_dir(tmp_path, upload)) is None
    writer = asyncio.create_task(backend.multipart_upload_part("k", upload, 1, pieces(b"abc"), 3))
    await asyncio.sleep(0.3)
    assert not writer.done()
    os.close(held)
    part = await asyncio.wait_for(writer, 30)
    await backend.multipart_complete("k", upload, [part])
    assert await backend.get("k") == b"abc"


async def test_a_writer_gives_up_when_another_holds_the_upload_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fs_parts, "LOCK_WAIT", 0.2)
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("k")
    held = fs_parts.try_lock(session_dir(tmp_path, upload))
    try:
        with pytest.raises(StorageUnavailable):  # a 503 with Retry-After, not a 500
            await backend.multipart_upload_part("k", upload, 1, pieces(b"abc"), 3)
        with pytest.raises(StorageUnavailable):
            await backend.multipart_complete("k", upload, [Part(1, 3, "")])
    finally:
        assert held is not None
        os.close(held)


async def test_a_rewritten_part_goes_after_the_old_bytes_with_a_new_etag(
    tmp_path: Path,
) -> None:
    """What the ETag check of racing requests relies on: the old part's bytes are never
    overwritten, and its ETag no longer completes."""
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("k")
    old = await backend.multipart_upload_part("k", upload, 1, pieces(b"A" * 5000), 5000)
    new = await backend.multipart_upload_part("k", upload, 1, pieces(b"B" * 5000), 5000)
    assert old.etag != new.etag
    assert await backend.multipart_list_parts("k", upload) == [new]
    data = (session_dir(tmp_path, upload) / fs_parts.DATA).read_bytes()
    assert data == b"A" * 5000 + b"B" * 5000
    with pytest.raises(StorageError):
        await backend.multipart_complete("k", upload, [old])
    await backend.multipart_complete("k", upload, [new])
    assert await backend.get("k") == b"B" * 5000


async def test_an_upload_in_the_layout_before_completes(tmp_path: Path) -> None:
    """An upload a server before this layout began (one file per part) is continued and
    completed by this one."""
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("k")
    directory = session_dir(tmp_path, upload)
    (directory / "00001.part").write_bytes(b"one-")
    (directory / "00002.part").write_bytes(b"two-")
    listed = await backend.multipart_list_parts("k", upload)
    assert [(p.number, p.size) for p in listed] == [(1, 4), (2, 4)]
    third = await backend.multipart_upload_part("k", upload, 3, pieces(b"three"), 5)
    await backend.multipart_complete("k", upload, [*listed, third])
    assert await backend.get("k") == b"one-two-three"


async def test_a_part_of_mixed_piece_sizes_is_written_in_order(tmp_path: Path) -> None:
    """Small pieces are coalesced, MiB pieces gathered into vectored writes: neither may
    reorder the bytes."""
    backend = FilesystemBackend(tmp_path)
    sizes = [7, MiB, MiB + 3, 100, MiB, MiB, MiB, MiB, MiB, 5, 2 * MiB, 1]
    blobs = [pattern(n, i) for i, n in enumerate(sizes)]

    async def mixed() -> AsyncIterator[bytes]:
        for b in blobs:
            yield b

    upload = await backend.multipart_create("k")
    part = await backend.multipart_upload_part("k", upload, 1, mixed(), sum(sizes))
    await backend.multipart_complete("k", upload, [part])
    assert await backend.get("k") == b"".join(blobs)


async def test_a_cancelled_part_write_lets_the_upload_go(tmp_path: Path) -> None:
    """A request cancelled mid-part (shutdown, a timeout) releases the upload's lock once its
    last write is done, so the client's retry is not locked out."""
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("k")
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield pattern(MiB, 1)
        yield pattern(MiB, 2)
        started.set()
        await asyncio.Event().wait()  # cancelled here
        yield b""

    writer = asyncio.create_task(backend.multipart_upload_part("k", upload, 1, stalled(), None))
    await asyncio.wait_for(started.wait(), 30)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    retried = await asyncio.wait_for(
        backend.multipart_upload_part("k", upload, 1, pieces(b"again"), 5), 10
    )
    await backend.multipart_complete("k", upload, [retried])
    assert await backend.get("k") == b"again"


async def test_a_cancelled_request_keeps_the_file_open_until_its_write_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write still running in a pool thread when its request is cancelled must not find
    its descriptor closed (the number could meanwhile name another file being written):
    the close, and with it the lock's release, waits for the write."""
    backend = FilesystemBackend(tmp_path)
    upload = await backend.multipart_create("k")
    entered, gate = threading.Event(), threading.Event()
    real = filesystem._pwrite_all

    def blocked(fd: int, data: bytes, offset: int) -> None:
        entered.set()
        gate.wait(30)
        real(fd, data, offset)

    monkeypatch.setattr(filesystem, "_pwrite_all", blocked)
    writer = asyncio.create_task(
        backend.multipart_upload_part("k", upload, 1, pieces(pattern(MiB, 1)), MiB)
    )
    assert await asyncio.to_thread(entered.wait, 30)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert fs_parts.try_lock(session_dir(tmp_path, upload)) is None  # the write holds it
    gate.set()
    deadline = time.monotonic() + 30
    while (fd := fs_parts.try_lock(session_dir(tmp_path, upload))) is None:
        assert time.monotonic() < deadline, "the lock was never released"
        await asyncio.sleep(0.02)
    os.close(fd)
