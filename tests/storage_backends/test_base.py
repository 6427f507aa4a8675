"""The behavioural suite for the `StorageBackend` contract in storage_backends/base.py.

Every test runs against the memory, filesystem and S3 (moto over HTTP) backends, through the
`harness` fixture in conftest.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from storage_backends import CHUNK_SIZE, InvalidPath, NotFound, StorageBackend, StorageError
from tests.storage_backends.conftest import Harness, s3_backend

MiB = 1024 * 1024


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (so offsets and part order show up in comparisons)."""
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in it])


async def keys(backend: StorageBackend, prefix: str) -> list[str]:
    return [k async for k in backend.walk(prefix)]


# -- objects -------------------------------------------------------------------------------


async def test_put_get_roundtrip(harness: Harness) -> None:
    b = harness.backend
    await b.put("a/b/c", b"hello")
    await b.put("empty", b"")
    assert await b.get("a/b/c") == b"hello"
    assert await b.get("empty") == b""
    assert await b.exists("a/b/c")
    assert not await b.exists("a/b")  # a prefix is not an object


async def test_put_replaces(harness: Harness) -> None:
    b = harness.backend
    await b.put("k", b"old contents")
    await b.put("k", b"new")
    assert await b.get("k") == b"new"
    assert (await b.stat("k")).size == 3


