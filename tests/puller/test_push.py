"""Push against the reference registry: round trip, deduplication, cross-repository mount,
chunked uploads and their resumption. Requests are counted from the registry's access log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ocispec.digest import digest_bytes
from ocispec.reference import Reference
from puller.push import Pusher, PushError, push
from puller.store import GraphStore
from regclient.api import RegistryClient
from tests.puller.conftest import put_image
from tests.support.docker_registry import DockerRegistry
from tests.support.images import build_image, file, make_layer, sample_image

pytestmark = pytest.mark.interop


def _uploads(requests: list) -> list:  # type: ignore[type-arg]
    return [r for r in requests if "/blobs/uploads/" in r.uri]


async def test_push_then_registry_serves_identical_manifest_and_blobs(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = sample_image()
    ref = Reference.parse(f"{docker_registry.host}/team/app:v1")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        result = await push(client, store, ref)
        fetched = await client.get_manifest("team/app", "v1")
        assert fetched.data == image.manifest
        for digest, data in image.blobs().items():
            async with client.get_blob("team/app", digest) as response:
                assert await response.aread() == data
    assert result.digest == image.digest
    assert sorted(map(str, result.pushed)) == sorted(map(str, image.blobs()))
    assert result.bytes_sent == sum(len(b) for b in image.blobs().values())


async def test_pushing_again_uploads_no_blob(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = sample_image()
    ref = Reference.parse(f"{docker_registry.host}/team/app:v1")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        await push(client, store, ref)
        mark = docker_registry.mark()
        again = await push(client, store, ref)
    logged = docker_registry.requests_since(mark)
    assert _uploads(logged) == []
    assert len([r for r in logged if r.method == "HEAD" and "/blobs/" in r.uri]) == 4
    assert again.pushed == [] and again.bytes_sent == 0
    assert len(again.skipped) == 4


async def test_push_to_second_repository_mounts_instead_of_uploading(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = sample_image()
    first = Reference.parse(f"{docker_registry.host}/team/app:v1")
    second = Reference.parse(f"{docker_registry.host}/other/copy:v1")
    put_image(store, str(first), image)
    store.images.set(str(second), image.digest)
    async with RegistryClient(first.registry) as client:
        await push(client, store, first)
        mark = docker_registry.mark()
        result = await push(client, store, second)
    uploads = _uploads(docker_registry.requests_since(mark))
    assert len(result.mounted) == 4 and result.pushed == [] and result.bytes_sent == 0
    assert len(uploads) == 4
    assert all(r.method == "POST" and "mount=" in r.uri and "from=team" in r.uri for r in uploads)
    assert all(r.status == 201 for r in uploads)


async def test_large_blob_goes_up_in_chunks(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = build_image([[file("big", os.urandom(300_000))]], compression="")
    ref = Reference.parse(f"{docker_registry.host}/big/one:latest")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        pusher = Pusher(client, store, monolithic_max=1000, chunk_size=100_000)
        await pusher.push(ref)
        layer = image.layers[0]
        async with client.get_blob("big/one", layer.digest) as response:
            assert digest_bytes(await response.aread()) == layer.digest
    logged = docker_registry.requests()
    patches = [r for r in logged if r.method == "PATCH"]
    # 300_000 tar bytes + headers in 100_000-byte chunks: the last one in the closing PUT
    assert len(patches) == 3
    closing = [r for r in logged if r.method == "PUT" and "/blobs/uploads/" in r.uri]
    assert [r.status for r in closing] == [201, 201]  # the layer's and the config's


async def test_a_40_mib_layer_goes_up_in_one_put_by_default(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    # The whole blob in the closing PUT: one request less than PATCH + empty PUT, and a
    # registry publishes it as it arrives (pyreg: hashed in-stream, no session state saved);
    # 32 MiB chunks would split typical layers in two.
    image = build_image([[file("big", bytes(40 << 20))]], compression="")
    ref = Reference.parse(f"{docker_registry.host}/big/whole:latest")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        await Pusher(client, store).push(ref)
        layer = image.layers[0]
        assert await client.head_blob("big/whole", layer.digest) == len(layer.blob)
    uploads = _uploads(docker_registry.requests())
    assert [r.method for r in uploads].count("PATCH") == 0
    assert sorted(r.method for r in uploads) == ["POST", "POST", "PUT", "PUT"]  # layer, config


async def test_chunked_upload_resumes_from_registry_status(
    docker_registry: DockerRegistry, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    image = build_image([[file("big", os.urandom(250_000))]], compression="")
    ref = Reference.parse(f"{docker_registry.host}/big/resume:latest")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        real_patch = client.patch_chunk
        calls = {"n": 0}

        async def flaky_patch(session, body, length):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 2:  # the second chunk "fails" after the registry kept the first
                raise httpx.ReadError("connection reset")
            return await real_patch(session, body, length)

        monkeypatch.setattr(client, "patch_chunk", flaky_patch)
        pusher = Pusher(client, store, monolithic_max=1000, chunk_size=100_000)
        await pusher.push(ref)
        fetched = await client.get_manifest("big/resume", "latest")
    assert fetched.digest == image.digest
    statuses = [
        r for r in docker_registry.requests() if r.method == "GET" and "/blobs/uploads/" in r.uri
    ]
    assert len(statuses) == 1  # it asked where to continue, and did not start over
    # the first chunk, the second again after the status; the rest went in the closing PUT
    assert len([r for r in docker_registry.requests() if r.method == "PATCH"]) == 2


async def test_a_failed_closing_put_resumes_from_registry_status(
    docker_registry: DockerRegistry, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    image = build_image([[file("big", os.urandom(250_000))]], compression="")
    layer = image.layers[0]
    ref = Reference.parse(f"{docker_registry.host}/big/closing:latest")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        real_finish = client.finish_upload
        offsets: list[int] = []

        async def flaky_finish(session, digest, body=None, length=0, ranged=False):  # type: ignore[no-untyped-def]
            if digest == layer.digest:
                offsets.append(session.offset)
                if len(offsets) == 1:  # the final chunk's PUT breaks before it is sent
                    raise httpx.WriteError("broken pipe")
            return await real_finish(session, digest, body, length, ranged)

        monkeypatch.setattr(client, "finish_upload", flaky_finish)
        await Pusher(client, store, monolithic_max=1000, chunk_size=100_000).push(ref)
        assert await client.head_blob("big/closing", layer.digest) == len(layer.blob)
    logged = docker_registry.requests()
    statuses = [r for r in logged if r.method == "GET" and "/blobs/uploads/" in r.uri]
    assert len(statuses) == 1
    assert offsets == [200_000, 200_000]  # the same final chunk again, not the whole blob
    assert len([r for r in logged if r.method == "POST"]) == 2  # no new session: layer, config


async def test_push_of_unknown_local_name_is_a_clear_error(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    ref = Reference.parse(f"{docker_registry.host}/nothing/here:v1")
    async with RegistryClient(ref.registry) as client:
        with pytest.raises(PushError, match="no local image"):
            await push(client, store, ref)


async def test_push_with_blob_missing_locally_fails_before_manifest(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = build_image([make_layer([file("a", b"1")])])
    ref = Reference.parse(f"{docker_registry.host}/part/ial:v1")
    put_image(store, str(ref), image)
    store.content.delete(image.layers[0].digest)
    async with RegistryClient(ref.registry) as client:
        with pytest.raises(PushError, match="not in the local store"):
            await push(client, store, ref)
        assert await client.head_manifest("part/ial", "v1") is None


async def test_mount_refused_falls_back_to_upload_in_the_session_it_opened(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = build_image([[file("a", b"only local")]])
    ref = Reference.parse(f"{docker_registry.host}/dst/app:v1")
    put_image(store, str(ref), image)
    for digest in image.blobs():  # the store believes src/app has them; the registry does not
        store.sources.record(ref.registry, "src/app", digest)
    async with RegistryClient(ref.registry) as client:
        result = await push(client, store, ref)
    logged = _uploads(docker_registry.requests())
    posts = [r for r in logged if r.method == "POST"]
    assert len(posts) == 2 and all("mount=" in r.uri and r.status == 202 for r in posts)
    assert len([r for r in logged if r.method == "PUT"]) == 2  # no second POST
    assert result.mounted == [] and len(result.pushed) == 2
    assert sorted(store.sources.repositories(ref.registry, image.layers[0].digest)) == [
        "dst/app",
        "src/app",
    ]


async def test_failed_monolithic_upload_is_retried_in_a_new_session(
    docker_registry: DockerRegistry, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    image = build_image([[file("a", b"small")]])
    ref = Reference.parse(f"{docker_registry.host}/retry/small:v1")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        real_finish = client.finish_upload
        calls = {"n": 0}

        async def flaky_finish(session, digest, body=None, length=0):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 1:
                async for _ in body:  # the body goes out, then the connection drops
                    pass
                raise httpx.WriteError("broken pipe")
            return await real_finish(session, digest, body, length)

        monkeypatch.setattr(client, "finish_upload", flaky_finish)
        result = await Pusher(client, store, concurrency=1).push(ref)
        assert (await client.get_manifest("retry/small", "v1")).digest == image.digest
    posts = [r for r in docker_registry.requests() if r.method == "POST"]
    assert len(posts) == 3  # two blobs, one of them twice
    assert len(result.pushed) == 2


async def test_chunks_honour_oci_chunk_min_length(store: GraphStore) -> None:
    import httpx

    image = build_image([[file("big", os.urandom(500_000))]], compression="")
    ref = Reference.parse("localhost:1/min/chunk:v1")
    put_image(store, str(ref), image)
    patches: list[tuple[str, int]] = []
    received = {"n": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        if request.method == "HEAD" or request.url.path == "/v2/":
            return httpx.Response(404 if request.method == "HEAD" else 200)
        if request.method == "POST":
            received["n"] = 0
            headers = {
                "Location": "/v2/min/chunk/blobs/uploads/u",
                "Range": "0-0",
                "OCI-Chunk-Min-Length": "200000",
            }
            return httpx.Response(202, headers=headers)
        if request.method == "PATCH":
            patches.append((request.headers["Content-Range"], len(body)))
            received["n"] += len(body)
            rng = {"Range": f"0-{received['n'] - 1}", "Location": str(request.url)}
            return httpx.Response(202, headers=rng)
        if request.method == "PUT" and "Content-Range" in request.headers:
            closing.append((request.headers["Content-Range"], len(body)))
        return httpx.Response(201)

    closing: list[tuple[str, int]] = []
    transport = httpx.MockTransport(handler)
    async with RegistryClient(ref.registry, transport=transport) as client:
        await Pusher(client, store, monolithic_max=1000, chunk_size=100_000).push(ref)
    layer_size = len(image.layers[0].blob)
    assert [n for _, n in patches] == [200_000, 200_000]
    assert patches[1][0] == "200000-399999"
    # the rest, shorter than the minimum, as the final chunk in the closing PUT
    assert closing == [(f"400000-{layer_size - 1}", layer_size - 400_000)]


async def test_push_records_blobs_and_manifest_for_later_mounts_in_one_write(
    docker_registry: DockerRegistry, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = sample_image()
    ref = Reference.parse(f"{docker_registry.host}/team/app:v1")
    put_image(store, str(ref), image)
    writes: list[tuple[object, ...]] = []
    record = store.sources.record

    def counting(*args: Any) -> None:
        writes.append(args)
        record(*args)

    monkeypatch.setattr(store.sources, "record", counting)
    async with RegistryClient(ref.registry) as client:
        await push(client, store, ref)
    assert len(writes) == 1  # one fsync'd rewrite of sources.json, not one per blob
    for digest in [*image.blobs(), image.digest]:
        assert store.sources.repositories(ref.registry, digest) == ["team/app"]


async def test_push_that_fails_still_records_the_blobs_that_went_up(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = sample_image()
    name = f"{docker_registry.host}/team/app:v1"
    put_image(store, name, image)
    # pinned to another digest: the blobs go up, then the manifest is refused
    wrong = Reference.parse(f"{docker_registry.host}/team/app@{digest_bytes(b'other')}")
    async with RegistryClient(wrong.registry) as client:
        with pytest.raises(PushError, match="the local image has digest"):
            await push(client, store, wrong, local_name=name)
    for digest in image.blobs():
        assert store.sources.repositories(wrong.registry, digest) == ["team/app"]
    assert store.sources.repositories(wrong.registry, image.digest) == []


async def test_blob_existence_checks_do_not_wait_for_other_blobs_uploads(
    docker_registry: DockerRegistry, store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = sample_image()  # config + 3 layers
    ref = Reference.parse(f"{docker_registry.host}/team/app:v1")
    put_image(store, str(ref), image)
    heads_at_first_upload: list[int] = []
    async with RegistryClient(ref.registry) as client:
        heads = {"n": 0}
        real_head, real_start = client.head_blob, client.start_upload

        async def head_blob(*args: Any) -> int | None:
            heads["n"] += 1
            return await real_head(*args)

        async def start_upload(*args: Any) -> Any:
            heads_at_first_upload.append(heads["n"])
            return await real_start(*args)

        monkeypatch.setattr(client, "head_blob", head_blob)
        monkeypatch.setattr(client, "start_upload", start_upload)
        result = await Pusher(client, store, concurrency=1).push(ref)
    # one upload at a time, but every blob's HEAD was already on its way
    assert heads_at_first_upload[0] == 4
    assert len(result.pushed) == 4
