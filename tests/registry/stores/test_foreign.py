"""Foreign layers on manifest PUT (registry/stores/foreign.py), as distribution does: a layer
with `urls` may be absent (Docker schema 2: only the foreign media type), everything else must
be present, and the URLs are checked against validation.manifests.urls.allow/deny. Online GC
keeps working with absent foreign blobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import yaml

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from registry.app import create_app
from registry.gc import GarbageCollector
from registry.settings import Settings, SettingsError, load_settings
from registry.stores import paths
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import (
    descriptor,
    digest_of,
    encode,
    error_codes,
    push_blob,
    push_image,
    put_manifest,
)
from tests.registry.test_gc import age_everything
from tests.support.server import RegistryServer

URL = "https://store.example.com/layers/abc"


@asynccontextmanager
async def registry(
    validation: dict[str, Any] | None = None, backend: MemoryBackend | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(validation=validation), backend=backend or MemoryBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


def foreign(media_type: str, content: bytes, urls: list[str] | None = None) -> dict[str, Any]:
    return descriptor(media_type, content, **({"urls": urls} if urls is not None else {}))


async def put_with_layer(
    client: httpx.AsyncClient, layer: dict[str, Any], media_type: str = mt.OCI_MANIFEST
) -> httpx.Response:
    _, manifest = await push_image(client, "app", media_type=media_type)
    manifest["layers"].append(layer)
    return await put_manifest(client, "app", "v1", encode(manifest), media_type)


async def test_oci_layer_with_urls_may_be_absent_but_not_without() -> None:
    async with registry() as client:
        with_urls = foreign(mt.OCI_LAYER_ND_GZIP, b"nd", [URL])
        assert (await put_with_layer(client, with_urls)).status_code == 201
        # distribution too: in an OCI manifest any layer with urls is fetched from them
        plain = foreign(mt.OCI_LAYER_GZIP, b"plain-with-urls", [URL])
        assert (await put_with_layer(client, plain)).status_code == 201
        # non-distributable by media type, but nowhere to fetch it from: must be here
        no_urls = foreign(mt.OCI_LAYER_ND_GZIP, b"nd-no-urls")
        refused = await put_with_layer(client, no_urls)
        assert refused.status_code == 404
        assert error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]
        assert no_urls["digest"] in refused.text


async def test_docker_manifest_exempts_only_the_foreign_media_type() -> None:
    async with registry() as client:
        layer = foreign(mt.DOCKER_FOREIGN_LAYER, b"windows-base", [URL])
        assert (await put_with_layer(client, layer, mt.DOCKER_MANIFEST)).status_code == 201
        ordinary = foreign(mt.DOCKER_LAYER, b"ordinary", [URL])
        refused = await put_with_layer(client, ordinary, mt.DOCKER_MANIFEST)
        assert refused.status_code == 404
        assert error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]


async def test_config_and_index_children_with_urls_must_be_present() -> None:
    async with registry() as client:
        _, manifest = await push_image(client, "app")
        manifest["config"] = {**descriptor(mt.OCI_CONFIG, b"{}absent"), "urls": [URL]}
        refused = await put_manifest(client, "app", "v1", encode(manifest))
        assert refused.status_code == 404 and error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]
        child = {**descriptor(mt.OCI_MANIFEST, b"absent manifest"), "urls": [URL]}
        index = encode({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [child]})
        refused = await put_manifest(client, "app", "idx", index, mt.OCI_INDEX)
        assert refused.status_code == 404 and error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]


@pytest.mark.parametrize(
    "url",
    ["ftp://store.example.com/x", "file:///etc/passwd", "https:///no-host", f"{URL}#frag"],
)
async def test_unusable_urls_are_refused(url: str) -> None:
    async with registry() as client:
        response = await put_with_layer(client, foreign(mt.OCI_LAYER_ND_GZIP, b"x", [URL, url]))
        assert response.status_code == 400
        assert error_codes(response) == ["MANIFEST_INVALID"]
        assert url in response.json()["errors"][0]["message"]
        assert (await client.get("/v2/app/manifests/v1")).status_code == 404


async def test_allow_and_deny_lists() -> None:
    rules = {
        "manifests": {"urls": {"allow": [r"^https://store\.example\.com/"], "deny": ["/bad/"]}}
    }
    async with registry(rules) as client:
        allowed = foreign(mt.OCI_LAYER_ND_GZIP, b"a", [URL])
        assert (await put_with_layer(client, allowed)).status_code == 201
        elsewhere = foreign(mt.OCI_LAYER_ND_GZIP, b"b", ["https://other.example.com/x"])
        response = await put_with_layer(client, elsewhere)
        assert response.status_code == 400 and "allow" in response.text
        denied = foreign(mt.OCI_LAYER_ND_GZIP, b"c", ["https://store.example.com/bad/x"])
        response = await put_with_layer(client, denied)
        assert response.status_code == 400 and "deny" in response.text
    # distribution's "allow nothing", written explicitly
    async with registry({"manifests": {"urls": {"deny": [".*"]}}}) as client:
        response = await put_with_layer(client, foreign(mt.OCI_LAYER_ND_GZIP, b"d", [URL]))
        assert response.status_code == 400


def test_validation_settings_are_checked(tmp_path: Any) -> None:
    good = {"validation": {"manifests": {"urls": {"allow": ["^https://"], "deny": []}}}}
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    assert load_settings(tmp_path / "good.yaml").validation == good["validation"]
    bad: dict[str, Any]
    for bad in (
        {"validation": {"manifests": {"urls": {"allow": ["("]}}}},
        {"validation": {"manifests": {"urls": {"allow": "^https://"}}}},
        {"validation": {"manifests": {"url": {}}}},
        {"validation": "yes"},
    ):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(SettingsError):
            load_settings(tmp_path / "bad.yaml")


async def test_gc_keeps_an_image_whose_foreign_layer_is_absent() -> None:
    backend = MemoryBackend()
    async with registry(backend=backend) as client:
        layer = foreign(mt.OCI_LAYER_ND_GZIP, b"absent-foreign", [URL])
        assert (await put_with_layer(client, layer)).status_code == 201
        orphan = await push_blob(client, "app", b"orphan")
        age_everything(backend, 7200)
        report = await GarbageCollector(backend, grace=600.0).run()
        assert report.deleted == [Digest.parse(orphan)]
        assert not await backend.exists(paths.blob_data(Digest.parse(layer["digest"])))
        pulled = await client.get("/v2/app/manifests/v1")
        assert pulled.status_code == 200
        body = pulled.json()
        for desc in [body["config"], *body["layers"][:-1]]:
            blob = await client.get(f"/v2/app/blobs/{desc['digest']}")
            assert blob.status_code == 200 and digest_of(blob.content) == desc["digest"]
        assert (await client.get(f"/v2/app/blobs/{layer['digest']}")).status_code == 404


def test_served_registry_reads_validation_from_its_config(tmp_path: Any) -> None:
    config = {"validation": {"manifests": {"urls": {"deny": ["example\\.com"]}}}}
    with RegistryServer(f"file://{tmp_path / 'storage'}", config) as server:
        with httpx.Client(base_url=server.url) as http:
            config_blob = b'{"architecture":"amd64","os":"linux"}'
            digest = digest_of(config_blob)
            up = http.post(f"/v2/app/blobs/uploads/?digest={digest}", content=config_blob)
            assert up.status_code == 201
            manifest = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": descriptor(mt.OCI_CONFIG, config_blob),
                "layers": [foreign(mt.OCI_LAYER_ND_GZIP, b"x", [URL])],
            }
            response = http.put(
                "/v2/app/manifests/v1",
                content=encode(manifest),
                headers={"Content-Type": mt.OCI_MANIFEST},
            )
            assert response.status_code == 400, response.text
            assert response.json()["errors"][0]["code"] == "MANIFEST_INVALID"
