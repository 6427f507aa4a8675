"""`pyreg import`: a registry:2 (distribution) storage tree moves into pyreg intact.

End to end: skopeo pushes images (a multi-layer image, a Docker v2 image, a multi-arch index,
and a referrer with `subject`) to the real reference registry (Debian `docker-registry`), its
storage tree is imported, and skopeo pulls every tag back from a `pyreg serve` with the same
digests. Smaller tests use a distribution tree written by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest, digest_bytes
from pyreg.cli import main
from tests.support.docker_registry import DockerRegistry, start_registry
from tests.support.images import Image, build_image, file, sample_image, write_oci_layout
from tests.support.server import RegistryServer


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.skip("skopeo is not installed (Debian package skopeo)")
    return path


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def _layout_with_index(root: Path, tagged: dict[str, Image]) -> tuple[Path, bytes]:
    """An OCI layout with `tagged` images plus a two-platform index tagged `multi`."""
    children = [
        build_image([[file("etc/arch", arch.encode())]], "gzip", architecture=arch)
        for arch in ("amd64", "arm64")
    ]
    layout = write_oci_layout(root, {**tagged, **{f"child{i}": c for i, c in enumerate(children)}})
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {**c.descriptor(), "platform": {"architecture": arch, "os": "linux"}}
                for c, arch in zip(children, ("amd64", "arm64"), strict=True)
            ],
        }
    ).encode()
    digest = digest_bytes(index)
    (layout / "blobs" / "sha256" / digest.hex).write_bytes(index)
    top = json.loads((layout / "index.json").read_text())
    top["manifests"].append(
        {
            "mediaType": mt.OCI_INDEX,
            "digest": str(digest),
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }
    )
    (layout / "index.json").write_text(json.dumps(top))
    return layout, index


def _push(
    registry: DockerRegistry, name: str, ref: str, manifest: bytes, media_type: str,
    blobs: list[bytes],
) -> str:  # fmt: skip
    """Blobs, then the manifest, straight over the distribution API (as any client does)."""
    base = f"{registry.url}/v2/{name}"
    for blob in blobs:
        location = httpx.post(f"{base}/blobs/uploads/").headers["location"]
        url = location if location.startswith("http") else registry.url + location
        sep = "&" if "?" in url else "?"
        done = httpx.put(f"{url}{sep}digest={digest_bytes(blob)}", content=blob)
        assert done.status_code == 201, done.text
    headers = {"Content-Type": media_type}
    done = httpx.put(f"{base}/manifests/{ref}", content=manifest, headers=headers)
    assert done.status_code == 201, done.text
    return str(digest_bytes(manifest))


def _push_referrer(registry: DockerRegistry, name: str, subject: Image) -> str:
    """A signature-like artifact whose `subject` is `subject`, pushed by digest (untagged)."""
    payload, empty = b"signature-bytes", b"{}"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": str(digest_bytes(empty)),
                "size": len(empty),
            },
            "layers": [
                {
                    "mediaType": "application/x.example.sig",
                    "digest": str(digest_bytes(payload)),
                    "size": len(payload),
                }
            ],
            "subject": subject.descriptor(),
        }
    ).encode()
    digest = str(digest_bytes(manifest))
    return _push(registry, name, digest, manifest, mt.OCI_MANIFEST, [payload, empty])


@pytest.mark.interop
@pytest.mark.slow
def test_import_from_the_reference_registry_then_pull_everything_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skopeo = _skopeo()
    source = start_registry(tmp_path / "distribution")
    app, docker_v2 = sample_image(), build_image([[file("bin/x", b"x")]], docker_media_types=True)
    layout, index = _layout_with_index(tmp_path / "layout", {"v1": app})
    pushes = {"team/app:v1": "v1", "multi:latest": "multi"}
    expected: dict[str, str] = {}  # reference -> manifest digest, as the source serves it
    try:
        for ref, tag in pushes.items():
            dest = f"docker://{source.host}/{ref}"
            _run(skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                 f"oci:{layout}:{tag}", dest)  # fmt: skip
            raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false", dest).encode()
            expected[ref] = str(digest_bytes(raw))
        # skopeo's oci: transport knows only OCI media types: the Docker v2 image goes direct.
        expected["team/app:v2"] = _push(
            source, "team/app", "v2", docker_v2.manifest, mt.DOCKER_MANIFEST,
            list(docker_v2.blobs().values()),
        )  # fmt: skip
        referrer = _push_referrer(source, "team/app", app)
        expected[f"team/app@{referrer}"] = referrer
    finally:
        source.stop()  # the source must not change while it is imported
    assert expected["multi:latest"] == str(digest_bytes(index))

    storage = tmp_path / "pyreg"
    assert main(["import", "--from", str(source.root), "--storage", f"file://{storage}"]) == 0
    out = capsys.readouterr().out
    assert "imported 2 repositories: 6 manifest(s), 3 tag(s)" in out, out

    (tmp_path / "pulled").mkdir()
    with RegistryServer(f"file://{storage}") as server:
        host = server.url.removeprefix("http://")
        for ref, digest in expected.items():
            src = f"docker://{host}/{ref}"
            raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false", src).encode()
            assert str(digest_bytes(raw)) == digest, ref
            # A full pull: skopeo verifies every blob's digest on the way.
            pulled = tmp_path / "pulled" / ref.replace("/", "_").replace(":", "_").replace("@", "_")
            _run(skopeo, "copy", "--all", "--src-tls-verify=false", src, f"dir:{pulled}")
            assert digest_bytes((pulled / "manifest.json").read_bytes()) == Digest.parse(digest)
        tags = httpx.get(f"{server.url}/v2/team/app/tags/list").json()["tags"]
        assert sorted(tags) == ["v1", "v2"]
        referrers = httpx.get(f"{server.url}/v2/team/app/referrers/{app.digest}").json()
        assert [m["digest"] for m in referrers["manifests"]] == [referrer]
        catalog = httpx.get(f"{server.url}/v2/_catalog").json()["repositories"]
        assert sorted(catalog) == ["multi", "team/app"]


# -- a distribution tree written by hand ------------------------------------------------------


def _write_tree(root: Path, name: str, image: Image, tag: str) -> Path:
    """What distribution leaves after a push of `image` as `name:tag`."""
    v2 = root / "docker" / "registry" / "v2"

    def blob(data: bytes) -> Digest:
        digest = digest_bytes(data)
        path = v2 / "blobs" / "sha256" / digest.hex[:2] / digest.hex / "data"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    def link(path: Path, digest: Digest) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "link").write_text(str(digest))

    repo = v2 / "repositories" / name
    for data in image.blobs().values():
        link(repo / "_layers" / "sha256" / blob(data).hex, digest_bytes(data))
    manifest = blob(image.manifest)
    link(repo / "_manifests" / "revisions" / "sha256" / manifest.hex, manifest)
    link(repo / "_manifests" / "tags" / tag / "current", manifest)
    link(repo / "_manifests" / "tags" / tag / "index" / "sha256" / manifest.hex, manifest)
    return v2


def _serve_get(storage: Path, path: str) -> httpx.Response:
    with RegistryServer(f"file://{storage}") as server:
        return httpx.get(f"{server.url}{path}", headers={"Accept": mt.OCI_MANIFEST})


def test_import_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = sample_image()
    _write_tree(tmp_path / "src", "a/b/c", image, "v1")
    storage = f"file://{tmp_path / 'dst'}"
    argv = ["import", "--from", str(tmp_path / "src"), "--storage", storage]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert f"{len(image.blobs())} blob link(s)" in first
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "imported 1 repositories: 1 manifest(s), 1 tag(s)" in again
    assert "0 bytes copied" in again  # nothing written twice
    got = _serve_get(tmp_path / "dst", "/v2/a/b/c/manifests/v1")
    assert got.status_code == 200 and got.content == image.manifest


def test_a_corrupt_source_blob_is_refused_with_what_needs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = sample_image()
    v2 = _write_tree(tmp_path / "src", "app", image, "v1")
    bad = image.layers[0].digest
    (v2 / "blobs" / "sha256" / bad.hex[:2] / bad.hex / "data").write_bytes(b"bit rot")
    storage = tmp_path / "dst"
    assert main(["import", "--from", str(tmp_path / "src"), "--storage", f"file://{storage}"]) == 1
    captured = capsys.readouterr()
    assert f"skipped app: blob {bad}" in captured.err
    assert f"skipped app@{image.digest} (v1): MANIFEST_BLOB_UNKNOWN" in captured.err
    assert not (storage / "blobs" / "sha256" / bad.hex[:2] / bad.hex / "data").exists()
    assert _serve_get(storage, "/v2/app/manifests/v1").status_code == 404


def test_invalid_names_and_tags_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = sample_image()
    _write_tree(tmp_path / "src", "Bad_Name", image, "v1")
    _write_tree(tmp_path / "src", "good", image, "-bad-tag")
    _write_tree(tmp_path / "src", "good", image, "v1")
    storage = tmp_path / "dst"
    assert main(["import", "--from", str(tmp_path / "src"), "--storage", f"file://{storage}"]) == 1
    captured = capsys.readouterr()
    assert "skipped Bad_Name: not a valid repository name" in captured.err
    assert "skipped good:-bad-tag: not a valid tag" in captured.err
    assert "imported 1 repositories: 1 manifest(s), 1 tag(s)" in captured.out
    assert not (storage / "repositories" / "Bad_Name").exists()


def test_a_directory_that_is_not_a_distribution_root_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"file://{tmp_path / 'dst'}"
    assert main(["import", "--from", str(tmp_path), "--storage", storage]) == 2
    assert "not a distribution storage root" in capsys.readouterr().err
