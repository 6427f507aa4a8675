"""Pieces of the server-side bench that are easy to get wrong."""

from __future__ import annotations

import httpx

from bench.http_bench import _with_digest


def test_digest_is_added_to_the_location_query_not_replacing_it() -> None:
    # The reference registry keeps its upload state in `_state`: losing it breaks the PUT.
    url = _with_digest("http://h:1/v2/a/blobs/uploads/u?_state=abc%3D", "sha256:00")
    assert url.params["_state"] == "abc="
    assert url.params["digest"] == "sha256:00"


def test_relative_location_stays_relative() -> None:
    url = _with_digest("/v2/a/blobs/uploads/u", "sha256:00")
    assert url == httpx.URL("/v2/a/blobs/uploads/u?digest=sha256%3A00")
