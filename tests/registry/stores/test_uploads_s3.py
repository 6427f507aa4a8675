"""Uploads over a real S3 API (moto in server mode on 127.0.0.1): parts must be at least
5 MiB except the last, so chunks of any size are coalesced and tails carried over."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from registry.app import create_app
from registry.settings import Settings
from storage_backends import open_backend
from tests.support.moto_server import moto_endpoint, s3_bucket, s3_storage_url  # noqa: F401

MiB = 1024 * 1024


@pytest.fixture
async def s3_client(moto_endpoint: str, s3_bucket: str) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    backend = open_backend(s3_storage_url(moto_endpoint, s3_bucket, "reg"))
    app = create_app(Settings(upload_purge_interval=0), backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


@pytest.mark.slow
async def test_small_and_uneven_chunks_on_s3(s3_client: httpx.AsyncClient) -> None:
    data = os.urandom(13 * MiB + 17)
    cuts = [0, 1 * MiB, 4 * MiB, 4 * MiB + 1, 11 * MiB, len(data)]
    location = (await s3_client.post("/v2/s3/repo/blobs/uploads/")).headers["location"]
    for start, end in itertools.pairwise(cuts):
        response = await s3_client.patch(
            location, content=data[start:end], headers={"Content-Range": f"{start}-{end - 1}"}
        )
        assert response.status_code == 202, response.text
        assert response.headers["range"] == f"0-{end - 1}"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    done = await s3_client.put(f"{location}?digest={digest}")
    assert done.status_code == 201, done.text
    pulled = await s3_client.get(f"/v2/s3/repo/blobs/{digest}")
    assert pulled.status_code in (200, 307)
    if pulled.status_code == 200:
        assert pulled.content == data


@pytest.mark.slow
async def test_tiny_and_empty_blobs_on_s3(s3_client: httpx.AsyncClient) -> None:
    for data in (b"", b"tiny"):
        location = (await s3_client.post("/v2/s3/repo/blobs/uploads/")).headers["location"]
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        done = await s3_client.put(f"{location}?digest={digest}", content=data)
        assert done.status_code == 201, done.text
        head = await s3_client.head(f"/v2/s3/repo/blobs/{digest}")
        assert head.headers["content-length"] == str(len(data))
