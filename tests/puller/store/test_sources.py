"""Blob sources: which repositories hold a blob, for cross-repository mounts."""

from __future__ import annotations

from pathlib import Path

from ocispec.digest import digest_bytes
from puller.store import GraphStore


def test_blob_sources(tmp_path: Path) -> None:
    src = GraphStore(tmp_path).sources
    d = digest_bytes(b"layer")
    assert src.repositories("localhost:5000", d) == []
    src.record("localhost:5000", "a/b", d)
    src.record("localhost:5000", "c", d)
    src.record("localhost:5000", "a/b", d)
    src.record("other:5000", "z", d)
    assert GraphStore(tmp_path).sources.repositories("localhost:5000", d) == ["a/b", "c"]
    src.forget({d})
    assert src.repositories("localhost:5000", d) == []
