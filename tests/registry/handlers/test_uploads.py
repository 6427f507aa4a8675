"""Blob uploads over HTTP: sessions, chunks, monolithic pushes, commit, cancel, mounts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from registry.app import create_app
from registry.auth.base import ANONYMOUS, Access, Principal
from registry.settings import Settings
from storage_backends.base import StorageBackend
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import digest_of, error_codes, push_blob

DATA = b"0123456789abcdefghij" * 50  # 1000 bytes


async def _start(client: httpx.AsyncClient, name: str = "a/b", query: str = "") -> str:
    response = await client.post(f"/v2/{name}/blobs/uploads/{query}")
    assert response.status_code == 202, response.text
    return response.headers["location"]


async def _pull(client: httpx.AsyncClient, name: str, digest: str) -> bytes:
    response = await client.get(f"/v2/{name}/blobs/{digest}")
    assert response.status_code == 200, response.text
    return response.content


async def _leftover_upload_keys(backend: StorageBackend) -> list[str]:
    return [key async for key in backend.walk("_uploads")]


async def test_post_opens_a_session(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/a/b/blobs/uploads/")
    assert response.status_code == 202
    upload_id = response.headers["docker-upload-uuid"]
    assert uuid.UUID(upload_id).version == 4
    assert response.headers["location"] == f"/v2/a/b/blobs/uploads/{upload_id}"
    assert response.headers["range"] == "0-0"


async def test_monolithic_post_with_digest(client: httpx.AsyncClient) -> None:
    digest = digest_of(DATA)
    response = await client.post(f"/v2/a/b/blobs/uploads/?digest={digest}", content=DATA)
    assert response.status_code == 201
    assert response.headers["location"] == f"/v2/a/b/blobs/{digest}"
    assert response.headers["docker-content-digest"] == digest
    assert await _pull(client, "a/b", digest) == DATA


async def test_monolithic_post_with_wrong_digest_leaves_nothing(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    wrong = digest_of(b"other")
    response = await client.post(f"/v2/a/blobs/uploads/?digest={wrong}", content=DATA)
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert (await client.get(f"/v2/a/blobs/{wrong}")).status_code == 404
    assert (await client.get(f"/v2/a/blobs/{digest_of(DATA)}")).status_code == 404
    assert await _leftover_upload_keys(backend) == []


async def test_post_then_put(client: httpx.AsyncClient) -> None:
    location = await _start(client)
    digest = digest_of(DATA)
    response = await client.put(f"{location}?digest={digest}", content=DATA)
    assert response.status_code == 201
    assert response.headers["location"] == f"/v2/a/b/blobs/{digest}"
    assert response.headers["docker-content-digest"] == digest
    assert await _pull(client, "a/b", digest) == DATA


async def test_chunked_patches_with_content_range(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    location = await _start(client)
    for start in range(0, len(DATA), 300):
        chunk = DATA[start : start + 300]
        end = start + len(chunk) - 1
        response = await client.patch(
            location, content=chunk, headers={"Content-Range": f"{start}-{end}"}
        )
        assert response.status_code == 202, response.text
        assert response.headers["range"] == f"0-{end}"
        location = response.headers["location"]
    digest = digest_of(DATA)
    response = await client.put(f"{location}?digest={digest}")
    assert response.status_code == 201
    assert await _pull(client, "a/b", digest) == DATA
    assert await _leftover_upload_keys(backend) == []


async def test_out_of_order_chunk_is_416_with_location_and_range(client: httpx.AsyncClient) -> None:
    location = await _start(client)
    first = await client.patch(location, content=DATA[:100], headers={"Content-Range": "0-99"})
    assert first.status_code == 202
    for bad in ("200-299", "0-99", "50-149"):
        response = await client.patch(location, content=DATA[:100], headers={"Content-Range": bad})
        assert response.status_code == 416, bad
        assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]
        assert response.headers["location"] == location
        assert response.headers["range"] == "0-99"
    status = await client.get(location)
    assert status.headers["range"] == "0-99"  # the session did not move


async def test_final_chunk_out_of_order_in_put_is_416(client: httpx.AsyncClient) -> None:
    location = await _start(client)
    await client.patch(location, content=DATA[:100], headers={"Content-Range": "0-99"})
    digest = digest_of(DATA[:200])
    response = await client.put(
        f"{location}?digest={digest}", content=DATA[150:200], headers={"Content-Range": "150-199"}
    )
    assert response.status_code == 416
    assert response.headers["range"] == "0-99"


async def test_malformed_content_range_is_refused(client: httpx.AsyncClient) -> None:
    location = await _start(client)
    response = await client.patch(location, content=b"abc", headers={"Content-Range": "zero-two"})
    assert response.status_code == 416
    assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]


async def test_content_range_disagreeing_with_length_is_size_invalid(
    client: httpx.AsyncClient,
) -> None:
    location = await _start(client)
    response = await client.patch(location, content=b"abc", headers={"Content-Range": "0-9"})
    assert response.status_code == 400
    assert error_codes(response) == ["SIZE_INVALID"]


async def test_streamed_patches_without_content_range(client: httpx.AsyncClient) -> None:
    location = await _start(client)

    async def body(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 64):
            yield data[i : i + 64]

    # Chunked transfer encoding: no Content-Length, no Content-Range.
    first = await client.patch(location, content=body(DATA[:600]))
    assert first.status_code == 202
    assert first.headers["range"] == "0-599"
    second = await client.patch(first.headers["location"], content=body(DATA[600:]))
    assert second.headers["range"] == f"0-{len(DATA) - 1}"
    digest = digest_of(DATA)
    assert (await client.put(f"{location}?digest={digest}")).status_code == 201
    assert await _pull(client, "a/b", digest) == DATA


async def test_put_with_final_chunk(client: httpx.AsyncClient) -> None:
    location = await _start(client)
    await client.patch(location, content=DATA[:400], headers={"Content-Range": "0-399"})
    digest = digest_of(DATA)
    response = await client.put(
        f"{location}?digest={digest}",
        content=DATA[400:],
        headers={"Content-Range": f"400-{len(DATA) - 1}"},
    )
    assert response.status_code == 201
    assert await _pull(client, "a/b", digest) == DATA


async def test_status_reports_offset_and_location(client: httpx.AsyncClient) -> None:
    location = await _start(client)
    fresh = await client.get(location)
    assert fresh.status_code == 204
    assert fresh.headers["range"] == "0-0"
    await client.patch(location, content=DATA[:10], headers={"Content-Range": "0-9"})
    response = await client.get(location)
    assert response.status_code == 204
    assert response.headers["location"] == location
    assert response.headers["range"] == "0-9"


async def test_cancel_removes_the_session(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    location = await _start(client)
    await client.patch(location, content=DATA[:10], headers={"Content-Range": "0-9"})
    response = await client.delete(location)
    assert response.status_code == 204
    status = await client.get(location)
    assert status.status_code == 404
    assert error_codes(status) == ["BLOB_UPLOAD_UNKNOWN"]
    assert await _leftover_upload_keys(backend) == []


@pytest.mark.parametrize("upload_id", [str(uuid.uuid4()), "not-a-uuid", "%2E%2E", "x" * 300])
async def test_unknown_session_is_404(client: httpx.AsyncClient, upload_id: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, f"/v2/a/blobs/uploads/{upload_id}")
        assert response.status_code == 404, (method, response.text)
        assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


async def test_session_belongs_to_its_repository(client: httpx.AsyncClient) -> None:
    location = await _start(client, "one")
    upload_id = location.rsplit("/", 1)[1]
    response = await client.get(f"/v2/two/blobs/uploads/{upload_id}")
    assert response.status_code == 404


async def test_wrong_digest_on_put_is_digest_invalid_and_ends_the_session(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    location = await _start(client)
    wrong = digest_of(b"something else")
    response = await client.put(f"{location}?digest={wrong}", content=DATA)
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert (await client.get(f"/v2/a/b/blobs/{wrong}")).status_code == 404
    assert (await client.get(f"/v2/a/b/blobs/{digest_of(DATA)}")).status_code == 404
    assert (await client.get(location)).status_code == 404
    assert await _leftover_upload_keys(backend) == []


@pytest.mark.parametrize("query", ["", "?digest=", "?digest=sha256:nothex", "?digest=crc32:1234"])
async def test_put_needs_a_valid_digest(client: httpx.AsyncClient, query: str) -> None:
    location = await _start(client)
    response = await client.put(f"{location}{query}", content=DATA)
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert (await client.get(location)).status_code == 204  # still open: nothing was read


async def test_sha512_chunked_upload_with_digest_algorithm(client: httpx.AsyncClient) -> None:
    location = await _start(client, query="?digest-algorithm=sha512")
    await client.patch(location, content=DATA, headers={"Content-Range": f"0-{len(DATA) - 1}"})
    digest = digest_of(DATA, "sha512")
    response = await client.put(f"{location}?digest={digest}")
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert await _pull(client, "a/b", digest) == DATA


async def test_sha512_digest_without_announcing_the_algorithm(client: httpx.AsyncClient) -> None:
    location = await _start(client)  # hashed in-stream as sha256; commit must re-hash
    await client.patch(location, content=DATA)
    digest = digest_of(DATA, "sha512")
    assert (await client.put(f"{location}?digest={digest}")).status_code == 201
    assert await _pull(client, "a/b", digest) == DATA


async def test_unsupported_digest_algorithm_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/a/blobs/uploads/?digest-algorithm=md5")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


async def test_empty_blob(client: httpx.AsyncClient) -> None:
    location = await _start(client)
    digest = digest_of(b"")
    assert (await client.put(f"{location}?digest={digest}")).status_code == 201
    assert await _pull(client, "a/b", digest) == b""


async def test_mount_from_a_repository_that_has_the_blob(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "source", DATA)
    response = await client.post(f"/v2/target/blobs/uploads/?mount={digest}&from=source")
    assert response.status_code == 201
    assert response.headers["location"] == f"/v2/target/blobs/{digest}"
    assert response.headers["docker-content-digest"] == digest
    assert await _pull(client, "target", digest) == DATA


async def test_mount_from_a_repository_without_the_blob_opens_a_session(
    client: httpx.AsyncClient,
) -> None:
    digest = await push_blob(client, "elsewhere", DATA)
    response = await client.post(f"/v2/target/blobs/uploads/?mount={digest}&from=source")
    assert response.status_code == 202
    assert "/v2/target/blobs/uploads/" in response.headers["location"]
    assert (await client.get(f"/v2/target/blobs/{digest}")).status_code == 404


async def test_a_mount_without_from_opens_a_session(client: httpx.AsyncClient) -> None:
    """No search for the digest over other repositories (see the constant-work test)."""
    digest = await push_blob(client, "somewhere", DATA)
    response = await client.post(f"/v2/target/blobs/uploads/?mount={digest}")
    assert response.status_code == 202
    assert "/v2/target/blobs/uploads/" in response.headers["location"]
    assert (await client.get(f"/v2/target/blobs/{digest}")).status_code == 404
    unknown = await client.post(f"/v2/target/blobs/uploads/?mount={digest_of(b'nope')}")
    assert unknown.status_code == 202


async def test_mount_of_a_blob_the_target_already_has(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "target", DATA)
    response = await client.post(f"/v2/target/blobs/uploads/?mount={digest}&from=elsewhere")
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    # Without `from` never a mount, not even from the target itself (the suite's
    # "automatic content discovery disabled" answer).
    assert (await client.post(f"/v2/target/blobs/uploads/?mount={digest}")).status_code == 202


async def test_mount_with_malformed_digest_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/target/blobs/uploads/?mount=sha256:zz&from=source")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


class _DenyPullOf:
    """Everyone may do everything except pull from the listed repositories."""

    def __init__(self, *denied: str) -> None:
        self.denied = set(denied)

    async def authorize(self, request: Request, needs: list[Access]) -> Principal:
        return ANONYMOUS

    async def may(self, request: Request, principal: Principal, need: Access) -> bool:
        return not (need.action == "pull" and need.name in self.denied)


@pytest.fixture
async def secret_source_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        app.state.access = _DenyPullOf("secret")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


async def test_mount_needs_pull_access_to_the_source(
    secret_source_client: httpx.AsyncClient,
) -> None:
    client = secret_source_client
    digest = await push_blob(client, "secret", DATA)
    named = await client.post(f"/v2/target/blobs/uploads/?mount={digest}&from=secret")
    assert named.status_code == 202
    anonymous = await client.post(f"/v2/target/blobs/uploads/?mount={digest}")
    assert anonymous.status_code == 202
    assert (await client.get(f"/v2/target/blobs/{digest}")).status_code == 404


class CountingBackend:
    """A real MemoryBackend whose calls are counted (the work a request does in storage)."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


async def test_a_mount_without_from_costs_the_same_whether_the_digest_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`POST ?mount=<digest>` without `from` took 26.6 ms when the digest existed in *any*
    repository, private ones included, and 3.3 ms otherwise: it touched, checked and then
    searched every repository. Its work may depend only on what the caller may pull."""
    backend = CountingBackend()
    app = create_app(Settings(), backend=backend)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        app.state.access = _DenyPullOf(*(f"secret/{i}" for i in range(5)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            hidden = await push_blob(client, "secret/3", DATA)
            for i in range(5):
                await push_blob(client, f"secret/{i}", DATA)
            work = {}
            for label, digest in (("hidden", hidden), ("absent", digest_of(b"nothing"))):
                before = backend.calls
                response = await client.post(f"/v2/mallory/loot/blobs/uploads/?mount={digest}")
                assert response.status_code == 202
                work[label] = backend.calls - before
    assert work["hidden"] == work["absent"]
