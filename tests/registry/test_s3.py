"""The registry on S3 (moto in server mode over loopback HTTP): multipart coalescing of chunked
and streamed uploads, and blob GETs redirected to presigned URLs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator

import httpx
import pytest

from registry.app import create_app
from registry.settings import Settings
from storage_backends import open_backend
from storage_backends.base import Part, StorageBackend
from tests.support.moto_server import moto_endpoint, s3_bucket, s3_storage_url  # noqa: F401

MiB = 1024 * 1024
S3_MIN_PART = 5 * MiB


class PartRecorder:
    """Delegates to the S3 backend and records the size of every part uploaded."""

    def __init__(self, inner: StorageBackend) -> None:
        self._inner = inner
        self.part_sizes: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def multipart_upload_part(
        self,
        path: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        size: int | None = None,
    ) -> Part:
        part = await self._inner.multipart_upload_part(path, upload_id, number, chunks, size)
        self.part_sizes.append(part.size)
        return part


async def _client(backend: object, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, backend=backend)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


@pytest.fixture
def recorder(moto_endpoint: str, s3_bucket: str) -> PartRecorder:  # noqa: F811
    return PartRecorder(open_backend(s3_storage_url(moto_endpoint, s3_bucket, "reg")))


@pytest.fixture
async def client(recorder: PartRecorder) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(recorder, Settings(upload_purge_interval=0)):
        yield c


def _check_parts(sizes: list[int]) -> None:
    assert len(sizes) >= 2, sizes
    assert all(size >= S3_MIN_PART for size in sizes[:-1]), sizes


@pytest.mark.slow
async def test_12_mib_in_1_mib_chunks_becomes_parts_of_at_least_5_mib(
    client: httpx.AsyncClient, recorder: PartRecorder
) -> None:
    data = os.urandom(12 * MiB)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    location = (await client.post("/v2/big/blobs/uploads/")).headers["location"]
    for start in range(0, len(data), MiB):
        end = start + MiB
        response = await client.patch(
            location, content=data[start:end], headers={"Content-Range": f"{start}-{end - 1}"}
        )
        assert response.status_code == 202, response.text
        location = response.headers["location"]
    response = await client.put(location, params={"digest": digest})
    assert response.status_code == 201, response.text
    _check_parts(recorder.part_sizes)
    assert sum(recorder.part_sizes) == len(data)
    pulled = await client.get(f"/v2/big/blobs/{digest}")
    assert hashlib.sha256(pulled.content).hexdigest() == digest.split(":")[1]


@pytest.mark.slow
async def test_one_streamed_20_mib_patch_is_split_into_bounded_parts(
    client: httpx.AsyncClient, recorder: PartRecorder
) -> None:
    hasher = hashlib.sha256()
    total = 20 * MiB

    async def body() -> AsyncIterator[bytes]:
        # Chunked transfer: no Content-Length, the server cannot know the size up front.
        for _ in range(total // MiB):
            piece = os.urandom(MiB)
            hasher.update(piece)
            yield piece

    location = (await client.post("/v2/big/blobs/uploads/")).headers["location"]
    response = await client.patch(location, content=body())
    assert response.status_code == 202, response.text
    assert response.headers["range"] == f"0-{total - 1}"
    digest = f"sha256:{hasher.hexdigest()}"
    response = await client.put(response.headers["location"], params={"digest": digest})
    assert response.status_code == 201, response.text
    _check_parts(recorder.part_sizes)
    # Never the whole body in one part (i.e. in memory at once).
    assert max(recorder.part_sizes) < total
    assert (await client.head(f"/v2/big/blobs/{digest}")).headers["content-length"] == str(total)


async def test_blob_get_redirects_to_a_presigned_url(
    moto_endpoint: str,  # noqa: F811
    s3_bucket: str,  # noqa: F811
) -> None:
    url = s3_storage_url(moto_endpoint, s3_bucket, "reg", redirect="true")
    data = b"served by S3 directly"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    async for client in _client(open_backend(url), Settings(upload_purge_interval=0)):
        response = await client.post(f"/v2/r/blobs/uploads/?digest={digest}", content=data)
        assert response.status_code == 201
        response = await client.get(f"/v2/r/blobs/{digest}")
        assert response.status_code == 307
        location = response.headers["location"]
        assert location.startswith(f"{moto_endpoint}/") and "Signature" in location
        async with httpx.AsyncClient() as direct:
            fetched = await direct.get(location)
        assert fetched.status_code == 200 and fetched.content == data
        # A blob unknown in the repository is still a 404, never a redirect.
        assert (await client.get(f"/v2/other/blobs/{digest}")).status_code == 404


async def test_without_redirect_option_blobs_stream_through_the_registry(
    client: httpx.AsyncClient,
) -> None:
    data = b"streamed"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    await client.post(f"/v2/r/blobs/uploads/?digest={digest}", content=data)
    response = await client.get(f"/v2/r/blobs/{digest}")
    assert response.status_code == 200 and response.content == data
