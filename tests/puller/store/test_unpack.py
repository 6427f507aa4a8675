"""Layer unpacking details: compression detection; sparse members and gzip bombs refused."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from ocispec import mediatypes as mt
from ocispec.digest import digest_bytes
from puller.store import GraphStore
from puller.store.limits import SizeCapExceeded, SizeCaps, UnpackBudget
from puller.store.tarsafe import UnsafeEntry
from puller.store.unpack import compression_of, sniff_media_type, unpack_layer
from tests.support.images import Layer, file, make_layer, make_tar


def test_sniff_media_type() -> None:
    assert sniff_media_type(gzip.compress(b"x")[:4]) == mt.OCI_LAYER_GZIP
    assert sniff_media_type(make_layer([], "zstd").blob[:4]) == mt.OCI_LAYER_ZSTD
    assert sniff_media_type(make_tar([file("a")])[:4]) == mt.OCI_LAYER


def test_compression_of() -> None:
    assert compression_of(mt.DOCKER_LAYER) == "gzip"
    assert compression_of(mt.OCI_LAYER_ZSTD) == "zstd"
    assert compression_of(mt.OCI_LAYER) == ""
    assert compression_of("application/vnd.docker.image.rootfs.diff.tar") == "sniff"
    assert compression_of("application/json") is None


# -- disk bombs: sparse members and size caps --------------------------------------------------


def _sparse_tar(tmp_path: Path, fmt: str, apparent: int) -> bytes:
    """A tar of one GNU-sparse file (`tar --sparse`): a few KiB for `apparent` bytes."""
    src = tmp_path / f"src-{fmt}"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        f.write(b"head")
        f.truncate(apparent)
    out = tmp_path / f"sparse-{fmt}.tar"
    subprocess.run(
        ["tar", "--sparse", f"--format={fmt}", "-cf", str(out), "-C", str(src), "holes"],
        check=True,
    )
    return out.read_bytes()


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_members_are_refused_before_anything_is_written(tmp_path: Path, fmt: str) -> None:
    apparent = 256 * 1024 * 1024
    raw = _sparse_tar(tmp_path, fmt, apparent)
    assert len(raw) <= 16 * 1024  # tiny on the wire, and its diffID is right
    store = GraphStore(tmp_path / "store")
    layer = make_layer(raw)
    store.content.write_bytes(layer.blob, layer.digest)
    with pytest.raises(UnsafeEntry, match="sparse"):
        store.layers.register(None, layer.diff_id, layer.digest, layer.media_type)
    assert store.layers.list() == []
    assert not [p for p in (tmp_path / "store/layers").iterdir() if p.name.startswith(".tmp-")]


def _gzip_bomb(size: int) -> Layer:
    """A gzip layer whose tar holds one `size`-byte file of zeros (~1/1000 of it on the wire)."""
    raw = make_tar([file("zeros", bytes(size))])
    return Layer(mt.OCI_LAYER_GZIP, gzip.compress(raw, 9), digest_bytes(raw))


def _tree_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file())


def test_a_gzip_bomb_stops_at_the_layer_cap_while_streaming(tmp_path: Path) -> None:
    bomb = _gzip_bomb(16 * 1024 * 1024)
    assert len(bomb.blob) < 64 * 1024
    blob = tmp_path / "blob"
    blob.write_bytes(bomb.blob)
    target = tmp_path / "target"
    target.mkdir()
    cap = 2 * 1024 * 1024
    meter = UnpackBudget(SizeCaps(layer=cap, pull=10 * cap)).meter("sha256:bomb")
    with pytest.raises(SizeCapExceeded, match=r"layer sha256:bomb is larger than 2 MiB"):
        unpack_layer(blob, bomb.media_type, target, bomb.diff_id, meter)
    # stopped as the cap was passed: not the 16 MiB, at most the cap plus one read
    assert _tree_bytes(target) <= cap + 1024 * 1024


def test_the_pull_cap_counts_every_layer_of_one_budget(tmp_path: Path) -> None:
    store = GraphStore(tmp_path / "store")
    layers = [_gzip_bomb(3 * 1024 * 1024), make_layer([file("other", bytes(3 * 1024 * 1024))])]
    for layer in layers:
        store.content.write_bytes(layer.blob, layer.digest)
    budget = UnpackBudget(SizeCaps(layer=4 * 1024 * 1024, pull=5 * 1024 * 1024))
    first = store.layers.register(
        None, layers[0].diff_id, layers[0].digest, layers[0].media_type, budget
    )
    with pytest.raises(SizeCapExceeded, match=f"layer {layers[1].digest}: .* pass 5 MiB"):
        store.layers.register(
            first.chain_id, layers[1].diff_id, layers[1].digest, layers[1].media_type, budget
        )
    # the same layer alone fits: the cap is per budget (per pull)
    store.layers.register(
        first.chain_id,
        layers[1].diff_id,
        layers[1].digest,
        layers[1].media_type,
        UnpackBudget(SizeCaps(layer=4 * 1024 * 1024, pull=5 * 1024 * 1024)),
    )


def test_register_takes_its_caps_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = GraphStore(tmp_path / "store")
    bomb = _gzip_bomb(4 * 1024 * 1024)
    store.content.write_bytes(bomb.blob, bomb.digest)
    monkeypatch.setenv("PYREG_MAX_LAYER_SIZE", "1M")
    with pytest.raises(SizeCapExceeded, match=r"1 MiB .*PYREG_MAX_LAYER_SIZE"):
        store.layers.register(None, bomb.diff_id, bomb.digest, bomb.media_type)
    monkeypatch.setenv("PYREG_MAX_LAYER_SIZE", "8M")
    assert store.layers.register(None, bomb.diff_id, bomb.digest, bomb.media_type)
