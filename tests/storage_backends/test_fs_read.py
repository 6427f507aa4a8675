"""The filesystem backend's byte streams: one thread hop per piece, files never left open."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from storage_backends.filesystem import FilesystemBackend
from storage_backends.fs_read import PieceReader

MiB = 1024 * 1024


@pytest.fixture
async def fs(tmp_path: Path) -> AsyncIterator[FilesystemBackend]:
    backend = FilesystemBackend(tmp_path / "root")
    await backend.open()
    yield backend
    await backend.close()


def open_files_under(root: Path) -> int:
    """How many of this process's descriptors point below `root`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            count += 1
    return count


def count_hops(fs: FilesystemBackend, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the calls `fs` hands to its thread pool, and every `to_thread` call
    (asyncio's default executor), as they happen."""
    hops: list[str] = []
    run = fs._run

    def counted_run(call: Callable[..., Any], *args: Any) -> Any:
        hops.append(getattr(call, "__name__", "?"))
        return run(call, *args)

    real_to_thread = asyncio.to_thread

    async def counted_to_thread(call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        hops.append(f"to_thread:{getattr(call, '__name__', '?')}")
        return await real_to_thread(call, *args, **kwargs)

    monkeypatch.setattr(fs, "_run", counted_run)
    monkeypatch.setattr(asyncio, "to_thread", counted_to_thread)
    return hops


async def test_a_stream_is_one_hop_per_piece(
    fs: FilesystemBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * MiB + 5)
    (fs.root / "obj").write_bytes(data)
    hops = count_hops(fs, monkeypatch)
    pieces = [p async for p in fs.stream("obj")]
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces] == [MiB, MiB, MiB, 5]
    # the open rides on the first read and the close on the last: no hop of their own
    assert hops == ["next"] * 4
    hops.clear()
    assert (
        b"".join([p async for p in fs.stream("obj", MiB - 1, 2 * MiB)])
        == data[MiB - 1 : 3 * MiB - 1]
    )
    assert hops == ["next"] * 2
    assert open_files_under(fs.root) == 0


async def test_an_abandoned_stream_closes_its_file(fs: FilesystemBackend) -> None:
    (fs.root / "obj").write_bytes(os.urandom(4 * MiB))
    stream = fs.stream("obj")
    assert len(await anext(stream)) == MiB
    assert open_files_under(fs.root) == 1
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(200):  # the close runs in the backend's pool, after any read in flight
        if open_files_under(fs.root) == 0:
            break
        await asyncio.sleep(0.01)
    assert open_files_under(fs.root) == 0


async def test_a_cancelled_read_still_closes_its_file(fs: FilesystemBackend) -> None:
    """A request cancelled while its read waits in the pool or runs in a thread: the read
    finishes (or never opens), then the file is closed."""
    (fs.root / "obj").write_bytes(os.urandom(8 * MiB))

    async def consume() -> None:
        async for _ in fs.stream("obj"):
            await asyncio.sleep(0)

    for _ in range(20):
        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
        del task
    for _ in range(200):
        gc.collect()  # a generator left at a `yield` is finalised by the collector
        if open_files_under(fs.root) == 0:
            break
        await asyncio.sleep(0.01)
    assert open_files_under(fs.root) == 0


def test_a_reader_still_opening_its_file_is_not_finished(tmp_path: Path) -> None:
    """`finished` is what a cancelled stream asks to decide whether to close the reader: while
    a first `next()` is inside the open, it must say no (it said yes, and the descriptor then
    stayed open as long as the reader lived). A FIFO's open blocks until a writer comes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = PieceReader(str(fifo), 0, None, 2)
    errors: list[BaseException] = []

    def first_read() -> None:
        try:
            reader.next()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first_read)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not reader._started and time.monotonic() < deadline:
            time.sleep(0.001)
        assert reader._started
        time.sleep(0.05)  # well inside the blocked open
        assert not reader.finished
    finally:
        writer = os.open(fifo, os.O_WRONLY)  # lets the open return (then refused: no file)
        thread.join(60)
        os.close(writer)
    assert [type(e) for e in errors] == [IsADirectoryError]
    assert reader.finished
    assert open_files_under(tmp_path) == 0


async def test_an_idle_pool_thread_keeps_nothing_of_its_last_call(fs: FilesystemBackend) -> None:
    """A pool thread waiting for work holds no reference to the call it last ran (a reader
    and its descriptor, its arguments, a 1 MiB piece it returned)."""

    class Token:
        pass

    def touch(token: Token) -> Token:
        return token

    token = Token()
    ref = weakref.ref(token)
    assert await fs._run(touch, token) is token
    del token
    for _ in range(200):
        gc.collect()
        if ref() is None:
            break
        await asyncio.sleep(0.01)
    assert ref() is None


def test_reader_after_close_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    reader = PieceReader(str(path), 1, None, 2)
    assert reader.next() == b"bc"
    assert not reader.finished
    reader.close()
    assert reader.finished
    assert reader.next() == b""
    # closed before it ever opened (a first read cancelled while queued): it never opens
    unopened = PieceReader(str(path), 0, None, 2)
    unopened.close()
    assert unopened.next() == b""
    assert open_files_under(tmp_path) == 0


def test_reader_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        PieceReader(str(tmp_path), 0, None, 2).next()
    assert open_files_under(tmp_path) == 0
