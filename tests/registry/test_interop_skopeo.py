"""Real clients against a real `pyreg serve` process: skopeo copies a multi-layer OCI image in
and back out (to an OCI layout and to a `dir:`) with identical digests, inspects it, lists
tags and deletes; a multi-arch index copies with `--all`; podman pulls what skopeo pushed
and pushes it back to another repository. Each test skips with the reason when its tool is
missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest, digest_bytes
from tests.support.images import (
    Image,
    build_image,
    file,
    sample_image,
    write_blob,
    write_oci_layout,
)
from tests.support.server import RegistryServer

pytestmark = pytest.mark.interop


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def _run(*argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    storage = tmp_path_factory.mktemp("interop") / "storage"
    with RegistryServer(f"file://{storage}") as running:
        yield running


@pytest.fixture(scope="module")
def host(server: RegistryServer) -> str:
    return server.url.removeprefix("http://")


@pytest.fixture(scope="module")
def image() -> Image:
    return sample_image()  # three gzip layers


@pytest.fixture(scope="module")
def pushed(host: str, image: Image, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample image copied into pyreg by skopeo, as `interop/app:v1`."""
    skopeo = _need("skopeo")
    layout = write_oci_layout(tmp_path_factory.mktemp("layout") / "in", {"v1": image})
    ref = f"{host}/interop/app:v1"
    _run(
        skopeo,
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        f"oci:{layout}:v1",
        f"docker://{ref}",
    )
    return ref


def _blob_files(layout: Path) -> dict[Digest, bytes]:
    root = layout / "blobs"
    return {
        Digest(alg.name, path.name): path.read_bytes()
        for alg in root.iterdir()
        for path in alg.iterdir()
    }


def test_skopeo_copy_in_and_out_to_oci_layout(
    pushed: str, image: Image, tmp_path: Path, server: RegistryServer
) -> None:
    skopeo = _need("skopeo")
    # the registry holds exactly what was pushed
    resp = httpx.get(
        f"{server.url}/v2/interop/app/manifests/v1", headers={"Accept": mt.OCI_MANIFEST}
    )
    assert resp.content == image.manifest
    assert resp.headers["Docker-Content-Digest"] == str(image.digest)
    out = tmp_path / "out"
    _run(skopeo, "copy", "--src-tls-verify=false", f"docker://{pushed}", f"oci:{out}:v1")
    index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [str(image.digest)]
    blobs = _blob_files(out)
    assert blobs[image.digest] == image.manifest
    for digest, data in image.blobs().items():
        assert blobs[digest] == data
        assert digest_bytes(data) == digest
    assert set(blobs) == {image.digest, *image.blobs()}


def test_skopeo_copy_out_to_dir(pushed: str, image: Image, tmp_path: Path) -> None:
    skopeo = _need("skopeo")
    target = tmp_path / "dir"
    _run(skopeo, "copy", "--src-tls-verify=false", f"docker://{pushed}", f"dir:{target}")
    assert (target / "manifest.json").read_bytes() == image.manifest
    for digest, data in image.blobs().items():
        assert (target / digest.hex).read_bytes() == data


def test_skopeo_inspect(pushed: str, image: Image) -> None:
    skopeo = _need("skopeo")
    inspected = json.loads(_run(skopeo, "inspect", "--tls-verify=false", f"docker://{pushed}"))
    assert inspected["Digest"] == str(image.digest)
    assert inspected["Layers"] == [str(layer.digest) for layer in image.layers]
    assert inspected["Architecture"] == "amd64"
    raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{pushed}")
    assert raw.encode() == image.manifest
    config = _run(
        skopeo, "inspect", "--config", "--raw", "--tls-verify=false", f"docker://{pushed}"
    )
    assert config.encode() == image.config


def test_skopeo_list_tags(host: str, pushed: str, image: Image, tmp_path: Path) -> None:
    skopeo = _need("skopeo")
    _run(
        skopeo, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{pushed}", f"docker://{host}/interop/app:v2",
    )  # fmt: skip
    listed = json.loads(
        _run(skopeo, "list-tags", "--tls-verify=false", f"docker://{host}/interop/app")
    )
    assert listed["Repository"].endswith("interop/app")
    assert sorted(listed["Tags"]) == ["v1", "v2"]


def test_skopeo_delete(host: str, image: Image, tmp_path: Path, server: RegistryServer) -> None:
    skopeo = _need("skopeo")
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    ref = f"docker://{host}/interop/doomed:v1"
    _run(skopeo, "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:v1", ref)
    _run(skopeo, "delete", "--tls-verify=false", ref)
    # skopeo deletes the manifest by digest: the manifest and its tag are gone
    url = f"{server.url}/v2/interop/doomed/manifests"
    assert httpx.get(f"{url}/{image.digest}").status_code == 404
    assert httpx.get(f"{url}/v1").status_code == 404
    done = subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", ref], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "manifest unknown" in done.stderr.lower()


