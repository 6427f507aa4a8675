"""The pull-through cache against a real upstream (the reference registry on loopback), with
the mirror in process so its counters can be read."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocispec.digest import digest_bytes
from regclient.api import RegistryClient
from regclient.credentials import Credentials
from registry.gc import GarbageCollector
from storage_backends.filesystem import FilesystemBackend
from tests.registry.helpers import error_codes
from tests.registry.proxy.conftest import (
    Mirror,
    image,
    pull,
    push_image,
    push_with,
    upstream_config,
)
from tests.support.auth import auth_section, basic
from tests.support.docker_registry import DockerRegistry, TokenAuthConfig, start_registry
from tests.support.images import Image, build_image, file
from tests.support.token_server import ISSUER, SERVICE, TokenServer


def _gets(upstream: DockerRegistry, mark: int, what: str) -> list[str]:
    return [r.uri for r in upstream.requests_since(mark) if r.method == "GET" and what in r.uri]


async def test_first_pull_fetches_then_the_cache_answers(
    upstream: DockerRegistry, mirror: Mirror
) -> None:
    img = image("v1")
    await push_image(upstream.url, "team/app", "v1", img)
    async with mirror(upstream_config(upstream.url)) as (client, cache):
        first = await pull(client, "up/team/app", "v1")
        assert first == img.manifest
        assert cache.stats.misses == 1 + len(img.blobs())
        mark = upstream.mark()
        assert await pull(client, "up/team/app", "v1") == img.manifest
        assert await pull(client, "up/team/app", str(img.digest)) == img.manifest
        assert upstream.requests_since(mark) == []  # within the TTL: not even a HEAD
        assert cache.stats.hits >= 2 * (1 + len(img.blobs()))
        assert cache.stats.upstream_bytes >= sum(len(b) for b in img.blobs().values())
        tags = await client.get("/v2/up/team/app/tags/list")
        assert tags.json()["tags"] == ["v1"]


async def test_after_the_ttl_a_tag_is_revalidated_by_head(
    upstream: DockerRegistry, mirror: Mirror
) -> None:
    old, new = image("old"), image("new")
    await push_image(upstream.url, "team/app", "v1", old)
    async with mirror(upstream_config(upstream.url, tag_ttl=0)) as (client, _):
        assert await pull(client, "up/team/app", "v1") == old.manifest
        mark = upstream.mark()
        assert await pull(client, "up/team/app", "v1") == old.manifest
        seen = [(r.method, r.uri) for r in upstream.requests_since(mark)]
        assert seen == [("HEAD", "/v2/team/app/manifests/v1")]  # unchanged: no body fetched
        await push_image(upstream.url, "team/app", "v1", new)
        assert await pull(client, "up/team/app", "v1") == new.manifest


async def test_stale_tags_are_served_when_the_upstream_is_down(
    upstream: DockerRegistry, mirror: Mirror
) -> None:
    img = image("v1")
    await push_image(upstream.url, "team/app", "v1", img)
    await push_image(upstream.url, "team/app", "v2", image("v2"))
    async with mirror(upstream_config(upstream.url, tag_ttl=0)) as (client, cache):
        await pull(client, "up/team/app", "v1")
        upstream.stop()
        assert await pull(client, "up/team/app", "v1") == img.manifest
        assert cache.stats.stale_serves == 1 and cache.stats.upstream_errors >= 1
        asked = cache.stats.upstream_requests
        assert await pull(client, "up/team/app", "v1") == img.manifest
        # a down upstream is asked again only after a pause, not on every pull
        assert (cache.stats.upstream_requests, cache.stats.stale_serves) == (asked, 2)
        missing = await client.get("/v2/up/team/app/manifests/v2")
        assert missing.status_code == 503, missing.text
        assert error_codes(missing) == ["UNAVAILABLE"]
        assert "upstream up" in missing.json()["errors"][0]["message"]
        blob = await client.get(f"/v2/up/team/app/blobs/{digest_bytes(b'never-pushed')}")
        assert blob.status_code == 503


async def test_not_found_upstream_stays_not_found(upstream: DockerRegistry, mirror: Mirror) -> None:
    await push_image(upstream.url, "team/app", "v1", image("v1"))
    async with mirror(upstream_config(upstream.url)) as (client, _):
        tag = await client.get("/v2/up/team/app/manifests/nope")
        assert (tag.status_code, error_codes(tag)) == (404, ["MANIFEST_UNKNOWN"])
        digest = digest_bytes(b"absent")
        blob = await client.get(f"/v2/up/team/app/blobs/{digest}")
        assert (blob.status_code, error_codes(blob)) == (404, ["BLOB_UNKNOWN"])
        by_digest = await client.get(f"/v2/up/team/app/manifests/{digest}")
        assert by_digest.status_code == 404


async def test_upstream_5xx_with_nothing_cached_is_a_502(tmp_path: Path, mirror: Mirror) -> None:
    # An HTTP server that answers every request with 500: a broken upstream, not a missing one.
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with mirror(upstream_config(f"http://127.0.0.1:{port}")) as (client, cache):
            r = await client.get("/v2/up/team/app/manifests/v1")
            assert r.status_code == 502, r.text
            assert "upstream up (http://127.0.0.1:" in r.json()["errors"][0]["message"]
            assert cache.stats.upstream_errors == 1
    finally:
        server.close()


async def test_pushes_to_a_mirrored_namespace_are_refused_unless_allowed(
    upstream: DockerRegistry, mirror: Mirror
) -> None:
    config = upstream_config(upstream.url)
    config["upstreams"].append(
        {"url": upstream.url, "namespace": "open", "allow_push": True, "name": "open"}
    )
    async with mirror(config) as (client, _):
        refused = await client.post("/v2/up/team/app/blobs/uploads/")
        assert (refused.status_code, error_codes(refused)) == (403, ["DENIED"])
        put = await client.put("/v2/up/team/app/manifests/v1", content=b"{}")
        assert put.status_code == 403
        allowed = await client.post("/v2/open/team/app/blobs/uploads/")
        assert allowed.status_code == 202
        local = await client.post("/v2/team/app/blobs/uploads/")  # ordinary repositories
        assert local.status_code == 202


async def test_mirror_style_names_share_the_cache(upstream: DockerRegistry, mirror: Mirror) -> None:
    img, local_img = image("v1"), image("local")
    await push_image(upstream.url, "team/app", "v1", img)
    async with mirror(upstream_config(upstream.url, default=True)) as (client, cache):
        # containerd/podman: `?ns=` names the upstream by host (or namespace)
        by_ns = await client.get(f"/v2/team/app/manifests/v1?ns={upstream.host}")
        assert by_ns.content == img.manifest
        # docker registry-mirrors: no host at all, the default upstream answers
        assert await pull(client, "team/app", "v1") == img.manifest
        assert await pull(client, "up/team/app", "v1") == img.manifest
        assert cache.stats.misses == 1 + len(img.blobs())  # one cache for the three forms
        # a local repository of that name wins over the default upstream
        await push_with(client, "mine/app", "v1", local_img)
        assert await pull(client, "mine/app", "v1") == local_img.manifest


async def test_a_blob_held_elsewhere_is_linked_only_if_the_upstream_has_it(
    upstream: DockerRegistry, mirror: Mirror
) -> None:
    secret = image("secret")
    await push_image(upstream.url, "team/app", "v1", image("v1"))
    async with mirror(upstream_config(upstream.url)) as (client, _):
        await push_with(client, "private/x", "v1", secret)
        layer = str(secret.layers[0].digest)
        # the content is in storage, but the mirrored repository must not expose it by digest
        r = await client.get(f"/v2/up/team/app/blobs/{layer}")
        assert r.status_code == 404, r.text


async def test_upstream_credentials_basic(tmp_path: Path, mirror: Mirror) -> None:
    locked = start_registry(tmp_path / "locked", users={"mirror": "s3cret"})
    try:
        img = image("v1")
        await push_image(locked.url, "team/app", "v1", img, auth=("mirror", "s3cret"))
        good = upstream_config(locked.url, credentials={"username": "mirror", "password": "s3cret"})
        async with mirror(good) as (client, _):
            assert await pull(client, "up/team/app", "v1") == img.manifest
        wrong = upstream_config(locked.url, credentials={"username": "mirror", "password": "x"})
        async with mirror(wrong) as (client, _):
            r = await client.get("/v2/up/team/app/manifests/v2")
            assert r.status_code == 502 and "credentials" in r.json()["errors"][0]["message"]
        anonymous = upstream_config(locked.url)
        async with mirror(anonymous) as (client, _):
            r = await client.get("/v2/up/team/app/manifests/v2")
            assert r.status_code == 502
    finally:
        locked.stop()


async def test_cached_content_survives_gc_like_any_tagged_image(
    upstream: DockerRegistry, mirror: Mirror, storage_dir: Path
) -> None:
    img = image("v1")
    await push_image(upstream.url, "team/app", "v1", img)
    async with mirror(upstream_config(upstream.url)) as (client, _):
        await pull(client, "up/team/app", "v1")
    backend = FilesystemBackend(storage_dir)
    await backend.open()
    try:
        report = await GarbageCollector(backend, grace=0).run()
        assert report.blobs_deleted == 0 and report.blobs_kept == 1 + len(img.blobs())
    finally:
        await backend.close()
    async with mirror(upstream_config(upstream.url)) as (client, _):
        upstream.stop()
        assert await pull(client, "up/team/app", "v1") == img.manifest


@pytest.mark.parametrize("reference", ["v1", "digest"])
async def test_concurrent_manifest_misses_are_one_upstream_request(
    upstream: DockerRegistry, mirror: Mirror, reference: str
) -> None:
    img = image("v1")
    await push_image(upstream.url, "team/app", "v1", img)
    ref = str(img.digest) if reference == "digest" else "v1"
    async with mirror(upstream_config(upstream.url)) as (client, _):
        mark = upstream.mark()
        answers = await asyncio.gather(
            *(client.get(f"/v2/up/team/app/manifests/{ref}") for _ in range(10))
        )
        assert {a.content for a in answers} == {img.manifest}
        assert len(_gets(upstream, mark, "/manifests/")) == 1


async def _seed_with_token(registry: DockerRegistry, img: Image) -> None:
    async def once(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async with RegistryClient(registry.host, credentials=Credentials("mirror", "s3cret")) as c:
        for digest, data in img.blobs().items():
            session = await c.start_upload("team/app")
            await c.finish_upload(session, digest, once(data), len(data))
        await c.put_manifest("team/app", "v1", img.manifest, img.manifest_media_type)


async def test_upstream_token_flow_with_credentials_and_anonymous(
    tmp_path: Path, mirror: Mirror
) -> None:
    users = {"mirror": "s3cret"}
    with TokenServer(tmp_path / "token", users, anonymous_pull=True) as tokens:
        config = TokenAuthConfig(tokens.realm, SERVICE, ISSUER, tokens.rootcertbundle)
        locked = start_registry(tmp_path / "token-registry", token=config)
        try:
            img = image("v1")
            await _seed_with_token(locked, img)
            creds = {"username": "mirror", "password": "s3cret"}
            async with mirror(upstream_config(locked.url, credentials=creds)) as (client, _):
                assert await pull(client, "up/team/app", "v1") == img.manifest
            assert any(r.user == "mirror" and r.scopes for r in tokens.requests)
        finally:
            locked.stop()
    with TokenServer(tmp_path / "token2", users, anonymous_pull=True) as tokens:
        config = TokenAuthConfig(tokens.realm, SERVICE, ISSUER, tokens.rootcertbundle)
        public = start_registry(tmp_path / "token-registry2", token=config)
        try:
            other = image("anonymous")  # not cached by the first half
            await _seed_with_token(public, other)
            async with mirror(upstream_config(public.url, tag_ttl=0)) as (client, _):
                assert await pull(client, "up/team/app", "v1") == other.manifest
            assert any(r.user is None and r.scopes for r in tokens.requests), tokens.requests
        finally:
            public.stop()


async def test_access_rules_apply_to_mirrored_namespaces(
    upstream: DockerRegistry, mirror: Mirror, tmp_path: Path
) -> None:
    img = image("v1")
    await push_image(upstream.url, "team/app", "v1", img)
    await push_image(upstream.url, "corp/secret", "v1", image("secret"))
    config = upstream_config(upstream.url)
    config["upstreams"].append({"url": upstream.url, "namespace": "corp", "name": "corp"})
    rules = [
        {"repository": "up/**", "pull": ["anonymous"]},
        {"repository": "corp/**", "pull": ["alice"], "push": ["alice"]},
    ]
    auth = auth_section(tmp_path, {"alice": "pw"}, rules)
    async with mirror(config, auth=auth) as (client, cache):
        assert await pull(client, "up/team/app", "v1") == img.manifest  # anonymous pull
        hidden = await client.get("/v2/corp/corp/secret/manifests/v1")
        assert hidden.status_code == 401
        assert cache.stats.misses == 1 + len(img.blobs())  # nothing fetched for the refusal
        pulled = await client.get("/v2/corp/corp/secret/manifests/v1", headers=basic("alice", "pw"))
        assert pulled.status_code == 200
        # push rights do not open a mirrored namespace to pushes
        push = await client.post("/v2/corp/x/blobs/uploads/", headers=basic("alice", "pw"))
        assert (push.status_code, error_codes(push)) == (403, ["DENIED"])


def _random_image(seed: int) -> Image:
    return build_image([[file("data", random.Random(seed).randbytes(100_000))]], "")


async def test_size_cap_evicts_the_least_recently_served_blobs(
    upstream: DockerRegistry, mirror: Mirror, storage_dir: Path
) -> None:
    x, y, z, pushed = (_random_image(seed) for seed in range(4))
    for tag, img in (("x", x), ("y", y), ("z", z), ("pushed", pushed)):
        await push_image(upstream.url, "team/app", tag, img)

    def size(img: Image) -> int:
        return sum(len(b) for b in img.blobs().values())

    def stored(img: Image) -> bool:
        digest = img.layers[0].digest
        return (storage_dir / "blobs/sha256" / digest.hex[:2] / digest.hex / "data").exists()

    config = upstream_config(upstream.url)
    config.update(max_bytes=size(x) + size(z), evict_grace=0)
    async with mirror(config) as (client, cache):
        for tag in ("pushed", "x", "y", "z"):
            await pull(client, "up/team/app", tag)
            await asyncio.sleep(0.05)  # distinct mtimes
        await pull(client, "up/team/app", "x")  # served again: now the most recent
        await push_with(client, "mine/app", "v1", pushed)  # also in an ordinary repository
        report = await cache.evictor.run_once()
        assert report.evicted >= 1
        assert not stored(y)  # least recently served
        assert stored(x) and stored(z)
        assert stored(pushed)  # linked by an ordinary repository: never evicted
        misses = cache.stats.misses
        await pull(client, "up/team/app", "y")  # fetched again
        assert cache.stats.misses > misses
