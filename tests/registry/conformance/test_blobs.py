"""The blob checks of the OCI conformance suite's current runner (`TestBlobAPIs` in
conformance/run.go), for sha256 and sha512: every upload API (monolithic POST, POST+PUT,
chunked with one or several chunks, the last one in the PUT, out-of-order chunks answered
416 and recovered from the upload's status, streamed), cancel, mount from a repository,
anonymous mount, mount of a blob the source lacks, range requests, the empty blob and `{}`,
and every upload API with a wrong digest. Each pushed blob is then HEAD, GET and DELETE
checked as the suite does."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest

from tests.registry.conformance.api import CHUNK_MIN, Api, expect
from tests.registry.conformance.testdata import digest_of

REPO = "conformance/repo1"
REPO2 = "conformance/repo2"
ALGOS = ["sha256", "sha512"]


@pytest.fixture(scope="module")
def api(client: httpx.Client) -> Api:
    return Api(client)


def _blob(algo: str, size: int = 512) -> tuple[str, bytes]:
    body = os.urandom(size)
    return digest_of(body, algo), body


def _check_and_delete(api: Api, dig: str, body: bytes, *, also: str | None = None) -> None:
    api.blob_head_exists(REPO, dig, body)
    api.blob_get_full(REPO, dig, body)
    api.blob_delete(REPO, dig)
    if also:
        api.blob_delete(also, dig)


BIG = CHUNK_MIN * 3 - 5  # spans three chunks
PUSHES: dict[str, tuple[int, Callable[[Api, str, bytes], object]]] = {
    "post only": (512, lambda a, d, b: a.blob_post_only(REPO, d, b)),
    "post+put": (512, lambda a, d, b: a.blob_post_put(REPO, d, b)),
    "chunked single": (512, lambda a, d, b: a.blob_patch_chunked(REPO, d, b)),
    "stream": (512, lambda a, d, b: a.blob_patch_stream(REPO, d, b)),
    "chunked multi": (BIG, lambda a, d, b: a.blob_patch_chunked(REPO, d, b)),
    "chunked multi and put chunk": (
        BIG,
        lambda a, d, b: a.blob_patch_chunked(REPO, d, b, put_last_chunk=True),
    ),
    "chunked out-of-order": (
        BIG,
        lambda a, d, b: a.blob_patch_chunked(REPO, d, b, out_of_order=True),
    ),
    "chunked out-of-order and put chunk": (
        BIG,
        lambda a, d, b: a.blob_patch_chunked(REPO, d, b, put_last_chunk=True, out_of_order=True),
    ),
}


@pytest.mark.parametrize("algo", ALGOS)
def test_get_missing(api: Api, algo: str) -> None:
    dig, _ = _blob(algo)
    expect(api.c.get(f"/v2/{REPO}/blobs/{dig}"), 404)


@pytest.mark.parametrize("name", list(PUSHES))
@pytest.mark.parametrize("algo", ALGOS)
def test_blob_push(api: Api, algo: str, name: str) -> None:
    size, push = PUSHES[name]
    dig, body = _blob(algo, size)
    push(api, dig, body)
    _check_and_delete(api, dig, body)


@pytest.mark.parametrize("algo", ALGOS)
def test_chunked_single_announces_no_minimum(api: Api, algo: str) -> None:
    # pyreg accepts chunks of any size (S3 parts are coalesced server side), so it sends no
    # OCI-Chunk-Min-Length and the suite keeps its own 1 KiB chunks.
    dig, body = _blob(algo)
    assert api.blob_patch_chunked(REPO, dig, body) is None
    api.blob_delete(REPO, dig)


@pytest.mark.parametrize("algo", ALGOS)
def test_post_cancel(api: Api, algo: str) -> None:
    dig, _ = _blob(algo)
    api.blob_post_cancel(REPO)
    expect(api.c.head(f"/v2/{REPO}/blobs/{dig}"), 404)


# With access control on, the suite's client holds a token for the target repository only
# (its auth cache is per repository and kind of request), and a Bearer token reads a mount's
# source only within its own scopes (registry/handlers/uploads.py): the mount is refused and
# the spec's fallback, a plain upload session, follows. See docs/conformance.md.


@pytest.mark.parametrize("algo", ALGOS)
def test_mount(api: Api, algo: str, setup: str) -> None:
    dig, body = _blob(algo)
    api.blob_push_any(REPO2, dig, body)
    api.blob_mount(REPO, REPO2, dig, body, fallback=setup.endswith("+auth"))
    _check_and_delete(api, dig, body, also=REPO2)


@pytest.mark.parametrize("algo", ALGOS)
def test_mount_anonymous(api: Api, algo: str, setup: str) -> None:
    dig, body = _blob(algo)
    api.blob_push_any(REPO2, dig, body)
    # pyreg mounts only from a named source (no search for the digest): a session, always.
    api.blob_mount(REPO, None, dig, body, fallback=True)
    _check_and_delete(api, dig, body, also=REPO2)


@pytest.mark.parametrize("algo", ALGOS)
def test_mount_missing(api: Api, algo: str) -> None:
    dig, body = _blob(algo)
    api.blob_mount_missing(REPO, REPO2, dig, body)
    _check_and_delete(api, dig, body)


RANGES = {
    "range 500-1499": ("bytes=500-1499", slice(500, 1500), "bytes 500-1499/2048"),
    "range 500-": ("bytes=500-", slice(500, None), "bytes 500-2047/2048"),
    "range -500": ("bytes=-500", slice(2048 - 500, None), "bytes 1548-2047/2048"),
    "range 2000-5000": ("bytes=2000-5000", slice(2000, None), "bytes 2000-2047/2048"),
    "range 500-0": ("bytes=500-0", None, None),
    "range 5000-10000": ("bytes=5000-10000", None, None),
}


@pytest.mark.parametrize("name", list(RANGES))
@pytest.mark.parametrize("algo", ALGOS)
def test_range_requests(api: Api, algo: str, name: str) -> None:
    dig, body = _blob(algo, 2048)
    api.blob_push_any(REPO, dig, body)
    header, part, content_range = RANGES[name]
    resp = api.c.get(f"/v2/{REPO}/blobs/{dig}", headers={"Range": header})
    if part is None:
        expect(resp, 416)
    else:
        # the suite also accepts `/*` as the total; pyreg knows the size and says it
        expect(resp, 206)
        assert resp.content == body[part]
        assert resp.headers["Content-Length"] == str(len(body[part]))
        assert resp.headers["Content-Range"] == content_range
    api.blob_delete(REPO, dig)


@pytest.mark.parametrize("content", [b"", b"{}"], ids=["empty", "emptyJSON"])
@pytest.mark.parametrize("algo", ALGOS)
def test_well_known_blob(api: Api, algo: str, content: bytes) -> None:
    dig = digest_of(content, algo)
    api.blob_push_any(REPO, dig, content)
    _check_and_delete(api, dig, content)


BAD: dict[str, Callable[[Api, str, bytes], object]] = {
    "bad digest post only": lambda a, d, b: a.blob_post_only(REPO, d, b, bad=True),
    "bad digest post+put": lambda a, d, b: a.blob_post_put(REPO, d, b, bad=True),
    "bad digest chunked": lambda a, d, b: a.blob_patch_chunked(REPO, d, b, bad=True),
    "bad digest chunked and put chunk": lambda a, d, b: a.blob_patch_chunked(
        REPO, d, b, put_last_chunk=True, bad=True
    ),
    "bad digest stream": lambda a, d, b: a.blob_patch_stream(REPO, d, b, bad=True),
}


@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("algo", ALGOS)
def test_bad_digest(api: Api, algo: str, name: str) -> None:
    dig, body = _blob(algo, BIG)
    BAD[name](api, dig, body + b"oh no")  # corrupted bytes under the original digest
    # and nothing was left behind under that digest
    expect(api.c.head(f"/v2/{REPO}/blobs/{dig}"), 404)
