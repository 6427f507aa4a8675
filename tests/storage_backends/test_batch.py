"""`StorageBackend.batch`: independent Exists/Get/Put operations, results in order, on every
backend; on the filesystem one worker-thread hop for the whole batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage_backends.base import Exists, Get, Put
from storage_backends.filesystem import FilesystemBackend
from tests.storage_backends.conftest import Harness


async def test_a_batch_answers_each_operation_in_order(harness: Harness) -> None:
    backend = harness.backend
    await backend.put("a/one", b"1")
    results = await backend.batch(
        [
            Exists("a/one"),
            Exists("a/missing"),
            Get("a/one"),
            Get("a/missing"),
            Put("b/new", b"new"),
            Put("b/mark", b""),
        ]
    )
    assert results == [True, False, b"1", None, None, None]
    assert await backend.get("b/new") == b"new"
    assert await backend.get("b/mark") == b""
    assert await backend.batch([]) == []
    # a put of empty data replaces content too (a mark over an object that had some)
    await backend.batch([Put("b/new", b"")])
    assert await backend.get("b/new") == b""
    # seen by another instance on the same storage (a restart, another replica)
    other = await harness.reopen()
    assert await other.batch([Exists("b/new"), Get("b/mark")]) == [True, b""]


class Hops(FilesystemBackend):
    """Counts the calls handed to the backend's worker threads."""

    hops = 0

    def _run(self, call: Callable[..., Any], *args: Any) -> Any:
        self.hops += 1
        return super()._run(call, *args)


async def test_a_filesystem_batch_is_one_thread_hop(tmp_path: Path) -> None:
    backend = Hops(tmp_path / "root")
    await backend.open()
    ops = [Put(f"d{i}/k", b"x") for i in range(5)] + [Exists(f"d{i}/k") for i in range(5)]
    assert await backend.batch(ops) == [None] * 5 + [True] * 5
    assert backend.hops == 1
    await backend.close()
