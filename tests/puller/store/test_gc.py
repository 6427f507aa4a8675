"""prune: only what no named image references goes; shared layers stay."""

from __future__ import annotations

import os
from pathlib import Path

from ocispec.digest import digest_bytes
from puller.store import GraphStore, prune
from puller.store.files import force_rmtree
from tests.support.images import build_image, file, register_image

BASE = [file("base", b"shared")]


def test_prune_keeps_referenced_and_removes_the_rest(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    kept = build_image([BASE, [file("kept", b"1")]])
    dropped = build_image([BASE, [file("dropped", b"2")]])
    kept_chain = register_image(store, kept, "r/a:1")
    dropped_chain = register_image(store, dropped, "r/b:1")
    store.sources.record("localhost:5000", "r/b", dropped.layers[1].digest)
    assert store.images.remove("r/b:1")

    report = prune(store)

    assert set(report.layers) == {dropped_chain[1]}
    assert set(report.blobs) == {dropped.digest, dropped.config_digest, dropped.layers[1].digest}
    assert report.bytes_freed > 0
    for chain_id in kept_chain:
        assert store.layers.get(chain_id) is not None  # the shared base layer too
    for digest in [kept.digest, *kept.blobs()]:
        assert store.content.has(digest)
    assert store.layers.get(dropped_chain[1]) is None
    locks = sorted(p.stem for p in (tmp_path / "layers/.locks").iterdir())
    assert locks == sorted(f"sha256-{c.hex}" for c in kept_chain)
    assert store.sources.repositories("localhost:5000", dropped.layers[1].digest) == []
    assert prune(store).blobs == []  # nothing more to do


def test_prune_removes_abandoned_partials_and_unpacks_but_not_live_ones(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    abandoned = store.content.ingest(digest_bytes(b"a" * 10), 10)
    abandoned.write(b"a" * 5)
    abandoned.close()
    live = store.content.ingest(digest_bytes(b"b" * 10), 10)
    live.write(b"b" * 5)
    stale_unpack = tmp_path / "layers" / f".tmp-{'0' * 64}-x"
    stale_unpack.mkdir(parents=True)

    report = prune(store)

    assert report.partials == 1
    assert [p.name for p in store.content.partials()] == [live.partial.name]
    assert not stale_unpack.exists()
    live.write(b"b" * 5)
    live.commit()  # the live ingest was not disturbed
    assert os.path.exists(store.content.path(digest_bytes(b"b" * 10)))


def test_prune_empty_store(tmp_path: Path) -> None:
    report = prune(GraphStore(tmp_path))
    assert (report.blobs, report.layers, report.partials) == ([], [], 0)


DEPTH = 1500  # deeper than Python's recursion limit (1000)


def _deep_dirs(root: Path, depth: int) -> Path:
    """`root/d/d/.../d` (`depth` levels, one-letter names), made without recursion."""
    current = root
    for _ in range(depth):
        current = current / "d"
        current.mkdir(parents=True)
    return current


def test_prune_recovers_from_its_own_deep_leftovers(tmp_path: Path) -> None:
    """A prune killed while deleting a deep layer leaves `layers/.del-*/`: the next prune
    removes it (a recursive removal raised RecursionError on every later prune)."""
    store = GraphStore(tmp_path / "store")
    image = build_image([[file("a", b"1")]])
    chain = register_image(store, image)
    leftover = tmp_path / "store/layers/.del-killed/layer/rootfs"
    (_deep_dirs(leftover, DEPTH) / "f").write_bytes(b"x")
    os.chmod(leftover / "d" / "d", 0o500)  # as a rootless layer tree may have it

    try:
        report = prune(store)
        assert report.layers == chain
        left = [p for p in (tmp_path / "store/layers").iterdir() if p.name.startswith(".del-")]
        assert not left
    finally:
        force_rmtree(tmp_path / "store")  # never leave a tree this deep to pytest's clean-up
