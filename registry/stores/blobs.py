"""The global content store plus per-repository links.

Content lives once under `blobs/` by digest; a repository sees a blob only once it is linked
there (pushed or mounted), so a blob pushed to A is unknown in B.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import BinaryIO

from ocispec.digest import Digest
from registry import errors
from registry.shared.blobcache import BlobCache, NoBlobCache
from registry.stores import paths
from registry.stores.catalog import CatalogStore
from storage_backends.base import NotFound, Op, Plan, Put, PutIfAbsent, StorageBackend


class BlobStore:
    def __init__(
        self, backend: StorageBackend, catalog: CatalogStore, cache: BlobCache | None = None
    ) -> None:
        self._backend = backend
        self._catalog = catalog
        self.cache: BlobCache = cache or NoBlobCache()

    async def exists(self, digest: Digest) -> bool:
        return await self._backend.exists(paths.blob_data(digest))

    async def touch(self, digest: Digest) -> None:
        """Mark the blob as in use now. Every push path calls this *before* it checks that the
        blob exists and relies on it; online GC re-reads the mark after taking a blob away and
        puts it back when the mark is fresh (the race argument is in registry/gc.py)."""
        await self._backend.put(paths.blob_touched(digest), b"")

    async def is_linked(self, name: str, digest: Digest) -> bool:
        return await self._backend.exists(paths.layer_link(name, digest))

    async def link(self, name: str, digest: Digest) -> None:
        await self._backend.put(paths.layer_link(name, digest), str(digest).encode())
        await self._catalog.mark(name)

    async def put_verified(
        self, name: str, digest: Digest, data: bytes, then: Sequence[Op] = ()
    ) -> None:
        """Publish bytes already verified against `digest` and link them into `name` (a small
        blob that arrived whole in one request, written from memory straight to its place),
        then run `then` (the upload session's removal): one storage plan, on the filesystem
        one worker-thread hop with an fsync per file and per directory.

        In the GC protocol's order (registry/gc.py), each step after the one before: the
        in-use mark, then the look-up that decides whether the bytes are written
        (`PutIfAbsent`), then the link. A crash between steps leaves a mark, or an unlinked
        blob (GC's after the grace window): the client's retry repeats the steps and finds
        the bytes there."""
        await self._backend.rounds(
            _in_order(
                [
                    Put(paths.blob_touched(digest), b""),
                    PutIfAbsent(paths.blob_data(digest), data),
                    Put(paths.layer_link(name, digest), str(digest).encode()),
                    *then,
                ]
            )
        )
        await self._catalog.mark(name)

    async def size(self, name: str, digest: Digest) -> int:
        """The size of a blob visible in `name`; BLOB_UNKNOWN otherwise."""
        cached = await self.cache.linked_size(name, digest)
        if cached is not None:
            return cached
        if not await self.is_linked(name, digest):
            raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)})
        try:
            size = (await self._backend.stat(paths.blob_data(digest))).size
        except NotFound:
            raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)}) from None
        await self.cache.remember(name, digest, size)
        return size

    def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return self._backend.stream(paths.blob_data(digest), offset, length)

    async def open_local(self, digest: Digest) -> BinaryIO | None:
        """The blob's file open for reading where the backend keeps files (the filesystem),
        for sending with `sendfile`; None elsewhere. BLOB_UNKNOWN when it is gone. Call it
        only after `size` checked the repository's link."""
        opener = getattr(self._backend, "open_local", None)
        if opener is None:
            return None
        try:
            file: BinaryIO = await opener(paths.blob_data(digest))
        except NotFound:
            raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)}) from None
        return file

    async def redirect_url(self, digest: Digest) -> str | None:
        return await self._backend.redirect_url(paths.blob_data(digest))

    async def unlink(self, name: str, digest: Digest) -> None:
        """Remove the blob from `name` at once; the content itself is left to GC."""
        if not await self.is_linked(name, digest):
            raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)})
        # Before the link goes: a HEAD racing this delete cannot refill the cache after it.
        await self.cache.forget(digest)
        await self._backend.delete(paths.layer_link(name, digest))

    async def mount(self, name: str, digest: Digest, source: str) -> bool:
        """Link a blob of `source` into `name`; False when `source` does not have it."""
        if not await self.is_linked(source, digest):
            return False
        await self.touch(digest)
        if not await self.exists(digest):
            return False
        await self.link(name, digest)
        return True


def _in_order(ops: Sequence[Op]) -> Plan[None]:
    """A plan of one operation per round: each done (and visible) before the next starts."""
    for op in ops:
        yield [op]