def _multi_arch_layout(root: Path) -> tuple[Path, bytes, list[Image]]:
    images = [
        build_image([[file("etc/arch", arch.encode())]], "gzip", architecture=arch)
        for arch in ("amd64", "arm64")
    ]
    layout = write_oci_layout(root, {f"img{i}": img for i, img in enumerate(images)})
    manifests: list[dict[str, Any]] = [
        {**img.descriptor(), "platform": {"architecture": arch, "os": "linux"}}
        for img, arch in zip(images, ("amd64", "arm64"), strict=True)
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests})
    index_bytes = index.encode()
    digest = digest_bytes(index_bytes)
    write_blob(layout, digest, index_bytes)
    entry = {
        "mediaType": mt.OCI_INDEX,
        "digest": str(digest),
        "size": len(index_bytes),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }
    top = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
    (layout / "index.json").write_text(json.dumps(top))
    return layout, index_bytes, images


def test_skopeo_copies_a_multi_arch_index_with_all(
    host: str, tmp_path: Path, server: RegistryServer
) -> None:
    skopeo = _need("skopeo")
    layout, index_bytes, images = _multi_arch_layout(tmp_path / "multi")
    ref = f"docker://{host}/interop/multi:v1"
    _run(
        skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
        f"oci:{layout}:multi", ref,
    )  # fmt: skip
    raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false", ref)
    assert raw.encode() == index_bytes
    for img in images:
        resp = httpx.get(
            f"{server.url}/v2/interop/multi/manifests/{img.digest}",
            headers={"Accept": mt.OCI_MANIFEST},
        )
        assert resp.content == img.manifest
        for digest, data in img.blobs().items():
            assert httpx.get(f"{server.url}/v2/interop/multi/blobs/{digest}").content == data
    # and back out with --all: the same index and children
    out = tmp_path / "out"
    _run(skopeo, "copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:multi")
    blobs = _blob_files(out)
    assert blobs[digest_bytes(index_bytes)] == index_bytes
    for img in images:
        assert blobs[img.digest] == img.manifest


@pytest.fixture
def podman_env(tmp_path: Path) -> dict[str, str]:
    """An empty credentials file of its own, so the user's logins play no part."""
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    return {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}


@pytest.fixture
def podman(tmp_path: Path, podman_env: dict[str, str]) -> Iterator[list[str]]:
    binary = _need("podman")
    # podman refuses a runroot longer than 50 characters; pytest's tmp_path is longer
    runroot = Path(tempfile.mkdtemp(prefix="pyreg-"))
    base = [
        binary, "--root", str(tmp_path / "root"), "--runroot", str(runroot),
        "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
    ]  # fmt: skip
    probe = subprocess.run(
        [*base, "info"], capture_output=True, text=True, timeout=60, env=podman_env
    )
    if probe.returncode != 0:
        shutil.rmtree(runroot, ignore_errors=True)
        pytest.skip(f"podman cannot run in this sandbox: {probe.stderr.strip()[:300]}")
    yield base
    shutil.rmtree(runroot, ignore_errors=True)


def test_podman_pulls_what_skopeo_pushed_and_pushes_it_back(
    podman: list[str],
    podman_env: dict[str, str],
    pushed: str,
    image: Image,
    host: str,
    server: RegistryServer,
) -> None:
    env = podman_env
    _run(*podman, "pull", "--tls-verify=false", pushed, env=env)
    listed = _run(*podman, "images", "--format", "{{.Digest}} {{.ID}}", env=env).split()
    assert listed[0] == str(image.digest)
    assert image.config_digest.hex.startswith(listed[1])
    back = f"{host}/interop/app-back:v1"
    _run(*podman, "push", "--tls-verify=false", pushed, back, env=env)
    # podman recompresses the layers it stored; the filesystem content is what must survive
    resp = httpx.get(
        f"{server.url}/v2/interop/app-back/manifests/v1",
        headers={"Accept": f"{mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}"},
    )
    assert resp.status_code == 200
    manifest = resp.json()
    config = httpx.get(f"{server.url}/v2/interop/app-back/blobs/{manifest['config']['digest']}")
    assert config.status_code == 200
    diff_ids = json.loads(config.content)["rootfs"]["diff_ids"]
    assert diff_ids == [str(d) for d in image.diff_ids]
    for layer in manifest["layers"]:
        blob = httpx.get(f"{server.url}/v2/interop/app-back/blobs/{layer['digest']}")
        assert digest_bytes(blob.content) == Digest.parse(layer["digest"])
