"""How a request body streams through an upload (registry/stores/uploads.py `_Counter`): the
event loop neither copies nor hashes a large body (the pieces are joined and hashed in one
worker-thread hop each), a body is read ahead of storage by a bounded amount, and errors and
early stops end the reading."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest

from registry.stores.uploads import PIECE_SIZE, READ_AHEAD, _Counter

KiB = 1024


class RecordingHash:
    """A sha256 that records, per update, the thread it ran in and the object it was given."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.updates: list[tuple[int, bytes]] = []

    def update(self, data: bytes) -> None:
        self.updates.append((threading.get_ident(), data))
        self._sha.update(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _data(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def _chunks(data: bytes, size: int, read: list[int] | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if read is not None:
            read[0] = i + size
        yield data[i : i + size]


async def test_a_large_body_is_joined_and_hashed_off_the_loop_once_per_piece() -> None:
    data = _data(4 * PIECE_SIZE + 100 * KiB)
    sha = RecordingHash()
    counter = _Counter(_chunks(data, 64 * KiB), None, sha)
    pieces = [piece async for piece in counter]
    assert b"".join(pieces) == data and counter.size == len(data)
    assert [len(p) for p in pieces] == [PIECE_SIZE] * 4 + [100 * KiB]
    # one hash update per piece, each in a worker thread, on the object storage gets
    loop_thread = threading.get_ident()
    assert len(sha.updates) == len(pieces)
    assert all(thread != loop_thread for thread, _ in sha.updates)
    assert all(hashed is piece for (_, hashed), piece in zip(sha.updates, pieces, strict=True))
    assert sha.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_a_piece_that_arrives_whole_is_not_copied() -> None:
    data = _data(3 * PIECE_SIZE)
    chunks = [data[: 2 * PIECE_SIZE], data[2 * PIECE_SIZE :]]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    counter = _Counter(body(), "sha256")
    pieces = [piece async for piece in counter]
    assert all(piece is chunk for piece, chunk in zip(pieces, chunks, strict=True))
    assert counter.hash is not None
    assert counter.hash.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_a_small_body_is_handed_over_without_a_thread_hop() -> None:
    data = _data(300 * KiB)
    sha = RecordingHash()
    pieces = [piece async for piece in _Counter(_chunks(data, 64 * KiB), None, sha)]
    assert pieces == [data]
    assert [thread for thread, _ in sha.updates] == [threading.get_ident()]


async def test_a_body_is_read_ahead_of_storage_by_a_bounded_amount() -> None:
    """While storage works on a piece the socket goes on being read (receiving and writing
    overlap), but at most READ_AHEAD pieces more are held: memory stays flat."""
    data = _data(12 * PIECE_SIZE)
    read = [0]
    counter = _Counter(_chunks(data, 64 * KiB, read), "sha256")
    it = aiter(counter)
    first = await anext(it)
    for _ in range(100):  # storage is busy with the first piece: let the reader run
        await asyncio.sleep(0.005)
    assert len(first) == PIECE_SIZE
    assert 2 * PIECE_SIZE <= read[0] <= (READ_AHEAD + 2) * PIECE_SIZE, read[0]
    rest = [piece async for piece in it]
    assert first + b"".join(rest) == data
    assert counter.hash is not None
    assert counter.hash.hexdigest() == hashlib.sha256(data).hexdigest()


class Disconnect(Exception):
    pass


async def test_an_error_in_the_body_reaches_storage_s_side() -> None:
    data = _data(5 * PIECE_SIZE)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in _chunks(data[: 3 * PIECE_SIZE], 64 * KiB):
            yield chunk
        raise Disconnect

    with pytest.raises(Disconnect):
        async for _ in _Counter(body(), "sha256"):
            pass


async def test_a_consumer_that_stops_ends_the_reading() -> None:
    data = _data(8 * PIECE_SIZE)
    closed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in _chunks(data, 64 * KiB):
                yield chunk
        finally:
            closed.set()

    tasks = asyncio.all_tasks()
    it = cast(AsyncGenerator[bytes, None], _Counter(body(), "sha256").__aiter__())
    await anext(it)
    await it.aclose()  # storage failed: the upload is abandoned
    await asyncio.wait_for(closed.wait(), 10)
    assert asyncio.all_tasks() == tasks  # no reader left behind