async def test_failed_put_stream_leaves_old_object_and_no_debris(harness: Harness) -> None:
    b = harness.backend
    await b.put("dir/k", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield pattern(3 * MiB)
        yield pattern(3 * MiB, seed=1)  # past S3's first part: a multipart upload is open
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await b.put_stream("dir/k", broken())
    assert await b.get("dir/k") == b"old"
    assert await b.list_dir("dir") == ["k"]
    assert await keys(b, "") == ["dir/k"]


async def test_stat(harness: Harness) -> None:
    b = harness.backend
    before = time.time()
    await b.put("x/y", b"12345")
    st = await b.stat("x/y")
    assert st.size == 5
    # S3 keeps whole seconds.
    assert before - 2 <= st.modified <= time.time() + 2


async def test_not_found_everywhere(harness: Harness) -> None:
    b = harness.backend
    await b.put("present/object", b"x")
    missing = "present/missing"
    for call in (
        lambda: b.get(missing),
        lambda: b.stat(missing),
        lambda: b.move(missing, "elsewhere"),
        lambda: b.list_dir("absent"),
        lambda: b.list_dir("present/object"),  # an object is not a directory
        lambda: collect(b.stream(missing)),
        lambda: collect(b.stream(missing, 5)),
        lambda: collect(b.stream(missing, 0, 0)),
    ):
        with pytest.raises(NotFound):
            await call()
    assert not await b.exists(missing)
    assert await keys(b, "absent") == []
    await b.delete(missing)  # no error
    await b.delete_prefix("absent")  # no error
    assert await b.list_dir("") == ["present"]


async def test_stream_raises_before_yielding(harness: Harness) -> None:
    it = harness.backend.stream("nothing/here")
    with pytest.raises(NotFound):
        await it.__anext__()


# -- streams -------------------------------------------------------------------------------


async def test_stream_offsets_and_lengths(harness: Harness) -> None:
    b = harness.backend
    data = pattern(2 * CHUNK_SIZE + 12345)
    await b.put("obj", data)
    size = len(data)
    cases: list[tuple[int, int | None]] = [
        (0, None),
        (1, None),
        (CHUNK_SIZE + 7, None),
        (0, 10),
        (5, CHUNK_SIZE + 3),
        (size - 1, None),
        (size - 10, 100),  # length past the end: the rest
        (size, None),  # offset at the end: nothing
        (size + 100, None),  # beyond the end: nothing
        (size + 100, 5),
        (10, 0),
    ]
    for offset, length in cases:
        pieces = [p async for p in b.stream("obj", offset, length)]
        expected = data[offset:] if length is None else data[offset : offset + length]
        assert b"".join(pieces) == expected, (offset, length)
        assert all(0 < len(p) <= CHUNK_SIZE for p in pieces), (offset, length)


async def test_stream_empty_object(harness: Harness) -> None:
    b = harness.backend
    await b.put("empty", b"")
    assert await collect(b.stream("empty")) == b""
    assert await collect(b.stream("empty", 0, 10)) == b""


async def test_stream_refuses_negative_ranges(harness: Harness) -> None:
    b = harness.backend
    await b.put("obj", b"abc")
    with pytest.raises(ValueError):
        await collect(b.stream("obj", -1))
    with pytest.raises(ValueError):
        await collect(b.stream("obj", 0, -1))


async def test_put_stream_large_odd_chunks(harness: Harness) -> None:
    b = harness.backend
    # 12 MiB and a bit: on S3 (5 MiB parts here) that is two full parts and a short last one.
    data = pattern(12 * MiB + 4099)
    written = await b.put_stream("big/blob", chunked(data, 65_521))
    assert written == len(data)
    assert (await b.stat("big/blob")).size == len(data)
    streamed = hashlib.sha256()
    async for piece in b.stream("big/blob"):
        streamed.update(piece)
    assert streamed.digest() == hashlib.sha256(data).digest()
    assert await collect(b.stream("big/blob", 5 * MiB - 3, 10)) == data[5 * MiB - 3 : 5 * MiB + 7]


async def test_put_stream_small_and_empty(harness: Harness) -> None:
    b = harness.backend
    assert await b.put_stream("s", chunked(b"abcdef", 4)) == 6
    assert await b.get("s") == b"abcdef"
    assert await b.put_stream("e", chunked(b"", 4)) == 0
    assert await b.get("e") == b""


# -- listing -------------------------------------------------------------------------------

LAYOUT = ["a/b/c", "a/b/e", "a/b-d", "a/z", "a-x", "b", "c/d/e/f"]


async def test_list_dir_sorted_direct_children(harness: Harness) -> None:
    b = harness.backend
    for k in reversed(LAYOUT):
        await b.put(k, k.encode())
    assert await b.list_dir("") == ["a", "a-x", "b", "c"]
    assert await b.list_dir("a") == ["b", "b-d", "z"]
    assert await b.list_dir("a/") == ["b", "b-d", "z"]
    assert await b.list_dir("a/b") == ["c", "e"]
    assert await b.list_dir("c/d") == ["e"]


async def test_list_dir_pages_with_start_after_and_limit(harness: Harness) -> None:
    b = harness.backend
    names = ["t-1", "t.2", "t0", "t1", "t10", "t2", "v"]
    for name in reversed(names):
        await b.put(f"idx/{name}", b"")
    assert await b.list_dir("idx", limit=3) == names[:3]
    assert await b.list_dir("idx", start_after="t0", limit=3) == ["t1", "t10", "t2"]
    assert await b.list_dir("idx", start_after="t", limit=2) == ["t-1", "t.2"]
    assert await b.list_dir("idx", start_after="t2") == ["v"]
    assert await b.list_dir("idx", start_after="v", limit=5) == []
    assert await b.list_dir("idx", limit=0) == []
    assert await b.list_dir("absent", start_after="a", limit=5) == []  # no NotFound when paged
    # Sub-directories are children too; the one named by start_after is not repeated.
    await b.put("idx/t1x/deep", b"")
    assert await b.list_dir("idx", start_after="t1", limit=2) == ["t10", "t1x"]


async def test_walk_sorted_and_nested(harness: Harness) -> None:
    b = harness.backend
    for k in reversed(LAYOUT):
        await b.put(k, k.encode())
    # "a-x" sorts before "a/b/c" as a key ("-" < "/"), though the directory "a" precedes it.
    assert await keys(b, "") == sorted(LAYOUT)
    assert await keys(b, "a") == ["a/b-d", "a/b/c", "a/b/e", "a/z"]
    assert await keys(b, "a/b") == ["a/b/c", "a/b/e"]
    assert await keys(b, "c/d/e") == ["c/d/e/f"]


async def test_keys_with_special_characters(harness: Harness) -> None:
    b = harness.backend
    names = ["a b/c+d", "a b/%41&x=1", "q/what?#frag", "\u00fc/\u2603;~", "dots/..a/b.."]
    for name in names:
        await b.put(name, name.encode())
    for name in names:
        assert await b.get(name) == name.encode()
        assert (await b.stat(name)).size == len(name.encode())
    assert await keys(b, "") == sorted(names)
    assert await b.list_dir("a b") == ["%41&x=1", "c+d"]
    await b.move("a b/c+d", "q/what?#frag2")
    assert await b.get("q/what?#frag2") == b"a b/c+d"


# -- deletion and moves --------------------------------------------------------------------


async def test_delete_removes_object_and_empty_prefixes(harness: Harness) -> None:
    b = harness.backend
    await b.put("d/e/f", b"1")
    await b.put("d/g", b"2")
    await b.delete("d/e/f")
    assert not await b.exists("d/e/f")
    assert await b.list_dir("d") == ["g"]
    with pytest.raises(NotFound):
        await b.list_dir("d/e")
    await b.delete("d/g")
    with pytest.raises(NotFound):
        await b.list_dir("d")
    assert await b.list_dir("") == []


async def test_delete_prefix_respects_segment_boundary(harness: Harness) -> None:
    b = harness.backend
    for k in LAYOUT:
        await b.put(k, b"x")
    await b.delete_prefix("a")
    assert await keys(b, "") == ["a-x", "b", "c/d/e/f"]
    await b.delete_prefix("c/d")
    assert await keys(b, "") == ["a-x", "b"]
    assert await b.list_dir("") == ["a-x", "b"]


async def test_delete_prefix_root_empties_everything(harness: Harness) -> None:
    b = harness.backend
    for k in LAYOUT:
        await b.put(k, b"x")
    await b.delete_prefix("")
    assert await keys(b, "") == []
    assert await b.list_dir("") == []


async def test_move(harness: Harness) -> None:
    b = harness.backend
    await b.put("src/one", b"payload")
    await b.put("dst/deep/target", b"old")
    await b.move("src/one", "dst/deep/target")
    assert await b.get("dst/deep/target") == b"payload"
    assert not await b.exists("src/one")
    with pytest.raises(NotFound):
        await b.list_dir("src")
    await b.move("dst/deep/target", "new/nested/place")
    assert await keys(b, "") == ["new/nested/place"]
    await b.move("new/nested/place", "new/nested/place")  # onto itself: nothing changes
    assert await b.get("new/nested/place") == b"payload"


# -- path checks ---------------------------------------------------------------------------

BAD_PATHS = ["../x", "a/../../x", "/abs", "a//b", "a/./b", "", "a/", "a\\..\\b", "nul\x00"]


def _calls(b: StorageBackend, bad: str) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: b.get(bad),
        lambda: b.put(bad, b"x"),
        lambda: b.put_stream(bad, chunked(b"x", 1)),
        lambda: collect(b.stream(bad)),
        lambda: b.stat(bad),
        lambda: b.exists(bad),
        lambda: b.delete(bad),
        lambda: b.move("ok", bad),
        lambda: b.move(bad, "ok2"),
        lambda: b.multipart_create(bad),
        lambda: b.redirect_url(bad),
    ]


