"""Blob pulls, ranges, deletes and digest validation over HTTP (every local backend)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from registry.app import create_app
from registry.settings import Settings
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import digest_of, error_codes, push_blob

DATA = bytes(range(256)) * 4  # 1024 bytes


async def test_get_blob_streams_content_with_headers(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "a/b", DATA)
    response = await client.get(f"/v2/a/b/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_head_blob_has_length_and_digest_but_no_body(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "a", DATA)
    response = await client.head(f"/v2/a/blobs/{digest}")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["docker-content-digest"] == digest
    assert response.content == b""


async def test_unknown_blob_is_404_blob_unknown(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/a/blobs/{digest_of(b'nothing')}")
    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]
    head = await client.head(f"/v2/a/blobs/{digest_of(b'nothing')}")
    assert head.status_code == 404


async def test_blob_is_only_visible_in_the_repository_it_was_pushed_to(
    client: httpx.AsyncClient,
) -> None:
    digest = await push_blob(client, "one", DATA)
    response = await client.get(f"/v2/two/blobs/{digest}")
    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=2-4", 2, 4),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-10", 1014, 1023),
        ("bytes=1020-5000", 1020, 1023),
    ],
)
async def test_range_gives_206_with_content_range(
    client: httpx.AsyncClient, header: str, start: int, end: int
) -> None:
    digest = await push_blob(client, "a", DATA)
    response = await client.get(f"/v2/a/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == DATA[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.headers["content-length"] == str(end - start + 1)


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0", "bytes=500-0"])
async def test_unsatisfiable_range_is_416_with_json_body(
    client: httpx.AsyncClient, header: str
) -> None:
    digest = await push_blob(client, "a", DATA)
    response = await client.get(f"/v2/a/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"
    assert int(response.headers["content-length"]) == len(response.content)
    assert error_codes(response) == ["RANGE_INVALID"]


async def test_malformed_range_is_ignored(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "a", DATA)
    response = await client.get(f"/v2/a/blobs/{digest}", headers={"Range": "pages=1-2"})
    assert response.status_code == 200
    assert response.content == DATA


async def test_if_none_match_gives_304(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "a", DATA)
    response = await client.get(f"/v2/a/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'})
    assert response.status_code == 304
    assert response.content == b""


async def test_delete_unlinks_at_once_from_that_repository_only(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "a", DATA)
    await push_blob(client, "b", DATA)
    response = await client.delete(f"/v2/a/blobs/{digest}")
    assert response.status_code == 202
    assert (await client.get(f"/v2/a/blobs/{digest}")).status_code == 404
    assert (await client.get(f"/v2/b/blobs/{digest}")).status_code == 200
    again = await client.delete(f"/v2/a/blobs/{digest}")
    assert again.status_code == 404
    assert error_codes(again) == ["BLOB_UNKNOWN"]


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:xyz",
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "md5:" + "a" * 32,
        "sha512:" + "a" * 64,
        "nodigest",
        "sha256:",
    ],
)
async def test_malformed_digest_is_400_digest_invalid(client: httpx.AsyncClient, bad: str) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/v2/a/blobs/{bad}")
        assert response.status_code == 400, (method, response.text)
        assert error_codes(response) == ["DIGEST_INVALID"]


async def test_sha512_blob_round_trip(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "a", DATA, "sha512")
    assert digest.startswith("sha512:")
    response = await client.get(f"/v2/a/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["docker-content-digest"] == digest


class _RedirectingBackend(MemoryBackend):
    async def redirect_url(self, path: str, expires_in: int = 1200) -> str | None:
        return f"https://storage.invalid/{path}"


@pytest.fixture
async def redirect_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), backend=_RedirectingBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


async def test_backend_redirect_url_gives_307(redirect_client: httpx.AsyncClient) -> None:
    digest = await push_blob(redirect_client, "a", DATA)
    response = await redirect_client.get(f"/v2/a/blobs/{digest}")
    assert response.status_code == 307
    assert response.headers["location"].startswith("https://storage.invalid/blobs/sha256/")
    head = await redirect_client.head(f"/v2/a/blobs/{digest}")
    assert head.status_code == 200  # HEAD answers itself: no point sending a client away
