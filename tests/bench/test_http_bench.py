"""Pieces of the server-side bench that are easy to get wrong."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from bench.data import Blob
from bench.http_bench import _with_digest, distinct_blobs


def test_digest_is_added_to_the_location_query_not_replacing_it() -> None:
    # The reference registry keeps its upload state in `_state`: losing it breaks the PUT.
    url = _with_digest("http://h:1/v2/a/blobs/uploads/u?_state=abc%3D", "sha256:00")
    assert url.params["_state"] == "abc="
    assert url.params["digest"] == "sha256:00"


def test_relative_location_stays_relative() -> None:
    url = _with_digest("/v2/a/blobs/uploads/u", "sha256:00")
    assert url == httpx.URL("/v2/a/blobs/uploads/u?digest=sha256%3A00")


def test_distinct_blobs_differ_and_their_digests_match_their_bytes(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.write_bytes(b"0123456789" * 1000)
    blobs = distinct_blobs(Blob(base, 10_000, ""), 5)
    assert len({b.digest for b in blobs}) == 5
    for blob in blobs:
        whole = base.read_bytes() + blob.suffix
        assert blob.size == len(whole)
        assert blob.digest == f"sha256:{hashlib.sha256(whole).hexdigest()}"
