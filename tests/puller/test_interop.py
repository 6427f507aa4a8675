"""Real peers: skopeo and podman pull what pyreg pushed; pyreg pulls what skopeo pushed.
Each test skips with the reason when its tool is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ocispec.digest import Digest, digest_bytes
from ocispec.reference import Reference
from puller.pull import pull
from puller.push import push
from puller.store import GraphStore
from regclient.api import RegistryClient
from tests.puller.conftest import put_image
from tests.support.docker_registry import DockerRegistry
from tests.support.images import Image, sample_image, write_oci_layout

pytestmark = pytest.mark.interop


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{argv[0]} failed: {done.stderr}"
    return done


async def _push(registry: DockerRegistry, store: GraphStore, name: str, image: Image) -> str:
    ref = Reference.parse(f"{registry.host}/{name}")
    put_image(store, str(ref), image)
    async with RegistryClient(ref.registry) as client:
        await push(client, store, ref)
    return str(ref)


async def test_skopeo_copies_what_pyreg_pushed(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    skopeo = _need("skopeo")
    image = sample_image()
    ref = await _push(docker_registry, store, "interop/skopeo:v1", image)
    target = tmp_path / "dir"
    _run(skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{target}")
    assert (target / "manifest.json").read_bytes() == image.manifest
    for digest, data in image.blobs().items():
        assert (target / digest.hex).read_bytes() == data
    inspected = json.loads(_run(skopeo, "inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    assert inspected["Digest"] == str(image.digest)


async def test_podman_pulls_what_pyreg_pushed(
    docker_registry: DockerRegistry,
    store: GraphStore,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    podman = _need("podman")
    image = sample_image()
    ref = await _push(docker_registry, store, "interop/podman:v1", image)
    runroot = Path(tempfile.mkdtemp(prefix="pyreg-", dir="/tmp"))  # podman: <= 50 characters
    request.addfinalizer(lambda: shutil.rmtree(runroot, ignore_errors=True))
    base = [
        podman,
        "--root",
        str(tmp_path / "root"),
        "--runroot",
        str(runroot),
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]
    _run(*base, "pull", "--tls-verify=false", ref)
    listed = _run(*base, "images", "--format", "{{.Digest}} {{.ID}}").stdout.split()
    assert listed[0] == str(image.digest)
    assert image.config_digest.hex.startswith(listed[1])


async def test_pyreg_pulls_what_skopeo_pushed(
    docker_registry: DockerRegistry, store: GraphStore, tmp_path: Path
) -> None:
    skopeo = _need("skopeo")
    image = sample_image("zstd")
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    ref = Reference.parse(f"{docker_registry.host}/interop/from-skopeo:v1")
    _run(
        skopeo,
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        f"oci:{layout}:v1",
        f"docker://{ref}",
    )
    async with RegistryClient(ref.registry) as client:
        result = await pull(client, store, ref)
    assert result.digest == image.digest
    manifest = json.loads(store.content.read_bytes(result.digest))
    for layer in manifest["layers"]:
        digest = Digest.parse(layer["digest"])
        assert digest_bytes(store.content.read_bytes(digest)) == digest
    assert len(store.layers.list()) == 3
