"""Storage calls the hot push paths make: a repository's catalog marker is looked up once per
process, and a closing PUT that carries the last bytes does not save the session state it is
about to commit (a failed commit leaves the stored state, and the retry works)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from ocispec.digest import Digest
from registry import errors
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.memory import MemoryBackend


class Counting(MemoryBackend):
    """Memory storage recording the keys it was asked about or given."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []
        self.written: list[str] = []

    async def exists(self, path: str) -> bool:
        self.looked_up.append(path)
        return await super().exists(path)

    async def put(self, path: str, data: bytes) -> None:
        self.written.append(path)
        await super().put(path, data)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def test_a_repository_is_marked_in_the_catalog_with_one_look_up_per_process() -> None:
    backend = Counting()
    catalog = RegistryStore(backend).catalog
    await catalog.mark("repo")
    await catalog.mark("repo")
    await catalog.mark("repo")
    marker = paths.catalog_marker("repo")
    assert backend.looked_up.count(marker) == 1
    assert backend.written.count(marker) == 1
    assert await catalog.names() == ["repo"]
    # another process (a fresh store) finds the marker with one look-up and writes nothing
    other = RegistryStore(backend).catalog
    await other.mark("repo")
    assert backend.looked_up.count(marker) == 2 and backend.written.count(marker) == 1


async def test_a_closing_put_with_the_bytes_does_not_save_the_state_it_commits() -> None:
    backend = Counting()
    store = RegistryStore(backend)
    data = b"small blob" * 10
    state = await store.uploads.start("repo")
    saved = backend.written.count(paths.upload_state(state.id))
    state = await store.uploads.append(state, _once(data), None, len(data), save=False)
    assert backend.written.count(paths.upload_state(state.id)) == saved
    await store.uploads.commit(state, _sha(data))
    assert b"".join([c async for c in store.blobs.read(_sha(data))]) == data


async def test_a_failed_commit_after_an_unsaved_append_can_be_retried() -> None:
    backend = MemoryBackend()
    store = RegistryStore(backend)
    data = b"retry me" * 100
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, _once(data), None, len(data), save=False)
    wrong = _sha(b"something else")
    with pytest.raises(errors.RegistryError):  # DIGEST_INVALID: the session goes, as before
        await store.uploads.commit(state, wrong)
    # a client retrying the whole push starts a new session and succeeds
    state = await store.uploads.start("repo")
    state = await store.uploads.append(state, _once(data), None, len(data), save=False)
    await store.uploads.commit(state, _sha(data))
    assert await store.blobs.is_linked("repo", _sha(data))
