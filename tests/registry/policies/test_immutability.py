"""Tag immutability: a covered tag, once it exists, is never moved nor deleted by any route
(API, store callers such as the importer); the same digest again is fine; the pull-through
cache (mirror=True) is exempt."""

from __future__ import annotations

import httpx
import pytest

from ocispec.digest import Digest
from registry import errors
from registry.policies.config import parse_policies
from registry.settings import Settings
from registry.stores.repository import RegistryStore
from storage_backends.base import StorageBackend
from tests.registry.helpers import digest_of, error_codes, push_image, put_manifest

POLICIES = {"immutable": [{"repository": "release/**", "tags": ["v*"]}]}


@pytest.fixture(params=["filesystem", "s3", "rgw"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def settings() -> Settings:
    return Settings(max_manifest_size=64 * 1024, policies=POLICIES)


async def two_images(client: httpx.AsyncClient, name: str) -> tuple[bytes, bytes]:
    first, _ = await push_image(client, name, [b"one"])
    second, _ = await push_image(client, name, [b"two"])
    return first, second


def assert_denied(response: httpx.Response, tag: str) -> None:
    assert response.status_code == 403, response.text
    assert error_codes(response) == ["DENIED"]
    message = response.json()["errors"][0]["message"]
    assert "policies.immutable[0]" in message and tag in message, message


async def test_an_immutable_tag_cannot_move_but_the_same_digest_is_pushed_again(
    client: httpx.AsyncClient,
) -> None:
    name = "release/app"
    first, second = await two_images(client, name)
    assert (await put_manifest(client, name, "v1", first)).status_code == 201
    assert (await put_manifest(client, name, "v1", first)).status_code == 201  # CI re-run
    assert_denied(await put_manifest(client, name, "v1", second), "v1")
    got = await client.get(f"/v2/{name}/manifests/v1")
    assert got.headers["Docker-Content-Digest"] == digest_of(first)
    # a push by digest with ?tag= is the same move
    response = await client.put(
        f"/v2/{name}/manifests/{digest_of(second)}?tag=v1",
        content=second,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert_denied(response, "v1")
    # tags outside the rule, and repositories outside it, move freely
    assert (await put_manifest(client, name, "dev", first)).status_code == 201
    assert (await put_manifest(client, name, "dev", second)).status_code == 201
    other_first, other_second = await two_images(client, "other/app")
    assert (await put_manifest(client, "other/app", "v1", other_first)).status_code == 201
    assert (await put_manifest(client, "other/app", "v1", other_second)).status_code == 201


async def test_an_immutable_tag_cannot_be_deleted_by_tag_nor_by_digest(
    client: httpx.AsyncClient,
) -> None:
    name = "release/app"
    first, second = await two_images(client, name)
    assert (await put_manifest(client, name, "v2", first)).status_code == 201
    assert_denied(await client.delete(f"/v2/{name}/manifests/v2"), "v2")
    assert_denied(await client.delete(f"/v2/{name}/manifests/{digest_of(first)}"), "v2")
    assert (await client.get(f"/v2/{name}/manifests/v2")).status_code == 200
    # a manifest holding only mutable tags is deleted as before
    assert (await put_manifest(client, name, "nightly", second)).status_code == 201
    assert (await client.delete(f"/v2/{name}/manifests/nightly")).status_code == 202
    assert (await put_manifest(client, name, "nightly", second)).status_code == 201
    assert (await client.delete(f"/v2/{name}/manifests/{digest_of(second)}")).status_code == 202


async def test_the_store_refuses_every_caller_and_exempts_the_mirror(
    backend: StorageBackend, client: httpx.AsyncClient
) -> None:
    """The importer and any other store caller obey the rule; the proxy cache (mirror=True)
    follows its upstream."""
    name = "release/app"
    first, second = await two_images(client, name)
    store = RegistryStore(backend, policies=parse_policies(POLICIES))
    media = "application/vnd.oci.image.manifest.v1+json"
    await store.manifests.put(name, "v3", first, media)
    with pytest.raises(errors.RegistryError) as refused:
        await store.manifests.put(name, "v3", second, media)
    assert refused.value.code == "DENIED" and refused.value.status == 403
    second_digest = Digest.parse(digest_of(second))
    # refused before any write: the second manifest was not stored
    assert not await store.manifests.has(name, second_digest)
    with pytest.raises(errors.RegistryError, match="immutable"):
        await store.tags.set(name, "v3", second_digest)
    with pytest.raises(errors.RegistryError, match="immutable"):
        await store.tags.delete(name, "v3")
    assert str(await store.tags.resolve(name, "v3")) == digest_of(first)
    await store.manifests.put(name, "v3", second, media, require_references=False, mirror=True)
    assert await store.tags.resolve(name, "v3") == second_digest
