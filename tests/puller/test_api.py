"""The typed endpoint calls: error bodies to exceptions, Link pagination, manifest digest
checks, upload session offsets, referrers; against docker-registry and mock transports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from ocispec.digest import DigestMismatch, digest_bytes
from ocispec.reference import Reference
from puller.push import push
from puller.store import GraphStore
from regclient.api import (
    NotFound,
    RegistryClient,
    RegistryError,
    Unauthorized,
    Unsupported,
    UploadSession,
    UploadUnknown,
)
from regclient.transport import RetryPolicy
from tests.puller.conftest import put_image
from tests.support.docker_registry import DockerRegistry
from tests.support.images import build_image, file


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> RegistryClient:
    return RegistryClient(
        "localhost:1",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=1),
    )


def _error(status: int, code: str) -> httpx.Response:
    body = {"errors": [{"code": code, "message": f"{code.lower()} happened"}]}
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "MANIFEST_UNKNOWN", NotFound),
        (404, "NAME_UNKNOWN", NotFound),
        (401, "UNAUTHORIZED", Unauthorized),
        (403, "DENIED", Unauthorized),
        (405, "UNSUPPORTED", Unsupported),
        (404, "BLOB_UPLOAD_UNKNOWN", UploadUnknown),
        (400, "MANIFEST_INVALID", RegistryError),
    ],
)
async def test_error_bodies_become_typed_exceptions(
    status: int, code: str, cls: type[RegistryError]
) -> None:
    async with _client(lambda r: _error(status, code)) as client:
        with pytest.raises(cls) as info:
            await client.delete_manifest("a", "v1")
    assert info.value.code == code
    assert info.value.status == status
    assert code in str(info.value) and "happened" in str(info.value)


async def test_error_without_json_body_still_typed() -> None:
    async with _client(lambda r: httpx.Response(500, text="<html>oops</html>")) as client:
        with pytest.raises(RegistryError, match="HTTP 500"):
            await client.tags("a")


async def test_manifest_content_must_match_the_pinned_digest() -> None:
    other = digest_bytes(b"something else")
    async with _client(lambda r: httpx.Response(200, content=b"{}")) as client:
        with pytest.raises(DigestMismatch):
            await client.get_manifest("a", str(other))


async def test_manifest_content_must_match_docker_content_digest() -> None:
    headers = {"Docker-Content-Digest": str(digest_bytes(b"x"))}
    async with _client(lambda r: httpx.Response(200, content=b"{}", headers=headers)) as client:
        with pytest.raises(DigestMismatch):
            await client.get_manifest("a", "v1")


async def test_get_manifest_sends_accept_for_every_manifest_type() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Accept"])
        return httpx.Response(200, content=b"{}", headers={"Content-Type": "x/y"})

    async with _client(handler) as client:
        fetched = await client.get_manifest("a", "v1")
    assert fetched.media_type == "x/y"
    for media_type in ("oci.image.index", "oci.image.manifest", "manifest.list.v2", "manifest.v2"):
        assert media_type in seen[0]


@pytest.mark.parametrize(
    ("range_header", "expected_offset", "offset"),
    [("0-0", 0, 0), ("0-0", 1, 1), ("0-99", 0, 100), ("bytes=0-9", 0, 10)],
)
async def test_upload_session_offsets(range_header: str, expected_offset: int, offset: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            202,
            headers={
                "Location": "/v2/a/blobs/uploads/u?x=1",
                "Range": range_header,
                "OCI-Chunk-Min-Length": "5",
            },
        )

    async with _client(handler) as client:
        response = await client.http.post("/v2/a/blobs/uploads/")
        session = client._session(response, None, expected_offset)
    assert session == UploadSession("https://localhost:1/v2/a/blobs/uploads/u?x=1", offset, 5)


async def test_finish_upload_keeps_the_session_query() -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(201)

    session = UploadSession("https://localhost:1/v2/a/blobs/uploads/u?_state=abc", 0)
    digest = digest_bytes(b"")
    async with _client(handler) as client:
        await client.finish_upload(session, digest)
    assert "_state=abc" in urls[0] and f"digest={digest}".replace(":", "%3A") in urls[0]


@pytest.mark.interop
async def test_tags_and_catalog_follow_link_pages(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = build_image([[file("a", b"1")]])
    names = [f"{docker_registry.host}/r{i}/app:t{j}" for i in range(3) for j in range(3)]
    for name in names:
        put_image(store, name, image)
    async with RegistryClient(docker_registry.host) as client:
        for name in names:
            await push(client, store, Reference.parse(name))
        mark = docker_registry.mark()
        assert await client.tags("r1/app", page_size=2) == ["t0", "t1", "t2"]
        assert await client.catalog(page_size=2) == ["r0/app", "r1/app", "r2/app"]
        logged = docker_registry.requests_since(mark)
    # distribution 2.8 ignores `n` on tags (one page); its catalog honours it
    assert len([r for r in logged if "/_catalog" in r.uri]) == 2


@pytest.mark.interop
async def test_delete_and_missing_things(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = build_image([[file("a", b"2")]])
    ref = Reference.parse(f"{docker_registry.host}/del/app:v1")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        await push(client, store, ref)
        info = await client.head_manifest("del/app", "v1")
        assert info is not None and info.digest == image.digest
        assert await client.head_blob("del/app", image.layers[0].digest) == len(
            image.layers[0].blob
        )
        await client.delete_manifest("del/app", str(image.digest))
        assert await client.head_manifest("del/app", str(image.digest)) is None
        with pytest.raises(NotFound):
            await client.get_manifest("del/app", "v1")
        assert await client.head_blob("del/app", digest_bytes(b"nope")) is None


async def test_tags_follow_relative_link_headers() -> None:
    pages = {
        "/v2/a/tags/list": (["t1", "t2"], '</v2/a/tags/list?last=t2&n=2>; rel="next"'),
        "/v2/a/tags/list?last=t2&n=2": (["t3"], None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.url.raw_path.decode()
        tags, link = pages[key]
        headers = {"Link": link} if link else {}
        return httpx.Response(200, json={"name": "a", "tags": tags}, headers=headers)

    async with _client(handler) as client:
        assert await client.tags("a") == ["t1", "t2", "t3"]


async def test_referrers_returns_the_index() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=json.dumps(index).encode())

    async with _client(handler) as client:
        got = await client.referrers("a", digest_bytes(b"s"), artifact_type="x/sig")
    assert got == index
    assert "artifactType=x%2Fsig" in seen[0]


async def test_get_blob_asks_for_identity_encoding_and_a_range() -> None:
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(206, content=b"rest", headers={"Content-Range": "bytes 5-8/9"})

    async with _client(handler) as client:
        async with client.get_blob("a", digest_bytes(b"x"), offset=5) as response:
            assert await response.aread() == b"rest"
    assert seen[0]["Accept-Encoding"] == "identity"
    assert seen[0]["Range"] == "bytes=5-"


async def test_an_endless_error_body_is_not_buffered() -> None:
    """A hostile registry answers a blob GET with a 404 whose body never ends: the error is
    raised after a bounded read (it was `aread()`, buffering forever)."""
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b'{"errors":[' + b" " * (1 << 20)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, content=endless())

    digest = digest_bytes(b"x")
    async with _client(handler) as client:
        with pytest.raises(NotFound):
            async with client.get_blob("a", digest):
                pass
    assert sent <= 2
