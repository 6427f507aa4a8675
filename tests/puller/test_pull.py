"""Pull from the reference registry into a fresh graph store: digests, layers, platform
choice, "already exists", resumption of a cut download (Range), corrupt content refused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import digest_bytes
from ocispec.models import Index, Platform, chain_ids
from ocispec.reference import Reference
from puller.pull import Puller, PullError, choose_platform, pull
from puller.push import push
from puller.store import GraphStore, assemble_rootfs
from regclient.api import RegistryClient
from tests.puller.conftest import put_image
from tests.support.docker_registry import DockerRegistry
from tests.support.flaky_proxy import FlakyProxy
from tests.support.images import Image, build_image, file, make_layer, sample_image


async def _seed(registry: DockerRegistry, tmp_path: Path, repo_tag: str, image: Image) -> Reference:
    """Put `image` into the registry (through a separate store, so the test store is empty)."""
    ref = Reference.parse(f"{registry.host}/{repo_tag}")
    seed = GraphStore(tmp_path / "seed-store")
    put_image(seed, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        await push(client, seed, ref)
    return ref


@pytest.mark.interop
async def test_pull_back_gives_identical_digests_and_registered_layers(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = sample_image()
    ref = await _seed(docker_registry, tmp_path, "team/app:v1", image)
    async with RegistryClient(ref.registry) as client:
        result = await pull(client, store, ref)
    assert result.digest == image.digest
    assert store.images.get(str(ref)) == image.digest
    assert store.content.read_bytes(image.digest) == image.manifest
    for digest, data in image.blobs().items():
        assert store.content.read_bytes(digest) == data
    chains = chain_ids(image.diff_ids)
    records = [store.layers.get(c) for c in chains]
    assert [r.parent if r else "missing" for r in records] == [None, chains[0], chains[1]]
    assert sorted(store.sources.repositories(ref.registry, image.layers[0].digest)) == ["team/app"]


@pytest.mark.interop
async def test_second_pull_downloads_nothing(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = sample_image()
    ref = await _seed(docker_registry, tmp_path, "team/app:v1", image)
    async with RegistryClient(ref.registry) as client:
        await pull(client, store, ref)
        mark = docker_registry.mark()
        again = await pull(client, store, ref)
    blob_gets = [
        r for r in docker_registry.requests_since(mark) if r.method == "GET" and "/blobs/" in r.uri
    ]
    assert blob_gets == []
    assert again.downloaded == [] and len(again.existing) == 4


@pytest.mark.interop
async def test_pull_by_digest_records_the_digest_name(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = build_image([[file("a", b"a")]])
    tagged = await _seed(docker_registry, tmp_path, "by/digest:v1", image)
    ref = Reference.parse(f"{tagged.name}@{image.digest}")
    async with RegistryClient(ref.registry) as client:
        result = await pull(client, store, ref)
    assert result.name == f"{tagged.name}@{image.digest}"
    assert store.images.get(result.name) == image.digest
    assert store.images.get(str(tagged)) is None


@pytest.mark.interop
async def test_cut_download_resumes_with_range_in_the_same_run(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = build_image([[file("big", bytes(range(256)) * 2000)]], compression="")
    await _seed(docker_registry, tmp_path, "cut/one:v1", image)
    layer = image.layers[0]
    with FlakyProxy(
        docker_registry.host, cut_after=100_000, cuts=1, cut_path=str(layer.digest)
    ) as proxy:
        ref = Reference.parse(f"{proxy.host}/cut/one:v1")
        async with RegistryClient(ref.registry) as client:
            result = await pull(client, store, ref)
    assert store.content.read_bytes(layer.digest) == layer.blob
    gets = [(p, r) for m, p, r in proxy.requests if m == "GET" and str(layer.digest) in p]
    assert gets == [(gets[0][0], None), (gets[0][0], "bytes=100000-")]
    assert result.bytes_downloaded == len(layer.blob) + len(image.config)  # nothing twice


@pytest.mark.interop
async def test_after_a_killed_pull_the_next_one_fetches_only_the_rest(
    docker_registry: DockerRegistry, tmp_path: Path
) -> None:
    image = build_image([[file("big", bytes(range(256)) * 2000)]], compression="")
    await _seed(docker_registry, tmp_path, "cut/two:v1", image)
    layer = image.layers[0]
    home = tmp_path / "home"
    with FlakyProxy(
        docker_registry.host, cut_after=150_000, cuts=1, cut_path=str(layer.digest)
    ) as proxy:
        ref = Reference.parse(f"{proxy.host}/cut/two:v1")
        async with RegistryClient(ref.registry) as client:
            with pytest.raises(PullError):
                await pull(client, GraphStore(home), ref, retries=0)  # "killed" here
        assert GraphStore(home).images.get(str(ref)) is None
        assert not GraphStore(home).content.has(layer.digest)
        async with RegistryClient(ref.registry) as client:  # a new process, same store
            result = await pull(client, GraphStore(home), ref)
    assert result.bytes_downloaded == len(layer.blob) - 150_000
    ranges = [r for m, p, r in proxy.requests if m == "GET" and str(layer.digest) in p]
    assert ranges == [None, "bytes=150000-"]
    assert GraphStore(home).content.read_bytes(layer.digest) == layer.blob


@pytest.mark.interop
async def test_corrupt_blob_is_refused_and_leaves_nothing(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = build_image([[file("a", b"payload")]])
    ref = await _seed(docker_registry, tmp_path, "bad/blob:v1", image)
    layer = image.layers[0]
    # corrupt the registry's copy on disk, keeping the size
    blob_file = next(docker_registry.root.rglob(f"blobs/sha256/*/{layer.digest.hex}/data"))
    blob_file.write_bytes(b"X" * len(layer.blob))
    async with RegistryClient(ref.registry) as client:
        with pytest.raises(PullError, match="digest"):
            await pull(client, store, ref, retries=1)
    assert not store.content.has(layer.digest)
    assert store.images.get(str(ref)) is None
    assert list((store.root / "ingest").glob("*.partial")) == []


def _index(*platforms: str) -> Index:
    manifests = []
    for i, p in enumerate(platforms):
        plat = Platform.parse(p)
        entry = {"os": plat.os, "architecture": plat.architecture}
        if plat.variant:
            entry["variant"] = plat.variant
        manifests.append(
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": str(digest_bytes(bytes([i]))),
                "size": 1,
                "platform": entry,
            }
        )
    from ocispec.models import parse_manifest

    parsed = parse_manifest(
        json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}).encode()
    )
    assert isinstance(parsed, Index)
    return parsed


def test_choose_platform_exact_and_variant_rules() -> None:
    index = _index("linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64")
    assert choose_platform(index, Platform.parse("linux/amd64")).digest == index.manifests[0].digest
    assert (
        choose_platform(index, Platform.parse("linux/arm/v7")).digest == index.manifests[2].digest
    )
    # arm64 hosts say v8; images usually leave it out
    assert (
        choose_platform(index, Platform.parse("linux/arm64/v8")).digest == index.manifests[3].digest
    )
    with pytest.raises(PullError, match="offered: linux/amd64"):
        choose_platform(index, Platform.parse("windows/amd64"))
    with pytest.raises(PullError):
        choose_platform(index, Platform.parse("linux/arm/v5"))


@pytest.mark.interop
async def test_pull_from_an_index_takes_the_requested_platform(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    amd = build_image([[file("arch", b"amd64")]], architecture="amd64")
    arm = build_image([[file("arch", b"arm64")]], architecture="arm64")
    ref = Reference.parse(f"{docker_registry.host}/multi/arch:v1")
    seed = GraphStore(tmp_path / "seed")
    put_image(seed, f"{ref.name}:amd", amd)
    put_image(seed, f"{ref.name}:arm", arm)
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
    index_digest = seed.content.write_bytes(index)
    seed.images.set(str(ref), index_digest)
    async with RegistryClient(ref.registry) as client:
        await push(client, seed, ref)
        result = await pull(client, store, ref, platform=Platform.parse("linux/arm64"))
    assert result.resolved_digest == index_digest
    assert result.digest == arm.digest
    assert store.images.get(str(ref)) == arm.digest
    assert not store.content.has(amd.layers[0].digest)


@pytest.mark.interop
@pytest.mark.slow
def test_sigkilled_pull_process_resumes_where_it_stopped(
    docker_registry: DockerRegistry, tmp_path: Path
) -> None:
    image = build_image([[file("big", bytes(range(256)) * 4000)]], compression="")
    asyncio.run(_seed(docker_registry, tmp_path, "kill/me:v1", image))
    layer = image.layers[0]
    home = tmp_path / "home"
    partial = home / "ingest" / f"sha256-{layer.digest.hex}.partial"
    env = {**os.environ, "PYREG_HOME": str(home), "DOCKER_CONFIG": str(tmp_path / "docker")}
    with FlakyProxy(docker_registry.host, rate=400_000, cut_path=str(layer.digest)) as proxy:
        ref = f"{proxy.host}/kill/me:v1"
        process = subprocess.Popen(
            [sys.executable, "-m", "pyreg", "pull", "-q", ref],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size >= 200_000:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kept = partial.stat().st_size
        assert 200_000 <= kept < len(layer.blob)
        proxy.rate = None
        done = subprocess.run(
            [sys.executable, "-m", "pyreg", "pull", "-q", ref],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(image.digest)
    ranges = [r for m, p, r in proxy.requests if m == "GET" and str(layer.digest) in p]
    assert ranges == [None, f"bytes={kept}-"]
    assert GraphStore(home).content.read_bytes(layer.digest) == layer.blob
    assert not partial.exists()


@pytest.mark.interop
async def test_image_repeating_a_layer_pulls_and_pushes_it_once(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    empty = make_layer([], "gzip")
    image = build_image([empty, make_layer([file("a", b"1")]), empty])
    ref = await _seed(docker_registry, tmp_path, "repeat/layer:v1", image)
    pushes = [r for r in docker_registry.requests() if r.method == "PUT" and "/blobs/" in r.uri]
    assert len(pushes) == 3  # config + two distinct layers
    async with RegistryClient(ref.registry) as client:
        result = await pull(client, store, ref)
    assert sorted(map(str, result.downloaded)) == sorted(map(str, image.blobs()))
    chains = chain_ids(image.diff_ids)
    assert len({str(c) for c in chains}) == 3
    assert all(store.layers.get(c) is not None for c in chains)


def _fake_registry(
    manifest: bytes, blobs: dict[str, bytes]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/manifests/" in path:
            return httpx.Response(200, content=manifest, headers={"Content-Type": mt.OCI_MANIFEST})
        digest = path.rsplit("/", 1)[1]
        if digest in blobs:
            return httpx.Response(200, content=blobs[digest])
        return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})

    return handler


async def test_blob_longer_than_its_descriptor_is_refused(store: GraphStore) -> None:
    image = build_image([[file("a", b"x")]])
    layer = image.layers[0]
    blobs = {str(d): b for d, b in image.blobs().items()}
    blobs[str(layer.digest)] = layer.blob + b"trailing garbage"
    handler = _fake_registry(image.manifest, blobs)
    async with RegistryClient("localhost:1", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(PullError, match="longer"):
            await pull(client, store, Reference.parse("localhost:1/a/b:v1"), retries=0)
    assert not store.content.has(layer.digest)
    assert store.images.list() == {}


async def test_config_that_is_not_json_is_a_clear_error(store: GraphStore) -> None:
    config = b"not json at all"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": str(digest_bytes(config)),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    handler = _fake_registry(manifest, {str(digest_bytes(config)): config})
    async with RegistryClient("localhost:1", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(PullError, match="JSON"):
            await pull(client, store, Reference.parse("localhost:1/a/b:v1"))
    assert store.images.list() == {}


async def test_garbage_manifest_is_a_clear_error(store: GraphStore) -> None:
    handler = _fake_registry(b'{"schemaVersion": 2, "mediaType": "x/unknown"}', {})
    async with RegistryClient("localhost:1", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(PullError, match="not a manifest"):
            await pull(client, store, Reference.parse("localhost:1/a/b:v1"))


@pytest.mark.interop
async def test_layer_not_matching_its_diff_id_fails_and_records_no_name(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    good = make_layer([file("a", b"1")])
    liar = build_image(
        [good],
        config_extra={
            "rootfs": {"type": "layers", "diff_ids": [str(digest_bytes(b"another tar"))]}
        },
    )
    ref = await _seed(docker_registry, tmp_path, "liar/image:v1", liar)
    async with RegistryClient(ref.registry) as client:
        with pytest.raises(PullError, match="layer"):
            await pull(client, store, ref)
    assert store.images.list() == {}
    assert store.layers.list() == []
    # the layer blob did arrive (verified against its digest): a later push may mount it
    assert store.sources.repositories(ref.registry, good.digest) == ["liar/image"]
    assert store.sources.repositories(ref.registry, liar.digest) == []


@pytest.mark.interop
async def test_artifact_is_pulled_as_blobs_without_layers(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    config, payload = b"{}", b"an attached signature"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.example.sig.config+json",
                "digest": str(digest_bytes(config)),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.example.sig",
                    "size": len(payload),
                    "digest": str(digest_bytes(payload)),
                }
            ],
        }
    ).encode()
    seed = GraphStore(tmp_path / "seed")
    ref = Reference.parse(f"{docker_registry.host}/art/sig:v1")
    seed.content.write_bytes(config)
    seed.content.write_bytes(payload)
    seed.images.set(str(ref), seed.content.write_bytes(manifest))
    async with RegistryClient(ref.registry) as client:
        await push(client, seed, ref)
        result = await pull(client, store, ref)
    assert result.digest == digest_bytes(manifest)
    assert store.content.read_bytes(digest_bytes(payload)) == payload
    assert store.layers.list() == []


async def test_giant_config_is_refused_before_download(
    store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile registry's config with millions of diff_ids would be downloaded, then read and
    parsed whole: refused from its descriptor's size, before a byte of it is fetched."""
    import puller.pull

    image = build_image([[file("a", b"x")]])
    monkeypatch.setattr(puller.pull, "MAX_CONFIG_BYTES", len(image.config) - 1)
    fetched: list[str] = []
    serve = _fake_registry(image.manifest, {str(d): b for d, b in image.blobs().items()})

    def handler(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            fetched.append(request.url.path)
        return serve(request)

    async with RegistryClient("localhost:1", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(PullError, match="config"):
            await pull(client, store, Reference.parse("localhost:1/a/b:v1"))
    assert fetched == []
    assert store.images.list() == {}


@pytest.mark.interop
async def test_pull_records_its_sources_in_one_write(
    docker_registry: DockerRegistry,
    store: GraphStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = sample_image()
    ref = await _seed(docker_registry, tmp_path, "team/app:v1", image)
    writes: list[tuple[object, ...]] = []
    record = store.sources.record

    def counting(*args: object) -> None:
        writes.append(args)
        record(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store.sources, "record", counting)
    async with RegistryClient(ref.registry) as client:
        await pull(client, store, ref)
    assert len(writes) == 1  # one fsync'd rewrite of sources.json, not one per blob
    for digest in [*image.blobs(), image.digest]:
        assert store.sources.repositories(ref.registry, digest) == ["team/app"]


# -- prune during a pull -----------------------------------------------------------------------


def _prune_process(store: GraphStore) -> str:
    """`pyreg prune` as its own process on the same store; its output."""
    env = {**os.environ, "PYREG_HOME": str(store.root)}
    done = subprocess.run(
        [sys.executable, "-m", "pyreg", "prune"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.interop
async def test_prune_during_a_pull_keeps_what_the_pull_holds(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    image = sample_image()
    ref = await _seed(docker_registry, tmp_path, "lease/app:v1", image)
    stray = store.content.write_bytes(b"no image names this")
    outputs: list[str] = []

    async def prune_now(step: str) -> None:
        # everything is fetched and unpacked, nothing is named yet: what a prune would sweep
        assert step == "fetched" and store.images.list() == {}
        outputs.append(await asyncio.to_thread(_prune_process, store))

    async with RegistryClient(ref.registry) as client:
        result = await Puller(client, store, checkpoint=prune_now).pull(ref)

    assert len(outputs) == 1 and outputs[0].startswith("Removed 1 blobs"), outputs
    assert not store.content.has(stray)  # the prune did run
    assert result.digest == image.digest and store.images.get(str(ref)) == image.digest
    target = tmp_path / "rootfs"
    assemble_rootfs(store, chain_ids(image.diff_ids), target)
    assert (target / "etc/hostname").read_text() == "top\n"
    assert list((store.root / "leases").iterdir()) == []  # the lease went with the pull


@pytest.mark.interop
@pytest.mark.parametrize("lose", ["config", "layer"])
async def test_a_pull_whose_content_vanished_fails_loudly(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path, lose: str
) -> None:
    image = sample_image()
    ref = await _seed(docker_registry, tmp_path, f"vanish/{lose}:v1", image)

    async def remove(step: str) -> None:
        if lose == "config":
            store.content.delete(image.config_digest)
        else:
            store.layers.delete(chain_ids(image.diff_ids)[1])

    async with RegistryClient(ref.registry) as client:
        with pytest.raises(PullError, match="vanished from the local store"):
            await Puller(client, store, checkpoint=remove).pull(ref)
    assert store.images.list() == {}


@pytest.mark.interop
async def test_a_layer_unpacks_while_its_blob_downloads(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    """The unpack reads the partial file as it grows: the layer's first file is on disk
    before the blob is complete; the layer is published only after the blob is verified."""
    noise = bytes(range(256)) * 12_000  # 3 MB, trickled out at 1.5 MB/s: ~2 s
    image = build_image([[file("first", b"early"), file("rest", noise)]], compression="")
    await _seed(docker_registry, tmp_path, "slow/one:v1", image)
    layer = image.layers[0]
    chain = chain_ids(image.diff_ids)[0]
    seen_early = False
    with FlakyProxy(docker_registry.host, rate=1_500_000, cut_path=str(layer.digest)) as proxy:
        ref = Reference.parse(f"{proxy.host}/slow/one:v1")
        async with RegistryClient(ref.registry) as client:
            task = asyncio.create_task(pull(client, store, ref))
            while not task.done():
                unpacking = list((store.root / "layers").glob(".tmp-*/rootfs/first"))
                if unpacking and not store.content.has(layer.digest):
                    seen_early = True
                    assert store.layers.get(chain) is None  # not published before the blob
                await asyncio.sleep(0.01)
            await task
    assert seen_early
    record = store.layers.get(chain)
    assert record is not None and record.compressed_size == len(layer.blob)
    assert (record.unpacked_dir / "rest").read_bytes() == noise
