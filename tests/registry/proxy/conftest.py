"""Fixtures of the pull-through cache tests: a real upstream (the reference registry, or
`pyreg serve`), images pushed to it over HTTP, and a mirror app in process over real storage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from registry.app import create_app
from registry.proxy.cache import ProxyCache
from registry.settings import Settings
from storage_backends.filesystem import FilesystemBackend
from tests.support.docker_registry import DockerRegistry, start_registry
from tests.support.images import Image, build_image, file

Mirror = Callable[..., AbstractAsyncContextManager[tuple[httpx.AsyncClient, ProxyCache]]]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[DockerRegistry]:
    registry = start_registry(tmp_path / "upstream")
    try:
        yield registry
    finally:
        registry.stop()


def image(tag: str, size: int = 2048) -> Image:
    """A small real image (gzip layers), different for each `tag`."""
    return build_image([[file(f"etc/{tag}", tag.encode() * (size // max(len(tag), 1)))]])


async def push_image(base_url: str, name: str, tag: str, img: Image, **kw: Any) -> None:
    """Push blobs (monolithic) and the manifest over plain HTTP, as any client would."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60, **kw) as client:
        await push_with(client, name, tag, img)


async def push_with(client: httpx.AsyncClient, name: str, tag: str, img: Image) -> None:
    for digest, data in img.blobs().items():
        r = await client.post(f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        sep = "&" if "?" in location else "?"
        r = await client.put(f"{location}{sep}digest={digest}", content=data)
        assert r.status_code == 201, r.text
    r = await client.put(
        f"/v2/{name}/manifests/{tag}",
        content=img.manifest,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text


def upstream_config(url: str, namespace: str = "up", **extra: Any) -> dict[str, Any]:
    return {"upstreams": [{"name": namespace, "url": url, "namespace": namespace, **extra}]}


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "mirror-storage"


@pytest.fixture
def mirror(storage_dir: Path) -> Mirror:
    """`async with mirror(proxy_config, auth=None) as (client, cache)`: the registry app in
    process over filesystem storage, with the pull-through cache configured."""

    @asynccontextmanager
    async def start(
        proxy: dict[str, Any], auth: dict[str, Any] | None = None
    ) -> AsyncIterator[tuple[httpx.AsyncClient, ProxyCache]]:
        backend = FilesystemBackend(storage_dir)
        app = create_app(Settings(proxy=proxy, auth=auth), backend=backend)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mirror") as c:
                yield c, app.state.proxy

    return start


async def pull(client: httpx.AsyncClient, name: str, reference: str) -> bytes:
    """GET the manifest and every blob it names through `client`; the manifest bytes."""
    r = await client.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": mt.OCI_MANIFEST})
    assert r.status_code == 200, r.text
    manifest = json.loads(r.content)
    for desc in [manifest["config"], *manifest["layers"]]:
        blob = await client.get(f"/v2/{name}/blobs/{desc['digest']}")
        assert blob.status_code == 200, blob.text
        assert len(blob.content) == desc["size"]
    return r.content
