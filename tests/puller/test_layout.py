"""Load OCI layouts (dir, tar) and docker-save archives into the store; save OCI layouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Literal

import pytest

from ocispec import mediatypes as mt
from ocispec.digest import digest_bytes
from ocispec.models import chain_ids
from puller.layout import LayoutError, load, save
from puller.store import GraphStore, NotInStore, assemble_rootfs
from puller.store.limits import SizeCapExceeded
from tests.support.images import (
    build_image,
    file,
    register_image,
    sample_image,
    snapshot,
    write_docker_archive,
    write_oci_layout,
)

NAME = "localhost:5000/team/app"


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.skip("skopeo is not installed (Debian package skopeo)")
    return path


def _unpack(store: GraphStore, name: str, target: Path) -> dict[str, tuple[object, ...]]:
    from ocispec.models import ImageConfig, Manifest, parse_manifest

    digest = store.images.get(name)
    assert digest is not None
    manifest = parse_manifest(store.content.read_bytes(digest))
    assert isinstance(manifest, Manifest)
    config = ImageConfig.parse(store.content.read_bytes(manifest.config.digest))
    assemble_rootfs(store, chain_ids(config.diff_ids), target)
    return snapshot(target)


def _tar_dir(src: Path, dest: Path, mode: Literal["w", "w:gz"] = "w") -> Path:
    with tarfile.open(dest, mode) as tf:
        for child in sorted(src.iterdir()):
            tf.add(child, arcname=child.name)
    return dest


def test_load_oci_layout_directory(tmp_path: Path) -> None:
    image = sample_image()
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    store = GraphStore(tmp_path / "store")
    names = load(store, layout, repository=NAME)
    assert names == [f"{NAME}:v1"]
    assert store.images.get(f"{NAME}:v1") == image.digest
    assert len(store.layers.list()) == 3
    for digest in image.blobs():
        assert store.content.has(digest)
    rootfs = _unpack(store, names[0], tmp_path / "rootfs")
    assert "etc/motd" in rootfs and "etc/dangling" not in rootfs


def test_default_repository_from_path(tmp_path: Path) -> None:
    layout = write_oci_layout(tmp_path / "My_Layout", {"v1": build_image([[file("a")]])})
    assert load(GraphStore(tmp_path / "s"), layout) == ["localhost/my-layout:v1"]


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_load_oci_layout_tar(tmp_path: Path, mode: Literal["w", "w:gz"]) -> None:
    image = sample_image("zstd")
    layout = write_oci_layout(tmp_path / "layout", {"v1": image, "v2": image})
    archive = _tar_dir(layout, tmp_path / "layout.tar", mode)
    store = GraphStore(tmp_path / "store")
    assert sorted(load(store, archive, repository=NAME)) == [f"{NAME}:v1", f"{NAME}:v2"]
    assert store.images.get(f"{NAME}:v2") == image.digest


def test_load_docker_archive(tmp_path: Path) -> None:
    image = sample_image()
    archive = write_docker_archive(tmp_path / "saved.tar", {"example.com/a/b:v1": image})
    store = GraphStore(tmp_path / "store")
    assert load(store, archive) == ["example.com/a/b:v1"]
    digest = store.images.get("example.com/a/b:v1")
    assert digest is not None
    manifest = json.loads(store.content.read_bytes(digest))
    assert manifest["config"]["digest"] == str(image.config_digest)
    assert [x["mediaType"] for x in manifest["layers"]] == [mt.OCI_LAYER] * 3
    # the same files as the compressed original
    reference = GraphStore(tmp_path / "ref")
    assemble_rootfs(reference, register_image(reference, image), tmp_path / "expected")
    assert _unpack(store, "example.com/a/b:v1", tmp_path / "got") == snapshot(tmp_path / "expected")


def test_docker_archive_names_are_normalised(tmp_path: Path) -> None:
    archive = write_docker_archive(tmp_path / "s.tar", {"busybox:1": build_image([[file("x")]])})
    assert load(GraphStore(tmp_path / "store"), archive) == ["docker.io/library/busybox:1"]


def test_docker_archive_with_wrong_diff_id(tmp_path: Path) -> None:
    image = build_image([[file("x", b"x")]], config_extra={"rootfs": {"type": "layers",
        "diff_ids": [str(digest_bytes(b"other"))]}})  # fmt: skip
    archive = write_docker_archive(tmp_path / "s.tar", {"a/b:1": image})
    store = GraphStore(tmp_path / "store")
    with pytest.raises(Exception, match="diff_id"):
        load(store, archive)
    assert store.layers.list() == [] and store.images.list() == {}


def test_corrupt_blob_in_layout(tmp_path: Path) -> None:
    image = sample_image()
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    bad = image.layers[1].digest
    (layout / "blobs/sha256" / bad.hex).write_bytes(b"tampered")
    store = GraphStore(tmp_path / "store")
    with pytest.raises(LayoutError, match=str(bad)):
        load(store, layout, repository=NAME)
    assert not store.content.has(bad)
    assert store.images.list() == {}


def test_missing_blob_in_layout(tmp_path: Path) -> None:
    image = sample_image()
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    os.unlink(layout / "blobs/sha256" / image.config_digest.hex)
    with pytest.raises(LayoutError, match="missing"):
        load(GraphStore(tmp_path / "store"), layout, repository=NAME)


@pytest.mark.parametrize("junk", [b"", b"not a tar at all" * 100])
def test_not_an_archive(tmp_path: Path, junk: bytes) -> None:
    (tmp_path / "x.tar").write_bytes(junk)
    with pytest.raises(LayoutError):
        load(GraphStore(tmp_path / "store"), tmp_path / "x.tar")


def test_index_pointing_at_absent_manifest(tmp_path: Path) -> None:
    # index.json names a manifest the layout does not hold
    image = build_image([[file("a")]])
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:" + "0" * 64
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(LayoutError):
        load(GraphStore(tmp_path / "store"), layout)


def test_index_in_layout_picks_a_platform(tmp_path: Path) -> None:
    amd = build_image([[file("arch", b"amd64")]], architecture="amd64")
    arm = build_image([[file("arch", b"arm64")]], architecture="arm64")
    layout = write_oci_layout(tmp_path / "layout", {"a": amd, "b": arm})
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {**arm.descriptor(), "platform": {"os": "linux", "architecture": "arm64"}},
            {**amd.descriptor(), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    index_bytes = json.dumps(index).encode()
    d = digest_bytes(index_bytes)
    (layout / "blobs/sha256" / d.hex).write_bytes(index_bytes)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_INDEX,
                "digest": str(d),
                "size": len(index_bytes),
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(top))
    store = GraphStore(tmp_path / "store")
    assert load(store, layout, repository=NAME) == [f"{NAME}:multi"]
    import platform

    host_is_arm = platform.machine().lower() in ("aarch64", "arm64")
    assert store.images.get(f"{NAME}:multi") == (arm.digest if host_is_arm else amd.digest)
    assert store.content.has(d)


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    image = sample_image()
    store = GraphStore(tmp_path / "store")
    register_image(store, image, f"{NAME}:v1")
    save(store, [f"{NAME}:v1"], tmp_path / "out")
    index = json.loads((tmp_path / "out/index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == str(image.digest)
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert entry["annotations"]["io.containerd.image.name"] == f"{NAME}:v1"
    for digest, data in image.blobs().items():
        assert (tmp_path / "out/blobs/sha256" / digest.hex).read_bytes() == data
    other = GraphStore(tmp_path / "other")
    assert load(other, tmp_path / "out") == [f"{NAME}:v1"]
    assert other.images.get(f"{NAME}:v1") == image.digest


def test_save_merges_and_replaces_tags(tmp_path: Path) -> None:
    store = GraphStore(tmp_path / "store")
    one, two = build_image([[file("1")]]), build_image([[file("2")]])
    register_image(store, one, f"{NAME}:a")
    register_image(store, two, f"{NAME}:b")
    save(store, [f"{NAME}:a"], tmp_path / "out")
    save(store, [f"{NAME}:b"], tmp_path / "out")
    store.images.set(f"{NAME}:a", two.digest)
    save(store, [f"{NAME}:a"], tmp_path / "out")
    entries = json.loads((tmp_path / "out/index.json").read_text())["manifests"]
    tags = {e["annotations"]["org.opencontainers.image.ref.name"]: e["digest"] for e in entries}
    assert tags == {"a": str(two.digest), "b": str(two.digest)}


def test_save_unknown_image(tmp_path: Path) -> None:
    with pytest.raises(NotInStore):
        save(GraphStore(tmp_path / "store"), [f"{NAME}:nope"], tmp_path / "out")


@pytest.mark.interop
def test_skopeo_reads_saved_layout(tmp_path: Path) -> None:
    skopeo = _skopeo()
    image = sample_image()
    store = GraphStore(tmp_path / "store")
    register_image(store, image, f"{NAME}:v1")
    save(store, [f"{NAME}:v1"], tmp_path / "out")
    out = subprocess.run(
        [skopeo, "inspect", f"oci:{tmp_path}/out:v1"], check=True, capture_output=True, text=True
    )
    info = json.loads(out.stdout)
    assert info["Digest"] == str(image.digest)
    assert info["Layers"] == [str(x.digest) for x in image.layers]
    subprocess.run(
        [skopeo, "copy", f"oci:{tmp_path}/out:v1", f"dir:{tmp_path}/copied"],
        check=True,
        capture_output=True,
    )
    assert digest_bytes((tmp_path / "copied/manifest.json").read_bytes()) == image.digest
    for layer in image.layers:
        assert (tmp_path / "copied" / layer.digest.hex).read_bytes() == layer.blob


@pytest.mark.interop
def test_load_what_skopeo_wrote(tmp_path: Path) -> None:
    skopeo = _skopeo()
    image = sample_image()
    write_oci_layout(tmp_path / "layout", {"v1": image})
    for target in (f"oci-archive:{tmp_path}/x.tar:v1", f"docker-archive:{tmp_path}/d.tar:a/b:v1"):
        subprocess.run(
            [skopeo, "copy", f"oci:{tmp_path}/layout:v1", target], check=True, capture_output=True
        )
    store = GraphStore(tmp_path / "store")
    assert load(store, tmp_path / "x.tar", repository=NAME) == [f"{NAME}:v1"]
    assert load(store, tmp_path / "d.tar") == ["docker.io/a/b:v1"]
    expected = _unpack(store, f"{NAME}:v1", tmp_path / "r1")
    assert _unpack(store, "docker.io/a/b:v1", tmp_path / "r2") == expected


@pytest.mark.interop
def test_skopeo_reads_test_docker_archive(tmp_path: Path) -> None:
    skopeo = _skopeo()
    image = sample_image()
    archive = write_docker_archive(tmp_path / "s.tar", {"example.com/a/b:v1": image})
    out = subprocess.run(
        [skopeo, "inspect", "--config", f"docker-archive:{archive}"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(out.stdout)["rootfs"]["diff_ids"] == [str(d) for d in image.diff_ids]


def test_invalid_repository(tmp_path: Path) -> None:
    layout = write_oci_layout(tmp_path / "layout", {"v1": build_image([[file("a")]])})
    with pytest.raises(LayoutError, match="repository"):
        load(GraphStore(tmp_path / "s"), layout, repository="Not A Repo")


@pytest.mark.interop
def test_docker_manifest_is_saved_with_oci_types(tmp_path: Path) -> None:
    skopeo = _skopeo()
    image = build_image([[file("a", b"a")], [file("b", b"b")]], docker_media_types=True)
    store = GraphStore(tmp_path / "store")
    register_image(store, image, f"{NAME}:v1")
    save(store, [f"{NAME}:v1"], tmp_path / "out")
    (entry,) = json.loads((tmp_path / "out/index.json").read_text())["manifests"]
    assert entry["mediaType"] == mt.OCI_MANIFEST
    saved = json.loads((tmp_path / "out/blobs/sha256" / entry["digest"][7:]).read_bytes())
    assert saved["config"]["mediaType"] == mt.OCI_CONFIG
    assert {x["mediaType"] for x in saved["layers"]} == {mt.OCI_LAYER_GZIP}
    out = subprocess.run(
        [skopeo, "inspect", f"oci:{tmp_path}/out:v1"], check=True, capture_output=True, text=True
    )
    assert json.loads(out.stdout)["Layers"] == [str(x.digest) for x in image.layers]
    other = GraphStore(tmp_path / "other")
    assert load(other, tmp_path / "out") == [f"{NAME}:v1"]
    assert len(other.layers.list()) == 2


def test_save_by_digest_twice_keeps_one_entry(tmp_path: Path) -> None:
    store = GraphStore(tmp_path / "store")
    image = build_image([[file("1")]])
    register_image(store, image, f"{NAME}@{image.digest}")
    for _ in range(2):
        save(store, [f"{NAME}@{image.digest}"], tmp_path / "out")
    (entry,) = json.loads((tmp_path / "out/index.json").read_text())["manifests"]
    assert entry["annotations"] == {"io.containerd.image.name": f"{NAME}@{image.digest}"}


def test_save_docker_manifest_list_converts_children(tmp_path: Path) -> None:
    amd = build_image([[file("arch", b"amd64")]], docker_media_types=True)
    arm = build_image([[file("arch", b"arm64")]], architecture="arm64", docker_media_types=True)
    store = GraphStore(tmp_path / "store")
    register_image(store, amd)
    register_image(store, arm)
    manifest_list = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {**amd.descriptor(), "platform": {"os": "linux", "architecture": "amd64"}},
            {**arm.descriptor(), "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }
    list_digest = store.content.write_bytes(json.dumps(manifest_list).encode())
    store.images.set(f"{NAME}:multi", list_digest)
    save(store, [f"{NAME}:multi"], tmp_path / "out")

    (entry,) = json.loads((tmp_path / "out/index.json").read_text())["manifests"]
    assert entry["mediaType"] == mt.OCI_INDEX
    index = json.loads((tmp_path / "out/blobs/sha256" / entry["digest"][7:]).read_bytes())
    for child in index["manifests"]:
        assert child["mediaType"] == mt.OCI_MANIFEST
        blob = (tmp_path / "out/blobs/sha256" / child["digest"][7:]).read_bytes()
        assert str(digest_bytes(blob)) == child["digest"]
        assert json.loads(blob)["mediaType"] == mt.OCI_MANIFEST
    assert [c["platform"]["architecture"] for c in index["manifests"]] == ["amd64", "arm64"]
    other = GraphStore(tmp_path / "other")
    assert load(other, tmp_path / "out") == [f"{NAME}:multi"]
    assert len(other.layers.list()) == 2


def _waiting_for_a_lock(pid: int) -> bool:
    """Whether process `pid` is blocked on a file lock (`/proc/locks` lists waiters as `->`)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and str(pid) in fields:
            return True
    return False