@pytest.mark.parametrize("bad", BAD_PATHS)
async def test_path_escapes_refused(harness: Harness, bad: str) -> None:
    b = harness.backend
    await b.put("ok", b"fine")
    for call in _calls(b, bad):
        with pytest.raises(InvalidPath):
            await call()
    if bad:  # "" is the root, a valid prefix
        for prefix_call in (
            lambda: b.list_dir(bad + "/x" if bad.endswith("/") else bad),
            lambda: keys(b, bad + "/x" if bad.endswith("/") else bad),
            lambda: b.delete_prefix(bad + "/x" if bad.endswith("/") else bad),
        ):
            with pytest.raises(InvalidPath):
                await prefix_call()
    assert await b.get("ok") == b"fine"
    assert await keys(b, "") == ["ok"]


# -- multipart -----------------------------------------------------------------------------


def _part_sizes(backend: StorageBackend) -> list[int]:
    # Non-last parts at the backend's minimum (odd sizes where there is none), a short last one.
    first = backend.min_part_size or 1_000_003
    return [first, first + 17, 12_345]


async def test_multipart_across_instances(harness: Harness) -> None:
    b = harness.backend
    sizes = _part_sizes(b)
    blobs = [pattern(n, seed=i) for i, n in enumerate(sizes)]
    upload = await b.multipart_create("uploads/blob")
    p1 = await b.multipart_upload_part(
        "uploads/blob", upload, 1, chunked(blobs[0], 77_777), sizes[0]
    )
    assert (p1.number, p1.size) == (1, sizes[0])
    await b.multipart_upload_part("uploads/blob", upload, 2, chunked(blobs[1], 1 * MiB), sizes[1])
    assert not await b.exists("uploads/blob")  # nothing visible before complete
    assert await keys(b, "") == []

    # "Restart": a second instance on the same storage finds the parts and finishes the upload.
    other = await harness.reopen()
    listed = await other.multipart_list_parts("uploads/blob", upload)
    assert [(p.number, p.size) for p in listed] == [(1, sizes[0]), (2, sizes[1])]
    assert listed[0].etag == p1.etag
    p3 = await other.multipart_upload_part(
        "uploads/blob", upload, 3, chunked(blobs[2], 4096), sizes[2]
    )
    await other.multipart_complete("uploads/blob", upload, [*listed, p3])

    assert await b.get("uploads/blob") == b"".join(blobs)
    assert await keys(b, "") == ["uploads/blob"]
    with pytest.raises(NotFound):  # the upload is finished
        await b.multipart_list_parts("uploads/blob", upload)


