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


def test_blob_sources_records_several_blobs_at_once(tmp_path: Path) -> None:
    src = GraphStore(tmp_path).sources
    d1, d2 = digest_bytes(b"config"), digest_bytes(b"layer")
    src.record("localhost:5000", "a", d1, d2)
    src.record("localhost:5000", "b", d2)
    assert src.repositories("localhost:5000", d1) == ["a"]
    assert src.repositories("localhost:5000", d2) == ["a", "b"]