def test_a_prune_waits_for_a_running_load(tmp_path: Path) -> None:
    """The load is held mid-way (its last layer blob is a FIFO not yet written); a real
    `pyreg prune` process started then waits for it instead of sweeping its unnamed blobs."""
    image = build_image([[file("a", b"first")], [file("b", b"second")]])
    layout_dir = write_oci_layout(tmp_path / "layout", {"v1": image})
    last = layout_dir / "blobs" / "sha256" / image.layers[-1].digest.hex
    last.unlink()
    os.mkfifo(last)
    store = GraphStore(tmp_path / "store")
    loaded: list[list[str]] = []
    loader = threading.Thread(target=lambda: loaded.append(load(store, layout_dir, "r/app")))
    loader.start()
    deadline = time.monotonic() + 60
    while not store.content.has(image.layers[0].digest):  # the load got as far as the FIFO
        assert loader.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    env = {**os.environ, "PYREG_HOME": str(store.root)}
    prune = subprocess.Popen(
        [sys.executable, "-m", "pyreg", "prune"], env=env, stdout=subprocess.PIPE, text=True
    )
    while prune.poll() is None and not _waiting_for_a_lock(prune.pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with open(last, "wb") as fifo:  # let the load finish
        fifo.write(image.layers[-1].blob)
    loader.join(60)
    out, _ = prune.communicate(timeout=60)
    assert loaded == [["docker.io/r/app:v1"]]
    assert prune.returncode == 0 and out.startswith("Removed 0 blobs")
    assemble_rootfs(store, chain_ids(image.diff_ids), tmp_path / "rootfs")
    assert (tmp_path / "rootfs/b").read_bytes() == b"second"


def test_load_applies_the_size_caps_per_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = build_image([[file("a", bytes(3 << 20))], [file("b", bytes(3 << 20))]])
    layout_dir = write_oci_layout(tmp_path / "layout", {"v1": image})
    store = GraphStore(tmp_path / "store")
    monkeypatch.setenv("PYREG_MAX_PULL_SIZE", "5M")
    with pytest.raises(SizeCapExceeded, match=f"layer {image.layers[1].digest}: .* pass 5 MiB"):
        load(store, layout_dir, "r/app")
    assert store.images.list() == {}
    monkeypatch.setenv("PYREG_MAX_PULL_SIZE", "7M")
    assert load(store, layout_dir, "r/app") == ["docker.io/r/app:v1"]