async def test_multipart_reupload_replaces_part(harness: Harness) -> None:
    b = harness.backend
    size = b.min_part_size or 1000
    first, second, last = pattern(size, 1), pattern(size, 2), b"tail"
    upload = await b.multipart_create("k")
    await b.multipart_upload_part("k", upload, 1, chunked(first, 4096), size)
    await b.multipart_upload_part("k", upload, 1, chunked(second, 4096), size)
    await b.multipart_upload_part("k", upload, 2, chunked(last, 4096), len(last))
    parts = await b.multipart_list_parts("k", upload)
    assert [p.number for p in parts] == [1, 2]
    await b.multipart_complete("k", upload, parts)
    assert await b.get("k") == second + last


async def test_multipart_single_part(harness: Harness) -> None:
    b = harness.backend
    data = pattern(123_457)
    upload = await b.multipart_create("one/part")
    part = await b.multipart_upload_part("one/part", upload, 1, chunked(data, 10_000), len(data))
    await b.multipart_complete("one/part", upload, [part])
    assert await b.get("one/part") == data


async def test_multipart_abort(harness: Harness) -> None:
    b = harness.backend
    upload = await b.multipart_create("gone")
    part = await b.multipart_upload_part("gone", upload, 1, chunked(b"abc", 2), 3)
    await b.multipart_abort("gone", upload)
    with pytest.raises(NotFound):
        await b.multipart_list_parts("gone", upload)
    with pytest.raises(NotFound):
        await b.multipart_complete("gone", upload, [part])
    with pytest.raises(NotFound):
        await b.multipart_upload_part("gone", upload, 2, chunked(b"x", 1), 1)
    await b.multipart_abort("gone", upload)  # twice is fine
    assert not await b.exists("gone")
    assert await keys(b, "") == []


async def test_multipart_unknown_upload_or_wrong_path(harness: Harness) -> None:
    b = harness.backend
    upload = await b.multipart_create("right")
    cases = [("right", "0" * 32), ("right", "../../etc")]
    if harness.kind != "s3":  # moto does not tie upload ids to keys (S3 does)
        cases.append(("wrong", upload))
    for path, upload_id in cases:
        with pytest.raises(NotFound):
            await b.multipart_list_parts(path, upload_id)
        with pytest.raises(NotFound):
            await b.multipart_upload_part(path, upload_id, 1, chunked(b"x", 1), 1)


async def test_multipart_part_size_mismatch(harness: Harness) -> None:
    b = harness.backend
    upload = await b.multipart_create("k")
    with pytest.raises(StorageError):
        await b.multipart_upload_part("k", upload, 1, chunked(b"abcd", 2), 3)
    with pytest.raises(StorageError):
        await b.multipart_upload_part("k", upload, 1, chunked(b"ab", 2), 3)
    assert await b.multipart_list_parts("k", upload) == []


