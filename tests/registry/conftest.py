"""Fixtures for the registry's tests: stores and an in-process app over every backend
(memory, filesystem, and S3 on moto in server mode over loopback HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.app import create_app
from registry.settings import Settings
from registry.stores.repository import RegistryStore
from storage_backends.base import StorageBackend
from storage_backends.memory import MemoryBackend
from tests.support.moto_server import create_bucket, moto_endpoint, s3_storage_url  # noqa: F401
from tests.support.rgw import Rgw, rgw  # noqa: F401


def _make_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StorageBackend:
    if kind == "rgw":
        # A real S3 (Ceph RGW), a fresh bucket per test.
        from storage_backends import open_backend

        cluster: Rgw = request.getfixturevalue("rgw")
        return open_backend(cluster.storage_url(cluster.create_bucket(), "registry"))
    if kind == "s3":
        # moto in server mode over HTTP on 127.0.0.1, a fresh bucket per test.
        from storage_backends import open_backend

        endpoint: str = request.getfixturevalue("moto_endpoint")
        return open_backend(s3_storage_url(endpoint, create_bucket(endpoint), "registry"))
    if kind == "memory":
        return MemoryBackend()
    if kind == "memory-min-part":
        # Behaves like S3's part rules (a minimum part size) at a size tests can reach.
        return MemoryBackend(min_part_size=1024)
    from storage_backends.filesystem import FilesystemBackend

    return FilesystemBackend(tmp_path / "storage")


@pytest.fixture(params=["memory", "filesystem", "s3", "rgw"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def backend(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StorageBackend]:
    storage = _make_backend(backend_kind, tmp_path, request)
    await storage.open()
    yield storage
    await storage.close()


@pytest.fixture
def registry_store(backend: StorageBackend) -> RegistryStore:
    return RegistryStore(backend, upload_buffer_size=4096)


@pytest.fixture
def settings() -> Settings:
    return Settings(max_manifest_size=64 * 1024)


@pytest.fixture
async def client(backend: StorageBackend, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in process (lifespan run by hand: ASGITransport
    does not run it)."""
    app = create_app(settings, backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c
