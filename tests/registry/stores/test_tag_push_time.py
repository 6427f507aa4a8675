"""A tag's push time rides in its tag object: setting a tag costs the same S3 requests as
before push times existed, and reading it back is the one GET that reads the digest."""

from __future__ import annotations

from collections import Counter

from ocispec.digest import Digest
from registry.stores import paths
from registry.stores.tags import TagStore
from storage_backends.s3 import S3Backend

D1 = Digest("sha256", "1" * 64)
D2 = Digest("sha256", "2" * 64)


async def test_set_costs_no_extra_request_and_info_is_one_get(
    counted_s3: tuple[S3Backend, Counter[str]],
) -> None:
    backend, calls = counted_s3
    tags = TagStore(backend)
    calls.clear()
    await tags.set("r", "t", D1)
    # read the old target, put the marker, put the tag, check the marker: as before
    assert calls == Counter({"GetObject": 1, "PutObject": 2, "HeadObject": 1}), calls
    calls.clear()
    info = await tags.info("r", "t")
    assert calls == Counter({"GetObject": 1}), calls
    assert info is not None and info.digest == D1 and info.pushed is not None
    # a legacy tag (the bare digest) costs one HEAD more to read, none more to move
    await backend.put(paths.tag_link("r", "old"), str(D1).encode())
    calls.clear()
    await tags.set("r", "old", D2)
    assert calls["HeadObject"] == 1, calls  # the marker check only: no stat of the old tag
    assert await tags.resolve("r", "old") == D2
