"""puller.store.locks: a lock somebody holds is seen as held (flock is per open file, so a
second open in this process is "somebody"), a free one is taken; a HeldFile closes with its
`with` block."""

from __future__ import annotations

import os
from pathlib import Path

from puller.store.locks import HeldFile, file_lock, lock_if_free, try_lock


def test_a_held_lock_is_not_taken_a_free_one_is(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    assert try_lock(path)  # missing: nobody holds it
    with file_lock(path):
        assert not try_lock(path)
        fd = os.open(path, os.O_RDWR)
        try:
            assert not lock_if_free(fd)
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDWR)
    try:
        assert lock_if_free(fd)
        assert not try_lock(path)  # now this fd holds it
    finally:
        os.close(fd)
    assert try_lock(path)


def test_shared_holders_exclude_only_an_exclusive_one(tmp_path: Path) -> None:
    path = tmp_path / "gc.lock"
    with file_lock(path, shared=True), file_lock(path, shared=True):
        assert not try_lock(path)
    assert try_lock(path)


def test_a_held_file_is_closed_by_its_with_block() -> None:
    class Probe(HeldFile):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    with Probe() as probe:
        assert probe.closed == 0
    assert probe.closed == 1
