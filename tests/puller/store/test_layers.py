"""Layer graph: register once by chainID, verify diff_ids, refuse corrupt blobs cleanly."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from ocispec import mediatypes as mt
from ocispec.digest import digest_bytes
from ocispec.models import chain_ids
from puller.store import GraphStore, LayerError, NotInStore
from puller.store.unpack import LayerDiffIdMismatch
from tests.support.images import dir_, file, hardlink, make_layer, make_tar, whiteout


def _leftovers(store: GraphStore) -> list[str]:
    d = store.root / "layers"
    return [p for p in os.listdir(d) if p.startswith(".tmp")] if d.exists() else []


@pytest.mark.parametrize("compression", ["gzip", "zstd", ""])
def test_register_unpacks_and_records(tmp_path: Path, compression: str) -> None:
    store = GraphStore(tmp_path)
    layer = make_layer([dir_("d", 0o711), file("d/f", b"hi", 0o600), whiteout("gone")], compression)
    store.content.write_bytes(layer.blob, layer.digest)
    rec = store.layers.register(None, layer.diff_id, layer.digest, layer.media_type)
    assert rec.chain_id == layer.diff_id  # chainID of a base layer is its diffID
    assert rec.parent is None
    assert rec.compressed_digest == layer.digest
    assert rec.compressed_size == len(layer.blob)
    assert rec.media_type == layer.media_type
    assert (rec.unpacked_dir / "d/f").read_bytes() == b"hi"
    assert (rec.unpacked_dir / "d").stat().st_mode & 0o777 == 0o711
    assert (rec.unpacked_dir / ".wh.gone").is_file()  # whiteouts kept as markers
    assert rec.unpacked_dir == tmp_path / "layers/sha256" / layer.diff_id.hex / "rootfs"
    assert rec.unpacked_dir.parent.stat().st_mode & 0o777 == 0o700  # setuid files inside
    meta = json.loads((rec.unpacked_dir.parent / "meta.json").read_text())
    assert meta["diff_id"] == str(layer.diff_id)
    assert GraphStore(tmp_path).layers.get(rec.chain_id) == rec
    assert store.layers.list() == [rec]


def test_chain_ids_and_parent(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    a, b = make_layer([file("a", b"a")]), make_layer([file("b", b"b")])
    for x in (a, b):
        store.content.write_bytes(x.blob, x.digest)
    ra = store.layers.register(None, a.diff_id, a.digest, a.media_type)
    rb = store.layers.register(ra.chain_id, b.diff_id, b.digest, b.media_type)
    assert rb.chain_id == chain_ids([a.diff_id, b.diff_id])[1]
    assert rb.parent == ra.chain_id


def test_register_twice_is_a_noop(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    layer = make_layer([file("x", b"x")])
    store.content.write_bytes(layer.blob, layer.digest)
    first = store.layers.register(None, layer.diff_id, layer.digest, layer.media_type)
    (first.unpacked_dir / "marker").write_text("still here")
    again = store.layers.register(None, layer.diff_id, layer.digest, layer.media_type)
    assert again == first
    assert (first.unpacked_dir / "marker").exists()


def test_diff_id_mismatch(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    layer = make_layer([file("x", b"x")])
    store.content.write_bytes(layer.blob, layer.digest)
    wrong = digest_bytes(b"not this")
    with pytest.raises(LayerDiffIdMismatch) as info:
        store.layers.register(None, wrong, layer.digest, layer.media_type)
    assert info.value.mismatch.expected == wrong
    assert info.value.mismatch.actual == layer.diff_id
    assert store.layers.list() == [] and _leftovers(store) == []


def test_corrupt_gzip(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    raw = make_tar([file("x", os.urandom(50000))])
    blob = bytearray(gzip.compress(raw))
    blob[len(blob) // 2] ^= 0xFF
    d = store.content.write_bytes(bytes(blob))
    with pytest.raises(LayerError):
        store.layers.register(None, digest_bytes(raw), d, mt.OCI_LAYER_GZIP)
    assert store.layers.list() == [] and _leftovers(store) == []


@pytest.mark.parametrize("compression", ["gzip", "zstd", ""])
def test_truncated_layer(tmp_path: Path, compression: str) -> None:
    store = GraphStore(tmp_path)
    layer = make_layer([file("x", os.urandom(50000)), file("y", b"y")], compression)
    d = store.content.write_bytes(layer.blob[: len(layer.blob) // 2])
    with pytest.raises(LayerError):
        store.layers.register(None, layer.diff_id, d, layer.media_type)
    assert store.layers.list() == [] and _leftovers(store) == []


def test_not_a_tar(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = store.content.write_bytes(gzip.compress(b"this is not a tar archive" * 40))
    with pytest.raises(LayerError):
        store.layers.register(None, digest_bytes(b"x"), d, mt.OCI_LAYER_GZIP)


def test_unknown_media_type_and_missing_blob(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = store.content.write_bytes(b"x")
    with pytest.raises(LayerError, match="media type"):
        store.layers.register(None, d, d, "application/json")
    with pytest.raises(NotInStore):
        store.layers.register(None, d, digest_bytes(b"absent"), mt.OCI_LAYER)


def test_hardlink_to_lower_layer_recorded(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    layer = make_layer([dir_("etc"), hardlink("etc/link", "bin/real")])
    store.content.write_bytes(layer.blob, layer.digest)
    rec = store.layers.register(None, layer.diff_id, layer.digest, layer.media_type)
    assert rec.hardlinks == {"etc/link": "bin/real"}
    assert not (rec.unpacked_dir / "etc/link").exists()


def test_delete(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    layer = make_layer([dir_("ro", 0o500), file("ro/f", b"f", 0o400)])
    store.content.write_bytes(layer.blob, layer.digest)
    rec = store.layers.register(None, layer.diff_id, layer.digest, layer.media_type)
    store.layers.delete(rec.chain_id)
    assert store.layers.get(rec.chain_id) is None
    assert not rec.unpacked_dir.parent.exists()


def test_concurrent_register_unpacks_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    # layers.py imports unpack_layer when it registers a layer (start-up of other commands)
    import puller.store.unpack as unpack_module

    calls = []
    real = unpack_module.unpack_layer

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(unpack_module, "unpack_layer", counting)
    store = GraphStore(tmp_path)
    layer = make_layer([file(f"f{i}", b"x" * 1000) for i in range(50)])
    store.content.write_bytes(layer.blob, layer.digest)
    results = []

    def worker() -> None:
        g = GraphStore(tmp_path).layers
        results.append(g.register(None, layer.diff_id, layer.digest, layer.media_type))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 4 and len(set(results)) == 1


@pytest.mark.parametrize("compression", ["gzip", ""])
def test_other_tar_media_types_are_sniffed(tmp_path: Path, compression: str) -> None:
    # Docker's uncompressed layer type is outside the usual set; its bytes tell what it is
    store = GraphStore(tmp_path)
    layer = make_layer([file("x", b"x")], compression)
    store.content.write_bytes(layer.blob, layer.digest)
    media_type = "application/vnd.docker.image.rootfs.diff.tar"
    rec = store.layers.register(None, layer.diff_id, layer.digest, media_type)
    assert (rec.unpacked_dir / "x").read_bytes() == b"x"
