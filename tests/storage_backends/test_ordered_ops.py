"""`PutIfAbsent` and `DeletePrefix` in `batch` and `rounds`, and plans of one operation per
round (a small blob's write, `BlobStore.put_verified`): each step visible before the next,
results in order, on every backend; on the filesystem one worker-thread hop, each round's
directories fsync'd once, and `Put(durable=False)` not fsync'd at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage_backends.base import DeletePrefix, Exists, Get, Op, Plan, Put, PutIfAbsent, Result
from storage_backends.filesystem import FilesystemBackend
from tests.storage_backends.conftest import Harness


async def test_one_operation_per_round_runs_each_after_the_one_before(harness: Harness) -> None:
    backend = harness.backend
    await backend.put("s/old/data", b"first")
    await backend.put("s/session/state", b"{}")
    results = await backend.rounds(
        one_by_one(
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
    )
    assert results == [None, True, False, True, b"new", None, None, False]
    assert await backend.get("s/old/data") == b"first"
    assert await backend.get("s/link") == b"sha256:x"
    assert await backend.rounds(one_by_one([])) == []
    # in one batch too (independent of each other there)
    assert await backend.batch([PutIfAbsent("s/b/data", b"b"), DeletePrefix("s/old")]) == [
        True,
        None,
    ]
    assert await backend.batch([PutIfAbsent("s/b/data", b"c"), Exists("s/old/data")]) == [
        False,
        False,
    ]
    other = await harness.reopen()  # another replica on the same storage sees it all
    assert await other.batch([Get("s/new/data"), Exists("s/session/state")]) == [b"new", False]


def one_by_one(ops: list[Op]) -> Plan[list[Result]]:
    """Each operation a round of its own; the results of all of them."""
    out: list[Result] = []
    for op in ops:
        out += yield [op]
    return out


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


async def test_a_filesystem_plan_is_one_hop_with_each_rounds_directories_synced_once(
    tmp_path: Path, synced: list[str]
) -> None:
    backend = Hops(tmp_path / "root")
    await backend.open()
    await backend.put("u/1/state", b"{}")
    synced.clear()
    backend.hops = 0

    def plan() -> Plan[list[Result]]:
        out = yield [Put("b/x/touched", b"")]
        out += yield [PutIfAbsent("b/x/data", b"bytes"), Put("b/x/more", b"more")]
        out += yield [Put("r/link", b"sha256:x")]
        out += yield [DeletePrefix("u/1")]
        return out

    assert await backend.rounds(plan()) == [None, True, None, None, None]
    assert backend.hops == 1
    root = backend.root
    # each file with content before its rename; a round's directory once, before the next
    # round (the empty mark is created in place: nothing to flush)
    assert [c.split(":")[0] for c in synced] == ["file", "file", "dir", "file", "dir"]
    assert [c for c in synced if c.startswith("dir:")] == [f"dir:{root}/b/x", f"dir:{root}/r"]
    assert not (root / "u" / "1").exists()
    await backend.close()


async def test_a_put_that_need_not_be_durable_is_not_synced(
    tmp_path: Path, synced: list[str]
) -> None:
    backend = FilesystemBackend(tmp_path / "root")
    await backend.open()
    await backend.batch([Put("u/1/state", b'{"offset": 0}', durable=False)])
    await backend.rounds(one_by_one([Put("u/2/state", b"{}", durable=False)]))
    assert synced == []
    await backend.batch([Put("u/3/state", b"{}")])  # the default stays durable
    assert [c.split(":")[0] for c in synced] == ["file", "dir"]
    assert await FilesystemBackend(tmp_path / "root").get("u/1/state") == b'{"offset": 0}'
    await backend.close()
