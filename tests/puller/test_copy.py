"""Registry-to-registry copy: an index with every platform, blobs streamed across registries,
mounted within one, the tag last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocispec import mediatypes as mt
from ocispec.reference import Reference
from puller.copy import Copier
from puller.push import push
from puller.store import GraphStore
from regclient.api import RegistryClient
from tests.puller.conftest import put_image
from tests.support.docker_registry import DockerRegistry, start_registry
from tests.support.images import build_image, file

pytestmark = pytest.mark.interop


async def test_copy_an_index_to_another_registry(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    amd = build_image([[file("arch", b"amd64")]], architecture="amd64")
    arm = build_image([[file("arch", b"arm64")]], architecture="arm64")
    src = Reference.parse(f"{docker_registry.host}/multi/src:v1")
    put_image(store, f"{src.name}:amd", amd)
    put_image(store, f"{src.name}:arm", arm)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {**amd.descriptor(), "platform": {"os": "linux", "architecture": "amd64"}},
                {**arm.descriptor(), "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }
    ).encode()
    store.images.set(str(src), store.content.write_bytes(index))
    other = start_registry(tmp_path / "other")
    try:
        dst = Reference.parse(f"{other.host}/mirror/multi:v1")
        async with RegistryClient(src.registry) as a, RegistryClient(dst.registry) as b:
            await push(a, store, src)
            result = await Copier(a, b).copy(src, dst)
            fetched = await b.get_manifest("mirror/multi", "v1")
            for image in (amd, arm):
                assert (await b.get_manifest("mirror/multi", str(image.digest))).data == (
                    image.manifest
                )
        assert fetched.data == index
        assert len(result.copied) == 4 and result.mounted == []
        assert result.bytes_sent == sum(len(x) for i in (amd, arm) for x in i.blobs().values())
        puts = [r for r in other.requests() if r.method == "PUT" and "/manifests/" in r.uri]
        assert [r.uri.rsplit("/", 1)[1] for r in puts][-1] == "v1"  # the tag last
    finally:
        other.stop()


async def test_copy_again_skips_every_blob(
    docker_registry: DockerRegistry, store: GraphStore
) -> None:
    image = build_image([[file("a", b"again")]])
    src = Reference.parse(f"{docker_registry.host}/copy/src:v1")
    dst = Reference.parse(f"{docker_registry.host}/copy/dst:v1")
    put_image(store, str(src), image)
    async with RegistryClient(src.registry) as client:
        await push(client, store, src)
        first = await Copier(client, client).copy(src, dst)
        second = await Copier(client, client).copy(src, dst)
    assert len(first.mounted) == 2 and first.copied == []
    assert len(second.skipped) == 2 and second.mounted == [] and second.copied == []
