"""`Batch`: storage operations gathered for one `StorageBackend.batch` call, read back by index.

A store adds the independent operations of one step of a request (say, the in-use marks of a
manifest's blobs and the look-up of its own bytes), runs them as one batch (on the filesystem,
one worker-thread hop and one set of metrics instead of one per operation), then reads each
result by the index its method returned. Operations whose order matters go in later batches.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

from storage_backends.base import Exists, Get, Op, Put, Result, StorageBackend


class Batch:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._results: list[Result] = []

    def exists(self, path: str) -> int:
        self.ops.append(Exists(path))
        return len(self.ops) - 1

    def get(self, path: str) -> int:
        """The object's bytes, or None when absent (`data`)."""
        self.ops.append(Get(path))
        return len(self.ops) - 1

    def put(self, path: str, data: bytes) -> None:
        self.ops.append(Put(path, data))

    async def run(self, backend: StorageBackend) -> None:
        if self.ops:
            self._results = await backend.batch(self.ops)

    def round(self) -> Generator[Sequence[Op], list[Result], None]:
        """This batch as one round of a plan (`StorageBackend.rounds`): `yield from` it."""
        if self.ops:
            self._results = yield self.ops

    def flag(self, index: int) -> bool:
        found = self._results[index]
        assert isinstance(found, bool), "not an Exists result"
        return found

    def data(self, index: int) -> bytes | None:
        found = self._results[index]
        assert found is None or isinstance(found, bytes), "not a Get result"
        return found