async def test_multipart_min_part_size(harness: Harness) -> None:
    b = harness.backend
    upload = await b.multipart_create("small")
    p1 = await b.multipart_upload_part("small", upload, 1, chunked(b"tiny", 4), 4)
    p2 = await b.multipart_upload_part("small", upload, 2, chunked(b"last", 4), 4)
    if b.min_part_size:
        # A non-last part under the minimum is refused, and not as "not found".
        with pytest.raises(StorageError) as info:
            await b.multipart_complete("small", upload, [p1, p2])
        assert not isinstance(info.value, NotFound)
        assert not await b.exists("small")
    else:
        await b.multipart_complete("small", upload, [p1, p2])
        assert await b.get("small") == b"tinylast"


async def test_multipart_complete_leaves_out_stray_parts(harness: Harness) -> None:
    # A request that died after uploading parts but before its caller recorded them leaves
    # stray parts; completing with the recorded ones must give exactly those (RGW refuses a
    # completion that does not name every part: the S3 backend rewrites without them).
    b = harness.backend
    size = b.min_part_size or 10
    first, stray1, stray2 = pattern(size), b"s" * size, b"t" * size
    upload = await b.multipart_create("k")
    p1 = await b.multipart_upload_part("k", upload, 1, chunked(first, 4096), size)
    await b.multipart_upload_part("k", upload, 2, chunked(stray1, 4096), size)
    await b.multipart_upload_part("k", upload, 3, chunked(stray2, 4096), size)
    last = await b.multipart_upload_part("k", upload, 10000, chunked(b"end", 3), 3)
    await b.multipart_complete("k", upload, [p1, last])
    assert await b.get("k") == first + b"end"
    with pytest.raises(NotFound):
        await b.multipart_list_parts("k", upload)


async def test_multipart_complete_refuses_unordered_or_unknown_parts(harness: Harness) -> None:
    b = harness.backend
    size = b.min_part_size or 10
    upload = await b.multipart_create("k")
    p1 = await b.multipart_upload_part("k", upload, 1, chunked(pattern(size), 4096), size)
    p2 = await b.multipart_upload_part("k", upload, 2, chunked(b"end", 3), 3)
    with pytest.raises(StorageError):
        await b.multipart_complete("k", upload, [p2, p1])
    with pytest.raises(StorageError):
        await b.multipart_complete("k", upload, [p1, p2, type(p2)(3, 3, p2.etag)])
    assert not await b.exists("k")


# -- redirects -----------------------------------------------------------------------------


async def test_redirect_url(harness: Harness) -> None:
    b = harness.backend
    await b.put("blob", b"direct bytes")
    assert await b.redirect_url("blob") is None  # off unless configured
    if harness.kind != "s3":
        return
    endpoint: str = os.environ["AWS_ENDPOINT_URL"]
    bucket = b.bucket  # type: ignore[attr-defined]
    redirecting = s3_backend(endpoint, bucket, redirect="true")
    await redirecting.open()
    try:
        url = await redirecting.redirect_url("blob", expires_in=60)
    finally:
        await redirecting.close()
    assert url is not None and url.startswith(endpoint)
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == b"direct bytes"


async def test_redirect_url_is_sigv4_and_refused_when_tampered_or_expired(
    harness: Harness,
) -> None:
    # moto accepts any presigned URL; RGW checks them as S3 does, so this runs there only.
    if harness.kind != "rgw":
        pytest.skip("needs a real S3 (RGW) that verifies presigned URLs")
    b = harness.backend
    await b.put("blob", b"direct bytes")
    await b.put("other", b"someone else's bytes")
    redirecting = harness.make()
    redirecting.redirect = True  # type: ignore[attr-defined]
    await redirecting.open()
    harness.opened.append(redirecting)
    url = await redirecting.redirect_url("blob", expires_in=60)
    short = await redirecting.redirect_url("blob", expires_in=1)
    assert url is not None and short is not None
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Signature=" in url
    async with httpx.AsyncClient() as client:
        good = await client.get(url)
        tampered = await client.get(url.replace("/blob?", "/other?"))
        await asyncio.sleep(2.5)  # the short URL's expiry (seconds) must pass
        expired = await client.get(short)
    assert good.status_code == 200 and good.content == b"direct bytes"
    assert tampered.status_code == 403
    assert expired.status_code == 403
