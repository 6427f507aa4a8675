"""A cache of blob descriptors (size, and which repositories link the blob), as distribution's
`redis` blob-descriptor cache: a blob HEAD or GET costs two storage round trips (the
repository's link, then the data's size), which on S3 are two requests; a hit costs none.

`NoBlobCache` is the default (one replica with a local disk gains little, and a per-process
cache could not be told of another replica's delete). `RedisBlobCache` shares it.

Deleted blobs must never come back from the cache. Whoever takes a blob or a link away calls
`forget(digest)` first (the blob DELETE handler, and GC after it moves data to its trash and
before it decides): that deletes the entry and leaves a short tombstone. A read that looked at
storage before the delete and fills the cache after it would write a stale entry; filling is
refused while the tombstone lives, and entries expire on their own (`ttl`) in any case. The
sizes of blobs are immutable (content-addressed), so a hit can only be wrong about existence,
which the tombstone covers.

Keys: `PREFIX bd:DIGEST` (a hash: `size`, and `l:REPOSITORY` per link) and `PREFIX bd-gone:DIGEST`.
"""

from __future__ import annotations

from typing import Any, Protocol

from ocispec.digest import Digest
from registry.shared import RedisGuard

#: how long a forgotten digest refuses new entries (longer than any read of a size takes)
TOMBSTONE_MS = 60_000

# KEYS: entry tombstone; ARGV: field-name size-field size ttl_ms
_FILL = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'size', ARGV[2], ARGV[1], '1')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class BlobCache(Protocol):
    async def linked_size(self, name: str, digest: Digest) -> int | None:
        """The blob's size if it is known to be linked into `name`, else None (look it up)."""
        ...

    async def remember(self, name: str, digest: Digest, size: int) -> None:
        """`digest` of `size` bytes is linked into `name` (just read from storage)."""
        ...

    async def forget(self, digest: Digest) -> bool:
        """The blob, or a link to it, is being taken away: drop it and refuse refills.
        False when that could not be done (Redis down): GC then keeps the blob."""
        ...


class NoBlobCache:
    async def linked_size(self, name: str, digest: Digest) -> int | None:
        return None

    async def remember(self, name: str, digest: Digest, size: int) -> None:
        return None

    async def forget(self, digest: Digest) -> bool:
        return True


class RedisBlobCache:
    def __init__(self, guard: RedisGuard, ttl: float = 600.0, prefix: str = "pyreg:") -> None:
        self.guard = guard
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix
        self.hits = 0
        self.misses = 0

    def _keys(self, digest: Digest) -> tuple[str, str]:
        return f"{self.prefix}bd:{digest}", f"{self.prefix}bd-gone:{digest}"

    async def linked_size(self, name: str, digest: Digest) -> int | None:
        entry, _ = self._keys(digest)
        ok, values = await self.guard.call(lambda r: r.hmget(entry, "size", f"l:{name}"))
        if ok and values and values[0] is not None and values[1] is not None:
            self.hits += 1
            return int(values[0])
        self.misses += 1
        return None

    async def remember(self, name: str, digest: Digest, size: int) -> None:
        entry, gone = self._keys(digest)
        await self.guard.call(
            lambda r: r.eval(_FILL, 2, entry, gone, f"l:{name}", size, self.ttl_ms)
        )

    async def forget(self, digest: Digest) -> bool:
        entry, gone = self._keys(digest)

        async def both(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.set(gone, "1", px=TOMBSTONE_MS)
            pipe.delete(entry)
            await pipe.execute()

        ok, _ = await self.guard.call(both)
        return ok
