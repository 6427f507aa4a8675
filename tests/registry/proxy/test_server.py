"""The pull-through cache as a real `pyreg serve` process in front of real upstreams: one
upstream GET for many concurrent misses, an upstream cut mid-blob, an upstream sending bytes
that do not match their digest, and `pyreg serve` itself as the upstream."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import httpx
import pytest

from ocispec.digest import Digest, digest_bytes
from tests.registry.proxy.conftest import image, pull, push_image, upstream_config
from tests.support.docker_registry import DockerRegistry
from tests.support.server import RegistryServer
from tests.support.tcp_cut_proxy import TcpCutProxy

pytestmark = pytest.mark.slow

BIG = 24 * 1024 * 1024


async def _push_blob(base_url: str, name: str, data: bytes) -> Digest:
    digest = digest_bytes(data)
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        r = await client.post(f"/v2/{name}/blobs/uploads/")
        location = r.headers["Location"]
        sep = "&" if "?" in location else "?"
        r = await client.put(f"{location}{sep}digest={digest}", content=data)
        assert r.status_code == 201, r.text
    return digest


async def _fetch(client: httpx.AsyncClient, url: str) -> tuple[int, str]:
    """Stream a blob, hashing it: (status, sha256 digest of the body)."""
    h = hashlib.sha256()
    async with client.stream("GET", url) as response:
        async for piece in response.aiter_bytes():
            h.update(piece)
        return response.status_code, f"sha256:{h.hexdigest()}"


def _stored(storage: Path, digest: Digest) -> bool:
    return (storage / "blobs" / digest.algorithm / digest.hex[:2] / digest.hex / "data").exists()


def _temp_objects(storage: Path) -> list[Path]:
    uploads = storage / "_uploads"
    return [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    path = tmp_path / "mirror"
    path.mkdir()
    return path


async def test_twenty_concurrent_misses_are_one_upstream_get(
    upstream: DockerRegistry, storage: Path
) -> None:
    digest = await _push_blob(upstream.url, "team/big", os.urandom(BIG))
    with RegistryServer(f"file://{storage}", {"proxy": upstream_config(upstream.url)}) as mirror:
        mark = upstream.mark()
        url = f"{mirror.url}/v2/up/team/big/blobs/{digest}"
        async with httpx.AsyncClient(timeout=120) as client:
            results = await asyncio.gather(*(_fetch(client, url) for _ in range(20)))
        assert results == [(200, str(digest))] * 20
        gets = [r for r in upstream.requests_since(mark) if r.method == "GET"]
        assert [r.uri for r in gets] == [f"/v2/team/big/blobs/{digest}"], gets
        assert _stored(storage, digest)


async def test_upstream_cut_mid_blob_caches_nothing_and_the_next_pull_works(
    upstream: DockerRegistry, storage: Path
) -> None:
    data = os.urandom(8 * 1024 * 1024)
    digest = await _push_blob(upstream.url, "team/big", data)
    port = int(upstream.host.rsplit(":", 1)[1])
    async with TcpCutProxy("127.0.0.1", port, cut_after=3 * 1024 * 1024) as cut:
        config = {"proxy": upstream_config(f"http://127.0.0.1:{cut.port}")}
        with RegistryServer(f"file://{storage}", config) as mirror:
            url = f"{mirror.url}/v2/up/team/big/blobs/{digest}"
            async with httpx.AsyncClient(timeout=120) as client:
                with pytest.raises(httpx.HTTPError):  # a cut connection, never a whole body
                    await _fetch(client, url)
                assert cut.cuts == 1
                assert not _stored(storage, digest)
                assert _temp_objects(storage) == []
                assert await _fetch(client, url) == (200, str(digest))
            assert _stored(storage, digest)


async def test_bytes_that_do_not_match_their_digest_are_never_stored(
    upstream: DockerRegistry, storage: Path
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    digest = await _push_blob(upstream.url, "team/big", data)
    # Corrupt the upstream's own copy: it will serve other bytes under the same digest.
    on_disk = (
        (upstream.root / "docker/registry/v2/blobs" / digest.algorithm / digest.hex[:2])
        / digest.hex
        / "data"
    )
    on_disk.write_bytes(bytes(b ^ 0xFF for b in data[:16]) + data[16:])
    with RegistryServer(f"file://{storage}", {"proxy": upstream_config(upstream.url)}) as mirror:
        url = f"{mirror.url}/v2/up/team/big/blobs/{digest}"
        async with httpx.AsyncClient(timeout=120) as client:
            with pytest.raises(httpx.HTTPError):
                await _fetch(client, url)
            assert not _stored(storage, digest)
            assert _temp_objects(storage) == []


async def test_pyreg_serve_as_the_upstream(tmp_path: Path, storage: Path) -> None:
    up_dir = tmp_path / "upstream-pyreg"
    with RegistryServer(f"file://{up_dir}") as upstream:
        img = image("v1")
        await push_image(upstream.url, "team/app", "v1", img)
        config = {"proxy": upstream_config(upstream.url)}
        with RegistryServer(f"file://{storage}", config) as mirror:
            async with httpx.AsyncClient(base_url=mirror.url, timeout=60) as client:
                assert await pull(client, "up/team/app", "v1") == img.manifest
                upstream.stop()
                assert await pull(client, "up/team/app", "v1") == img.manifest


async def test_two_replicas_on_shared_storage_fetch_a_blob_once(
    upstream: DockerRegistry, storage: Path
) -> None:
    digest = await _push_blob(upstream.url, "team/big", os.urandom(BIG))
    config = {"proxy": upstream_config(upstream.url)}
    with (
        RegistryServer(f"file://{storage}", config) as one,
        RegistryServer(f"file://{storage}", config) as two,
    ):
        mark = upstream.mark()
        urls = [f"{m.url}/v2/up/team/big/blobs/{digest}" for m in (one, two)]
        async with httpx.AsyncClient(timeout=120) as client:
            results = await asyncio.gather(*(_fetch(client, urls[i % 2]) for i in range(10)))
        assert results == [(200, str(digest))] * 10
        gets = [r for r in upstream.requests_since(mark) if r.method == "GET"]
        assert len(gets) == 1, gets  # the other replica waited on the lease in storage
