"""Fixtures shared by the store tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from registry.stores import paths
from storage_backends import open_backend
from storage_backends.s3 import S3Backend
from tests.support.moto_server import create_bucket, moto_endpoint, s3_storage_url  # noqa: F401

PAGE_SIZE = 200  # keys per S3 list request, so a full walk of N keys takes N / 200


@pytest.fixture
async def counted_s3(moto_endpoint: str) -> AsyncIterator[tuple[S3Backend, Counter[str]]]:  # noqa: F811
    """An S3 backend on moto and a count of its S3 calls by operation (botocore's event hook)."""
    url = s3_storage_url(
        moto_endpoint, create_bucket(moto_endpoint), "reg", page_size=str(PAGE_SIZE)
    )
    backend = open_backend(url)
    assert isinstance(backend, S3Backend)
    await backend.open()
    calls: Counter[str] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        # The app's GC-record watcher reads `_gc/last-run.json` in the background (at start
        # and every minute): not a cost of the request measured.
        if not str(params.get("Key", "")).endswith(paths.GC_LAST_RUN):
            calls[model.name] += 1

    backend._client.meta.events.register("provide-client-params.s3", count)
    yield backend, calls
    await backend.close()
