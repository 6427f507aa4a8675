"""Leases: what a running pull holds survives prune; a dead pull's lease is swept."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from puller.store import GraphStore, prune
from tests.support.images import build_image, file, register_image


def test_prune_keeps_leased_blobs_and_layers_until_the_lease_ends(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    image = build_image([[file("a", b"1")], [file("b", b"2")]])
    chains = register_image(store, image)  # in the store, but named by no image
    with store.leases.open() as lease:
        lease.add([image.digest, *image.blobs()], chains)
        report = prune(store)
        assert report.blobs == [] and report.layers == []
        assert all(store.layers.get(c) for c in chains)
    report = prune(store)
    assert set(report.layers) == set(chains)
    assert set(report.blobs) == {image.digest, *image.blobs()}


def test_a_dead_pulls_lease_is_swept(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    blob = store.content.write_bytes(b"held by a pull that was killed")
    (tmp_path / "leases").mkdir()
    dead = tmp_path / "leases" / "killed.json"  # nobody holds its lock
    dead.write_text(json.dumps({"blobs": [str(blob)], "layers": []}))
    assert prune(store).blobs == [blob]
    assert not dead.exists()


def test_adding_to_a_lease_waits_for_a_running_prune(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    lease = store.leases.open()
    added = threading.Event()

    def add() -> None:
        lease.add([])
        added.set()

    with store.leases.exclusive():  # what prune holds from mark to sweep
        worker = threading.Thread(target=add)
        worker.start()
        assert not added.wait(0.3)
    assert added.wait(30)
    worker.join()
    lease.close()
