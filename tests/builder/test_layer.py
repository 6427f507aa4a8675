"""builder.layer: a step's changes (overlay upper dir or tree comparison) as a reproducible
layer with whiteouts and opaque directories, registered in the store."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder.layer import Change, changes_between, changes_from_upper, snapshot, store_layer
from puller.store import GraphStore, assemble_rootfs
from tests.support.images import snapshot as tree_snapshot


def _tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "keep").write_text("k")
    (root / "etc" / "gone").write_text("g")
    (root / "var" / "cache").mkdir(parents=True)
    (root / "var" / "cache" / "old").write_text("o")


def _mutate(root: Path) -> None:
    (root / "etc" / "gone").unlink()
    (root / "etc" / "new").write_text("n")
    (root / "etc" / "keep").chmod(0o600)
    (root / "var" / "cache" / "old").unlink()
    (root / "var" / "cache").rmdir()
    (root / "link").symlink_to("etc/new")


def _members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
        return tf.getmembers()


def test_tree_comparison_layer_applies_to_the_same_tree(tmp_path: Path) -> None:
    store = GraphStore(tmp_path / "home")
    before_dir = tmp_path / "before"
    _tree(before_dir)
    base = store_layer(
        store, None, [Change(p, "entry", before_dir / p) for p in sorted(snapshot(before_dir))]
    )
    work = tmp_path / "work"
    assemble_rootfs(store, [base.record.chain_id], work)
    before = snapshot(work)
    _mutate(work)
    changes = changes_between(before, work)
    kinds = {(c.path, c.kind) for c in changes}
    assert ("etc/gone", "whiteout") in kinds and ("var/cache", "whiteout") in kinds
    assert ("var/cache/old", "whiteout") not in kinds  # covered by its parent's whiteout
    assert ("etc/new", "entry") in kinds and ("etc/keep", "entry") in kinds
    top = store_layer(store, base.record.chain_id, changes)
    result = tmp_path / "result"
    assemble_rootfs(store, [base.record.chain_id, top.record.chain_id], result)
    assert tree_snapshot(result) == tree_snapshot(work)


def test_layers_are_reproducible_and_clamped_to_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    _tree(src)
    changes = [Change(p, "entry", src / p) for p in sorted(snapshot(src), reverse=True)]
    a = store_layer(GraphStore(tmp_path / "h1"), None, changes, epoch=1_000_000)
    os.utime(src / "etc" / "keep", (2_000_000_000, 2_000_000_000))
    b = store_layer(GraphStore(tmp_path / "h2"), None, changes, epoch=1_000_000)
    assert a.digest == b.digest and a.diff_id == b.diff_id
    blob = GraphStore(tmp_path / "h1").content.read_bytes(a.digest)
    members = _members(blob)
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert all(m.mtime <= 1_000_000 and m.uname == "" for m in members)
    zstd = store_layer(GraphStore(tmp_path / "h3"), None, changes, compression="zstd")
    assert zstd.media_type.endswith("+zstd") and zstd.diff_id != a.diff_id  # unclamped mtimes


def _mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> bool:
    for d in (upper, work, target):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], capture_output=True
    )
    return done.returncode == 0


def test_overlay_upper_dir_changes(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    _tree(lower)
    (lower / "opq").mkdir()
    (lower / "opq" / "hidden").write_text("h")
    upper, target = tmp_path / "upper", tmp_path / "merged"
    if not _mount_overlay(lower, upper, tmp_path / "work", target):
        pytest.skip("cannot mount overlayfs here (needs root and kernel support)")
    try:
        _mutate(target)
        subprocess.run(["rm", "-rf", str(target / "opq")], check=True)
        (target / "opq").mkdir()  # removed and re-made: an opaque directory
        (target / "opq" / "fresh").write_text("f")
    finally:
        subprocess.run(["umount", str(target)], check=True)
    kinds = {(c.path, c.kind) for c in changes_from_upper(upper)}
    assert {("etc/gone", "whiteout"), ("var/cache", "whiteout"), ("opq", "opaque")} <= kinds
    assert {("etc/new", "entry"), ("opq/fresh", "entry"), ("link", "entry")} <= kinds
    store = GraphStore(tmp_path / "home")
    base = store_layer(
        store, None, [Change(p, "entry", lower / p) for p in sorted(snapshot(lower))]
    )
    top = store_layer(store, base.record.chain_id, changes_from_upper(upper))
    names = {m.name for m in _members(store.content.read_bytes(top.digest))}
    assert {"etc/.wh.gone", "var/.wh.cache", "opq/.wh..wh..opq"} <= names
    result = tmp_path / "result"
    assemble_rootfs(store, [base.record.chain_id, top.record.chain_id], result)
    assert sorted(os.listdir(result / "opq")) == ["fresh"]
    assert sorted(os.listdir(result / "etc")) == ["keep", "new"]
    assert not (result / "var" / "cache").exists()
