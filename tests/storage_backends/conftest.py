"""One harness per backend kind; `test_suite.py` runs every behaviour against each of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storage_backends import StorageBackend
from storage_backends.filesystem import FilesystemBackend
from storage_backends.memory import MemoryBackend
from storage_backends.s3 import S3Backend
from tests.support.moto_server import REGION, create_bucket, moto_endpoint, s3_bucket
from tests.support.rgw import Rgw, rgw

__all__ = ["Harness", "moto_endpoint", "rgw", "s3_bucket"]

MiB = 1024 * 1024


@dataclass
class Harness:
    kind: str
    backend: StorageBackend
    #: another backend instance on the same storage (same root, same bucket), unopened;
    #: the memory backend has no storage outside its instance, so it hands back itself.
    make: Callable[[], StorageBackend]
    opened: list[StorageBackend] = field(default_factory=list)

    async def reopen(self) -> StorageBackend:
        """A second instance on the same storage, as after a restart or on another replica."""
        other = self.make()
        await other.open()
        self.opened.append(other)
        return other


def s3_backend(endpoint: str, bucket: str, **options: object) -> S3Backend:
    settings: dict[str, object] = {
        "endpoint_url": endpoint,
        "region": REGION,
        "part_size": 5 * MiB,
        **options,
    }
    return S3Backend.from_options(bucket, "pfx/root", settings)


@pytest.fixture(params=["memory", "filesystem", "s3", "rgw"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    make: Callable[[], StorageBackend]
    if request.param == "memory":
        memory = MemoryBackend()
        make = lambda: memory  # noqa: E731
    elif request.param == "filesystem":
        root = tmp_path / "root"
        make = lambda: FilesystemBackend(root)  # noqa: E731
    elif request.param == "rgw":
        # A real S3 (Ceph RGW): what moto accepts but S3 refuses shows up here.
        cluster: Rgw = request.getfixturevalue("rgw")
        rgw_bucket = cluster.create_bucket()
        make = lambda: S3Backend.from_options(  # noqa: E731
            rgw_bucket, "pfx/root", {**cluster.options(), "part_size": 5 * MiB}
        )
    else:
        endpoint: str = request.getfixturevalue("moto_endpoint")
        bucket = create_bucket(endpoint)
        make = lambda: s3_backend(endpoint, bucket)  # noqa: E731
    backend = make()
    await backend.open()
    h = Harness(request.param, backend, make, [backend])
    try:
        yield h
    finally:
        for b in h.opened:
            await b.close()
