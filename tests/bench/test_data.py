"""The generated benchmark data is what it claims to be: digests, sizes, a valid OCI layout."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

from bench import data


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_pieces_are_deterministic_sized_and_compressible() -> None:
    a = b"".join(data.pieces(3 * data.MIB + 5, seed=7))
    assert len(a) == 3 * data.MIB + 5
    assert a == b"".join(data.pieces(3 * data.MIB + 5, seed=7))
    assert a != b"".join(data.pieces(3 * data.MIB + 5, seed=8))
    ratio = len(gzip.compress(a[: data.MIB], 1)) / data.MIB
    assert 0.3 < ratio < 0.8  # "random-ish": neither incompressible nor trivial


def test_large_blob_digest_matches_its_file(tmp_path: Path) -> None:
    blob = data.large_blob(tmp_path, 2 * data.MIB + 1)
    assert blob.path.stat().st_size == blob.size == 2 * data.MIB + 1
    assert _sha256(blob.path) == blob.digest


def test_small_blobs_are_distinct_with_right_digests() -> None:
    blobs = data.small_blobs(5, 1000)
    assert len({d for d, _ in blobs}) == 5
    for digest, body in blobs:
        assert len(body) == 1000
        assert digest == "sha256:" + hashlib.sha256(body).hexdigest()


def test_layer_sizes_split_the_total() -> None:
    sizes = data.layer_sizes(1_000_003, 3)
    assert sum(sizes) == 1_000_003
    assert sizes == sorted(sizes, reverse=True)


def test_oci_image_is_a_valid_layout(tmp_path: Path) -> None:
    image = data.oci_image(tmp_path, 9 * data.MIB, 3)
    layout = image.layout
    assert json.loads((layout / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == image.tag
    manifest_path = image.blob_path(entry["digest"])
    assert _sha256(manifest_path) == entry["digest"]
    manifest = json.loads(manifest_path.read_bytes())
    config = json.loads(image.blob_path(manifest["config"]["digest"]).read_bytes())
    assert len(manifest["layers"]) == len(config["rootfs"]["diff_ids"]) == 3
    content = 0
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        path = image.blob_path(layer["digest"])
        assert _sha256(path) == layer["digest"]
        assert path.stat().st_size == layer["size"]
        raw = gzip.decompress(path.read_bytes())
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id
        with tarfile.open(path) as tar:
            content += sum(m.size for m in tar.getmembers() if m.isfile())
    assert content == 9 * data.MIB
    assert not list((layout / "blobs" / "sha256").glob(".*")), "no temp files left behind"
