"""Image index (name -> manifest digest)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ocispec.digest import digest_bytes
from puller.store import GraphStore


def test_set_get_remove(tmp_path: Path) -> None:
    idx = GraphStore(tmp_path).images
    d = digest_bytes(b"m")
    assert idx.get("localhost:5000/a/b:1") is None
    idx.set("localhost:5000/a/b:1", d)
    assert idx.get("localhost:5000/a/b:1") == d
    assert GraphStore(tmp_path).images.list() == {"localhost:5000/a/b:1": d}
    assert idx.remove("localhost:5000/a/b:1")
    assert not idx.remove("localhost:5000/a/b:1")
    assert idx.list() == {}


def test_concurrent_sets_are_not_lost(tmp_path: Path) -> None:
    d = digest_bytes(b"m")

    def worker(i: int) -> None:
        GraphStore(tmp_path).images.set(f"r/x:{i}", d)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(GraphStore(tmp_path).images.list()) == 20


def test_corrupt_index_file_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / "images.json").write_text("{not json")
    idx = GraphStore(tmp_path).images
    assert idx.list() == {}
    (tmp_path / "images.json").write_text(json.dumps({"a:1": "not-a-digest", "b:1": 3}))
    assert idx.list() == {}
