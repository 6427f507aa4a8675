"""What only the S3 backend does: options, key prefixes, request shapes (against moto over HTTP).

Requests are counted with botocore's own event hooks on the live client, not with mocks.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from storage_backends import NotFound, StorageError, open_backend
from storage_backends.s3 import S3Backend
from tests.support.moto_server import create_bucket, s3_client, s3_storage_url
from tests.support.tcp_cut_proxy import TcpCutProxy

MiB = 1024 * 1024


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def count_requests(backend: S3Backend) -> Counter[str]:
    """Count the S3 operations the backend's client sends from now on."""
    calls: Counter[str] = Counter()

    def before_call(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    backend._client.meta.events.register("before-call.s3", before_call)
    return calls


@pytest.fixture
async def s3(moto_endpoint: str, s3_bucket: str) -> AsyncIterator[S3Backend]:
    backend = S3Backend(s3_bucket, "pre", endpoint_url=moto_endpoint, part_size=5 * MiB)
    await backend.open()
    yield backend
    await backend.close()


# -- options -------------------------------------------------------------------------------


def test_from_options_parses_strings() -> None:
    backend = S3Backend.from_options(
        "bkt",
        "/a/b/",
        {"redirect": "true", "part_size": str(6 * MiB), "addressing_style": "path"},
    )
    assert backend.redirect is True
    assert backend.part_size == 6 * MiB
    assert backend.prefix == "a/b"
    assert backend.addressing_style == "path"


@pytest.mark.parametrize(
    "options",
    [
        {"unknown": "x"},
        {"redirect": "maybe"},
        {"part_size": "big"},
        {"part_size": str(1 * MiB)},  # under S3's 5 MiB minimum
        {"addressing_style": "sideways"},
        {"endpoint_url": 5},
    ],
)
def test_from_options_refuses_bad_values(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        S3Backend.from_options("bkt", "", options)


def test_bucket_required() -> None:
    with pytest.raises(ValueError):
        open_backend("s3:///prefix")


async def test_open_backend_url_with_query(moto_endpoint: str, s3_bucket: str) -> None:
    url = s3_storage_url(moto_endpoint, s3_bucket, "some/prefix", redirect="1")
    backend = open_backend(url, part_size=7 * MiB)
    assert isinstance(backend, S3Backend)
    assert (backend.bucket, backend.prefix, backend.endpoint_url) == (
        s3_bucket,
        "some/prefix",
        moto_endpoint,
    )
    assert backend.redirect is True and backend.part_size == 7 * MiB
    await backend.open()
    try:
        await backend.put("k", b"v")
        assert await backend.get("k") == b"v"
    finally:
        await backend.close()


async def test_endpoint_and_credentials_from_environment(
    moto_endpoint: str, s3_bucket: str
) -> None:
    # No endpoint or credentials given: the standard AWS_* variables (set to moto) apply.
    assert os.environ["AWS_ENDPOINT_URL"] == moto_endpoint
    backend = open_backend(f"s3://{s3_bucket}/env")
    await backend.open()
    try:
        await backend.put("k", b"from env")
    finally:
        await backend.close()
    listed = s3_client(moto_endpoint).list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["env/k"]


async def test_not_opened_is_an_error(s3_bucket: str) -> None:
    with pytest.raises(StorageError):
        await S3Backend(s3_bucket).get("k")


async def test_missing_bucket_fails_at_open(moto_endpoint: str) -> None:
    backend = S3Backend("no-such-bucket-here", endpoint_url=moto_endpoint)
    with pytest.raises(StorageError, match="no-such-bucket-here") as info:
        await backend.open()
    assert not isinstance(info.value, NotFound)
    with pytest.raises(StorageError):  # and it is not half open
        await backend.get("k")


async def test_bucket_deleted_later_is_not_notfound(moto_endpoint: str) -> None:
    bucket = create_bucket(moto_endpoint)
    backend = S3Backend(bucket, endpoint_url=moto_endpoint)
    await backend.open()
    try:
        s3_client(moto_endpoint).delete_bucket(Bucket=bucket)
        with pytest.raises(StorageError) as info:
            await backend.put("k", b"v")
        assert not isinstance(info.value, NotFound)
    finally:
        await backend.close()


# -- keys and prefixes ---------------------------------------------------------------------


async def test_prefixes_are_isolated(moto_endpoint: str, s3_bucket: str) -> None:
    one = S3Backend(s3_bucket, "one", endpoint_url=moto_endpoint)
    sibling = S3Backend(s3_bucket, "one-two", endpoint_url=moto_endpoint)
    await one.open()
    await sibling.open()
    try:
        await one.put("a/k", b"1")
        await sibling.put("a/k", b"2")
        assert [k async for k in one.walk("")] == ["a/k"]
        assert await one.list_dir("") == ["a"]
        await one.delete_prefix("")
        assert await sibling.get("a/k") == b"2"
        assert [k async for k in one.walk("")] == []
    finally:
        await one.close()
        await sibling.close()
    listed = s3_client(moto_endpoint).list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["one-two/a/k"]


async def test_listings_paginate(moto_endpoint: str, s3_bucket: str) -> None:
    backend = S3Backend(s3_bucket, "p", endpoint_url=moto_endpoint, page_size=2)
    await backend.open()
    try:
        names = ["d/a", "d/b", "d/c/x", "d/d/y", "d/e", "d/f/z", "d/g"]
        for name in names:
            await backend.put(name, b"x")
        calls = count_requests(backend)
        assert await backend.list_dir("d") == ["a", "b", "c", "d", "e", "f", "g"]
        assert [k async for k in backend.walk("d")] == names
        assert calls["ListObjectsV2"] >= 6  # several pages each
        upload = await backend.multipart_create("m")
        for n in (1, 2, 3, 4, 5):
            await backend.multipart_upload_part("m", upload, n, chunks_of(b"p", 1), 1)
        parts = await backend.multipart_list_parts("m", upload)
        assert [p.number for p in parts] == [1, 2, 3, 4, 5]
        assert calls["ListParts"] >= 3
    finally:
        await backend.close()


# -- request shapes ------------------------------------------------------------------------


async def test_upload_part_requires_size(s3: S3Backend) -> None:
    upload = await s3.multipart_create("k")
    with pytest.raises(StorageError, match="exact size"):
        await s3.multipart_upload_part("k", upload, 1, chunks_of(b"abc", 1))
    assert await s3.multipart_list_parts("k", upload) == []


async def test_put_stream_small_is_one_put(s3: S3Backend) -> None:
    calls = count_requests(s3)
    await s3.put_stream("small", chunks_of(b"x" * (3 * MiB), 65_536))
    assert calls == Counter({"PutObject": 1})


async def test_put_stream_large_uses_bounded_parts(s3: S3Backend) -> None:
    calls = count_requests(s3)
    data = random.Random(1).randbytes(12 * MiB + 1)
    await s3.put_stream("large", chunks_of(data, 100_000))
    assert calls["PutObject"] == 0
    assert calls["CreateMultipartUpload"] == 1
    assert calls["UploadPart"] == 3  # 5 MiB, 5 MiB, 2 MiB + 1
    assert calls["CompleteMultipartUpload"] == 1
    assert await s3.get("large") == data


async def test_failed_put_stream_aborts_multipart(moto_endpoint: str, s3: S3Backend) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (6 * MiB)
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await s3.put_stream("k", broken())
    uploads = s3_client(moto_endpoint).list_multipart_uploads(Bucket=s3.bucket)
    assert uploads.get("Uploads", []) == []


async def test_move_small_is_one_copy(s3: S3Backend) -> None:
    await s3.put("src", b"abc")
    calls = count_requests(s3)
    await s3.move("src", "dst")
    assert calls["CopyObject"] == 1 and calls["UploadPartCopy"] == 0
    assert await s3.get("dst") == b"abc"


async def test_move_large_uses_part_copies(moto_endpoint: str) -> None:
    bucket = create_bucket(moto_endpoint)
    backend = S3Backend(
        bucket,
        endpoint_url=moto_endpoint,
        copy_threshold=6 * MiB,  # stands in for CopyObject's 5 GiB limit
        copy_part_size=5 * MiB,
    )
    await backend.open()
    try:
        data = random.Random(2).randbytes(12 * MiB + 3)
        await backend.put("src/big", data)
        calls = count_requests(backend)
        await backend.move("src/big", "dst/big")
        assert calls["CopyObject"] == 0
        assert calls["UploadPartCopy"] == 3
        assert await backend.get("dst/big") == data
        assert not await backend.exists("src/big")
    finally:
        await backend.close()


async def test_stream_uses_ranged_gets(s3: S3Backend) -> None:
    await s3.put("obj", b"0123456789")
    calls = count_requests(s3)
    assert b"".join([p async for p in s3.stream("obj", 3, 4)]) == b"3456"
    assert calls == Counter({"GetObject": 1})


# -- broken connections --------------------------------------------------------------------


async def _through_cut_proxy(
    moto_endpoint: str, bucket: str, data: bytes, cut_after: int
) -> tuple[TcpCutProxy, S3Backend]:
    direct = S3Backend(bucket, "p", endpoint_url=moto_endpoint)
    await direct.open()
    await direct.put("blob", data)
    await direct.close()
    parts = urlsplit(moto_endpoint)
    assert parts.hostname is not None and parts.port is not None
    proxy = TcpCutProxy(parts.hostname, parts.port, cut_after=cut_after)
    await proxy.__aenter__()
    flaky = S3Backend(bucket, "p", endpoint_url=f"http://127.0.0.1:{proxy.port}")
    await flaky.open()
    return proxy, flaky


async def test_stream_resumes_after_a_broken_connection(moto_endpoint: str, s3_bucket: str) -> None:
    data = random.Random(3).randbytes(8 * MiB)
    proxy, flaky = await _through_cut_proxy(moto_endpoint, s3_bucket, data, cut_after=3 * MiB)
    try:
        calls = count_requests(flaky)
        got = b"".join([p async for p in flaky.stream("blob", 100, 7 * MiB)])
        assert proxy.cuts == 1
        assert calls["GetObject"] == 2  # the first, cut short, then one resuming from there
        assert got == data[100 : 100 + 7 * MiB]
    finally:
        await flaky.close()
        await proxy.__aexit__(None, None, None)


async def test_stream_does_not_resume_onto_a_replaced_object(
    moto_endpoint: str, s3_bucket: str
) -> None:
    data = random.Random(4).randbytes(8 * MiB)
    proxy, flaky = await _through_cut_proxy(moto_endpoint, s3_bucket, data, cut_after=3 * MiB)
    try:
        stream = flaky.stream("blob")
        first = await stream.__anext__()
        assert first == data[: len(first)]
        await flaky.put("blob", b"a different object")
        with pytest.raises(StorageError):
            async for _ in stream:
                pass
        assert proxy.cuts == 1
    finally:
        await flaky.close()
        await proxy.__aexit__(None, None, None)


async def test_get_cut_short_is_a_storage_error(moto_endpoint: str, s3_bucket: str) -> None:
    # `get` is for small objects and does not resume; a broken read is still a typed error.
    data = random.Random(5).randbytes(4 * MiB)
    proxy, flaky = await _through_cut_proxy(moto_endpoint, s3_bucket, data, cut_after=1 * MiB)
    try:
        with pytest.raises(StorageError):
            await flaky.get("blob")
        assert proxy.cuts == 1
        assert await flaky.get("blob") == data  # the next connection is fine
    finally:
        await flaky.close()
        await proxy.__aexit__(None, None, None)
