"""The filesystem's durability switch (`storage.fsync`): on, every published object and the
directory entry of its rename are fsync'd before the call returns (each directory once per
batch); off, nothing is, and the objects are there all the same."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from ocispec import mediatypes as mt
from registry.app import create_app
from registry.settings import Settings, load_settings
from storage_backends import open_backend
from storage_backends.base import Put
from storage_backends.filesystem import FilesystemBackend
from tests.registry.helpers import digest_of, push_image, put_manifest
from tests.support.server import RegistryServer, registry_server  # noqa: F401


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What os.fsync (and os.fdatasync) is called on: "dir:<path>" or "file:<path>"."""
    calls: list[str] = []

    def recording(real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            target = os.readlink(f"/proc/self/fd/{fd}")
            calls.append(("dir:" if os.path.isdir(target) else "file:") + target)
            real(fd)

        return sync

    monkeypatch.setattr(os, "fsync", recording(os.fsync))
    monkeypatch.setattr(os, "fdatasync", recording(os.fdatasync))
    return calls


async def test_with_fsync_a_put_syncs_the_file_and_its_directory(
    tmp_path: Path, synced: list[str]
) -> None:
    backend = FilesystemBackend(tmp_path, fsync=True)
    await backend.open()
    await backend.put("a/b/link", b"x")
    assert [c.split(":")[0] for c in synced] == ["file", "dir"]
    assert synced[1] == f"dir:{tmp_path}/a/b"
    synced.clear()
    # a batch: each file, then each directory once
    await backend.batch([Put("c/one", b"1"), Put("c/two", b"2"), Put("d/three", b"3")])
    assert sorted(c for c in synced if c.startswith("dir:")) == [
        f"dir:{tmp_path}/c",
        f"dir:{tmp_path}/d",
    ]
    assert len([c for c in synced if c.startswith("file:")]) == 3
    await backend.close()


async def test_without_fsync_nothing_is_synced_and_all_is_there(
    tmp_path: Path, synced: list[str]
) -> None:
    backend = FilesystemBackend(tmp_path, fsync=False)
    await backend.open()
    await backend.put("a/b/link", b"x")
    await backend.batch([Put("c/one", b"1"), Put("c/two", b"")])
    assert synced == []
    other = FilesystemBackend(tmp_path)
    assert await other.get("a/b/link") == b"x" and await other.get("c/one") == b"1"
    await backend.close()


async def _chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _streams_and_multipart(backend: FilesystemBackend) -> None:
    await backend.put_stream("blobs/one", _chunks(b"a" * 10, b"b" * 10))
    upload = await backend.multipart_create("blobs/two")
    parts = [
        await backend.multipart_upload_part("blobs/two", upload, n, _chunks(bytes([n]) * 5))
        for n in (1, 2)
    ]
    await backend.multipart_complete("blobs/two", upload, parts)


async def test_streams_and_multipart_follow_the_setting(tmp_path: Path, synced: list[str]) -> None:
    """Blob data too: with the setting on, streamed objects and each multipart part are
    fsync'd with their directories (the parts in place in the upload's data file, so the
    join is a rename); off, none of them, and the objects read back whole."""
    durable = FilesystemBackend(tmp_path / "on", fsync=True)
    await durable.open()
    await _streams_and_multipart(durable)
    # the stream fsync'd under its temp name, before its rename
    assert len([c for c in synced if c.startswith(f"file:{tmp_path}/on/blobs/.tmp.")]) == 1
    parts = [c for c in synced if c.startswith(f"file:{tmp_path}/on/.multipart/")]
    assert len(parts) == 2 and all(c.endswith("/data") for c in parts)  # each part, in place
    assert {c.split(":")[0] for c in synced} == {"file", "dir"}
    assert synced.count(f"dir:{tmp_path}/on/blobs") >= 2  # the stream's rename and the join's
    await durable.close()
    synced.clear()
    loose = FilesystemBackend(tmp_path / "off", fsync=False)
    await loose.open()
    await _streams_and_multipart(loose)
    assert synced == []
    assert await loose.get("blobs/one") == b"a" * 10 + b"b" * 10
    assert await loose.get("blobs/two") == b"\x01" * 5 + b"\x02" * 5
    await loose.close()


def test_the_setting_reaches_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().storage_fsync is True
    config = tmp_path / "config.yaml"
    config.write_text(f"storage: {{url: 'file://{tmp_path}/s', fsync: false}}\n")
    assert load_settings(config).storage_fsync is False
    monkeypatch.setenv("PYREG_STORAGE_FSYNC", "false")
    assert load_settings().storage_fsync is False
    backend = open_backend(f"file://{tmp_path}/s", fsync=False)
    assert isinstance(backend, FilesystemBackend) and backend.fsync is False
    assert isinstance(open_backend(f"file://{tmp_path}/s"), FilesystemBackend)
    assert open_backend(f"file://{tmp_path}/s").fsync is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("fsync", [True, False])
async def test_a_manifest_put_fsyncs_only_when_the_setting_says_so(
    tmp_path: Path, synced: list[str], fsync: bool
) -> None:
    settings = Settings(
        storage_url=f"file://{tmp_path}/storage", storage_fsync=fsync, upload_purge_interval=0
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            data, _ = await push_image(client, "repo", [b"layer"])
            synced.clear()
            response = await put_manifest(client, "repo", "v1", data)
            assert response.status_code == 201, response.text
    if fsync:
        # the manifest's bytes, its revision and its tag: each file and its directory
        assert len([c for c in synced if c.startswith("file:")]) == 3, synced
        assert len([c for c in synced if c.startswith("dir:")]) == 3, synced
    else:
        assert synced == []


def test_without_fsync_a_killed_server_loses_nothing_it_acknowledged(
    registry_server: Callable[..., RegistryServer],  # noqa: F811
    tmp_path: Path,
) -> None:
    """fsync off gives up only power-loss safety: the page cache outlives a SIGKILL'd process."""
    server = registry_server(f"file://{tmp_path / 'storage'}", env={"PYREG_STORAGE_FSYNC": "0"})
    layer = os.urandom(64 * 1024)
    with httpx.Client(base_url=server.url) as client:
        data = asyncio.run(_push(server.url, layer))
        assert (
            client.put(
                "/v2/app/manifests/v1", content=data, headers={"Content-Type": mt.OCI_MANIFEST}
            ).status_code
            == 201
        )
    server.kill()  # SIGKILL right after the answers
    server.start()
    with httpx.Client(base_url=server.url) as client:
        pulled = client.get("/v2/app/manifests/v1", headers={"Accept": mt.OCI_MANIFEST})
        assert pulled.status_code == 200 and pulled.content == data
        assert client.get(f"/v2/app/blobs/{digest_of(layer)}").content == layer
        assert client.get("/v2/app/tags/list").json()["tags"] == ["v1"]


async def _push(url: str, layer: bytes) -> bytes:
    async with httpx.AsyncClient(base_url=url) as client:
        data, _ = await push_image(client, "app", [layer])
    return data
