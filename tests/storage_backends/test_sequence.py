"""`StorageBackend.sequence`: operations in order, each visible before the next, results in
order, on every backend; on the filesystem one worker-thread hop, each directory fsync'd once
at the end, and `Put(durable=False)` not fsync'd at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage_backends.base import DeletePrefix, Exists, Get, Put, PutIfAbsent
from storage_backends.filesystem import FilesystemBackend
from tests.storage_backends.conftest import Harness


async def test_a_sequence_runs_each_step_after_the_one_before(harness: Harness) -> None:
    backend = harness.backend
    await backend.put("s/old/data", b"first")
    await backend.put("s/session/state", b"{}")
    results = await backend.sequence(
        [
            Put("s/mark", b""),
            PutIfAbsent("s/new/data", b"new"),
            PutIfAbsent("s/old/data", b"second"),  # content-addressed: the same key, left
            Exists("s/new/data"),  # sees the step before it
            Get("s/new/data"),
            Put("s/link", b"sha256:x"),
            DeletePrefix("s/session"),
            Exists("s/session/state"),
        ]
    )
    assert results == [None, True, False, True, b"new", None, None, False]
    assert await backend.get("s/old/data") == b"first"
    assert await backend.get("s/link") == b"sha256:x"
    assert await backend.sequence([]) == []
    other = await harness.reopen()  # another replica on the same storage sees it all
    assert await other.batch([Get("s/new/data"), Exists("s/session/state")]) == [b"new", False]


class Hops(FilesystemBackend):
    """Counts the calls handed to the backend's worker threads."""

    hops = 0

    def _run(self, call: Callable[..., Any], *args: Any) -> Any:
        self.hops += 1
        return super()._run(call, *args)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What os.fsync is called on: "dir:<path>" or "file:<path>"."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("dir:" if os.path.isdir(target) else "file:") + target)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


async def test_a_filesystem_sequence_is_one_hop_with_each_directory_synced_once(
    tmp_path: Path, synced: list[str]
) -> None:
    backend = Hops(tmp_path / "root")
    await backend.open()
    await backend.put("u/1/state", b"{}")
    synced.clear()
    backend.hops = 0
    results = await backend.sequence(
        [
            Put("b/x/touched", b""),
            PutIfAbsent("b/x/data", b"bytes"),
            Put("b/x/more", b"more"),
            Put("r/link", b"sha256:x"),
            DeletePrefix("u/1"),
        ]
    )
    assert results == [None, True, None, None, None]
    assert backend.hops == 1
    root = backend.root
    # the three files with content before their renames; their two directories once each,
    # after everything (the empty mark is created in place: nothing to flush)
    assert [c.split(":")[0] for c in synced] == ["file", "file", "file", "dir", "dir"]
    assert synced[3:] == [f"dir:{root}/b/x", f"dir:{root}/r"]
    assert not (root / "u" / "1").exists()
    await backend.close()


async def test_a_put_that_need_not_be_durable_is_not_synced(
    tmp_path: Path, synced: list[str]
) -> None:
    backend = FilesystemBackend(tmp_path / "root")
    await backend.open()
    await backend.batch([Put("u/1/state", b'{"offset": 0}', durable=False)])
    await backend.sequence([Put("u/2/state", b"{}", durable=False)])
    assert synced == []
    await backend.batch([Put("u/3/state", b"{}")])  # the default stays durable
    assert [c.split(":")[0] for c in synced] == ["file", "dir"]
    assert await FilesystemBackend(tmp_path / "root").get("u/1/state") == b'{"offset": 0}'
    await backend.close()
