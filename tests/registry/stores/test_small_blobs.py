"""Small blobs pushed whole (`POST` + closing `PUT` with the body, or one `POST ?digest=`): the
body is verified in memory and written straight to its place in one storage plan. What
it costs on the filesystem (worker-thread hops, fsyncs), and what a crash between its steps
leaves: the client's retry finishes the push, nothing unverified is published, a killed
server loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ocispec.digest import Digest
from registry import errors
from registry.app import create_app
from registry.settings import Settings
from registry.stores import paths
from registry.stores.repository import RegistryStore
from registry.stores.uploads import SMALL_BODY
from storage_backends.base import Put, StorageBackend
from storage_backends.filesystem import FilesystemBackend
from tests.support.server import RegistryServer, registry_server  # noqa: F401

_T = TypeVar("_T")
DATA = bytes(range(256)) * 16  # 4 KiB, a config-sized blob


def sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Hops(FilesystemBackend):
    """Counts the calls handed to the backend's own worker threads."""

    hops = 0

    def _run(self, call: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        self.hops += 1
        return super()._run(call, *args)


@pytest.fixture
def costs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """fsyncs ("file"/"dir") and `asyncio.to_thread` hops, as they happen."""
    seen: dict[str, list[str]] = {"fsync": [], "to_thread": []}
    real_fsync, real_to_thread = os.fsync, asyncio.to_thread

    def fsync(fd: int) -> None:
        seen["fsync"].append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def to_thread(call: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, _T]:
        seen["to_thread"].append(getattr(call, "__name__", repr(call)))
        return real_to_thread(call, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    return seen


async def _warm(client: httpx.AsyncClient) -> None:
    """A first push to the repository: its catalog marker is looked up once per process."""
    first = b"warm-up"
    response = await client.post(f"/v2/repo/blobs/uploads/?digest={sha(first)}", content=first)
    assert response.status_code == 201, response.text


async def test_a_small_blob_push_is_three_thread_hops_and_four_fsyncs(
    tmp_path: Path, costs: dict[str, list[str]]
) -> None:
    """POST: the session state, not fsync'd (it holds no bytes). PUT: the state's load, then
    one storage plan (mark, look-up, bytes, link, the session's removal) with the bytes and the
    link fsync'd and their two directories. It was 10 hops and 7 fsyncs (the POST's state 2,
    the data 2, its move 1, the link 2)."""
    backend = Hops(tmp_path / "storage")
    app = create_app(Settings(upload_purge_interval=0), backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            await _warm(client)
            backend.hops, costs["fsync"][:], costs["to_thread"][:] = 0, [], []
            location = (await client.post("/v2/repo/blobs/uploads/")).headers["location"]
            assert (backend.hops, costs["fsync"], costs["to_thread"]) == (1, [], [])
            put = await client.put(f"{location}?digest={sha(DATA)}", content=DATA)
            assert put.status_code == 201, put.text
            assert backend.hops == 3 and costs["to_thread"] == [], costs
            assert sorted(costs["fsync"]) == ["dir", "dir", "file", "file"]
            pulled = await client.get(f"/v2/repo/blobs/{sha(DATA)}")
            assert pulled.content == DATA
            upload_id = location.rstrip("/").rsplit("/", 1)[-1]
            assert not (backend.root / paths.upload_dir(upload_id)).exists()
            assert (await client.get(location)).status_code == 404  # the session is closed


async def test_a_small_single_post_push_is_one_thread_hop_and_no_session(
    tmp_path: Path, costs: dict[str, list[str]]
) -> None:
    """`POST ?digest=` with the body (oras and other clients push small blobs so): one
    storage plan, nothing under `_uploads/` (it was a temp object, a move and 6 hops)."""
    backend = Hops(tmp_path / "storage")
    app = create_app(Settings(upload_purge_interval=0), backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            await _warm(client)
            backend.hops, costs["fsync"][:], costs["to_thread"][:] = 0, [], []
            pushed = await client.post(f"/v2/repo/blobs/uploads/?digest={sha(DATA)}", content=DATA)
            assert pushed.status_code == 201, pushed.text
            assert pushed.headers["location"] == f"/v2/repo/blobs/{sha(DATA)}"
            assert backend.hops == 1 and costs["to_thread"] == [], costs
            assert sorted(costs["fsync"]) == ["dir", "dir", "file", "file"]
            assert (await client.get(f"/v2/repo/blobs/{sha(DATA)}")).content == DATA
            wrong = await client.post(f"/v2/repo/blobs/uploads/?digest={sha(b'x')}", content=DATA)
            assert wrong.status_code == 400
            assert wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"
    sessions = backend.root / paths.UPLOADS
    assert not sessions.exists() or not any(sessions.iterdir())
    assert not (backend.root / paths.blob_data(sha(b"x"))).exists()


async def test_the_single_post_checks_the_size_before_writing() -> None:
    store = RegistryStore(_memory())
    with pytest.raises(errors.RegistryError) as refused:
        await store.uploads.put_monolithic("repo", sha(DATA), body(DATA[:100]), len(DATA))
    assert refused.value.code == "SIZE_INVALID"
    assert not await store.blobs.exists(sha(DATA))


def _memory() -> StorageBackend:
    from storage_backends.memory import MemoryBackend

    return MemoryBackend()


# -- crashes -------------------------------------------------------------------------------


def _steps_done_before_the_crash(name: str, digest: Digest, upload_id: str) -> list[Put]:
    """The plan's writes, in its order (its look-up and the session's removal aside)."""
    return [
        Put(paths.blob_touched(digest), b""),
        Put(paths.blob_data(digest), DATA),
        Put(paths.layer_link(name, digest), str(digest).encode()),
    ]


@pytest.mark.parametrize("done", [0, 1, 2, 3], ids=["none", "mark", "bytes", "link"])
async def test_a_put_killed_between_its_steps_is_finished_by_the_retry(
    backend: StorageBackend, done: int
) -> None:
    """The server died after the first `done` steps of the plan (nothing answered): the
    session is as the POST left it, so the client's retried PUT (a restarted server, another
    replica) finishes the push, and the session goes."""
    store = RegistryStore(backend)
    state = await store.uploads.start("repo")
    for step in _steps_done_before_the_crash("repo", sha(DATA), state.id)[:done]:
        await backend.put(step.path, step.data)
    fresh = RegistryStore(backend)  # the restarted server: nothing in memory
    state = await fresh.uploads.load("repo", state.id)
    assert fresh.uploads.is_empty(state)
    await fresh.uploads.commit_whole(state, sha(DATA), body(DATA), None, len(DATA))
    assert await fresh.blobs.is_linked("repo", sha(DATA))
    assert b"".join([c async for c in fresh.blobs.read(sha(DATA))]) == DATA
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):
        await fresh.uploads.load("repo", state.id)


async def test_a_wrong_digest_or_short_body_publishes_nothing(backend: StorageBackend) -> None:
    store = RegistryStore(backend)
    state = await store.uploads.start("repo")
    with pytest.raises(errors.RegistryError) as short:
        await store.uploads.commit_whole(state, sha(DATA), body(DATA[:10]), None, len(DATA))
    assert short.value.code == "SIZE_INVALID"
    # nothing written, the session kept for the retry
    assert not await backend.exists(paths.blob_touched(sha(DATA)))
    state = await store.uploads.load("repo", state.id)
    with pytest.raises(errors.RegistryError) as wrong:
        await store.uploads.commit_whole(state, sha(b"other"), body(DATA), None, len(DATA))
    assert wrong.value.code == "DIGEST_INVALID"
    for digest in (sha(DATA), sha(b"other")):
        assert not await backend.exists(paths.blob_data(digest))
        assert not await backend.exists(paths.blob_touched(digest))
        assert not await store.blobs.is_linked("repo", digest)
    with pytest.raises(errors.BLOB_UPLOAD_UNKNOWN):  # a wrong digest ends the session
        await store.uploads.load("repo", state.id)


async def test_a_body_above_the_small_size_still_streams(backend: StorageBackend) -> None:
    """Above SMALL_BODY the closing PUT streams to the session's data key as before (bounded
    memory per request), and publishes the same way."""
    data = os.urandom(SMALL_BODY + 1)
    store = RegistryStore(backend)
    state = await store.uploads.start("repo")
    await store.uploads.commit_whole(state, sha(data), body(data), None, len(data))
    assert b"".join([c async for c in store.blobs.read(sha(data))]) == data


def test_a_killed_server_loses_no_session_and_no_blob_it_acknowledged(
    registry_server: Callable[..., RegistryServer],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The POST's state is not fsync'd, but a SIGKILL'd process loses nothing written (the
    page cache outlives it): the session opened before the kill is finished after it; and a
    blob whose PUT was answered is there after the next kill."""
    server = registry_server(f"file://{tmp_path / 'storage'}")
    other = os.urandom(4096)
    with httpx.Client(base_url=server.url) as client:
        location = client.post("/v2/app/blobs/uploads/").headers["location"]
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url) as client:
        put = client.put(f"{location}?digest={sha(DATA)}", content=DATA)
        assert put.status_code == 201, put.text
        single = client.post(f"/v2/app/blobs/uploads/?digest={sha(other)}", content=other)
        assert single.status_code == 201, single.text
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url) as client:
        assert client.get(f"/v2/app/blobs/{sha(DATA)}").content == DATA
        assert client.get(f"/v2/app/blobs/{sha(other)}").content == other
        assert client.get(location).status_code == 404
