"""A chunked upload on the filesystem: the commit publishes the file the PATCHes were written
into, without copying the data (issue 16: the join copied and fsync'd every byte again)."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ocispec.digest import Digest
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.filesystem import FilesystemBackend

MiB = 1024 * 1024


async def body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


class _Copies:
    """Bytes moved by copy_file_range, write and pwrite while armed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.bytes = 0
        for name in ("copy_file_range", "write", "pwrite"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._counting(real))

    def _counting(self, real: Callable[..., int]) -> Callable[..., int]:
        def call(*args: Any, **kwargs: Any) -> int:
            n = real(*args, **kwargs)
            if self.armed:
                self.bytes += n
            return n

        return call


async def test_a_multi_patch_upload_is_committed_without_copying_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FilesystemBackend(tmp_path)
    store = RegistryStore(backend)
    data = os.urandom(3 * MiB + 4321)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    state = await store.uploads.start("repo")
    cuts = [0, MiB + 1, 2 * MiB + 77, len(data)]
    for start, end in itertools.pairwise(cuts):
        state = await store.uploads.append(state, body(data[start:end]), start, end - start)
    assert len(state.parts) == 3
    written = os.stat(tmp_path / ".multipart" / state.multipart_id / "data")
    copies = _Copies(monkeypatch)
    copies.armed = True
    await store.uploads.commit(state, digest)
    copies.armed = False
    assert copies.bytes < 4096  # the blob's link and marks, none of the data
    published = os.stat(tmp_path / paths.blob_data(digest))
    assert (published.st_ino, published.st_dev) == (written.st_ino, written.st_dev)
    assert (tmp_path / paths.blob_data(digest)).read_bytes() == data
