"""Tags: `tag -> manifest digest` links inside a repository.

One flat object per tag (`paths.tag_link`), so the storage's key order is the spec's tag order
and a page of `n` tags after `last` is one bounded listing, however many tags there are.

A reverse index answers "which tags point to digest D" with one listing: an empty marker
`paths.tag_marker(name, D, tag)` per tag set to D. Markers may be stale (the tag moved or
went), so every use re-reads the forward tag; what must hold is that the tag's *current*
target has its marker. Without compare-and-swap in storage, that is kept by two re-checks:
- a writer puts the marker, then the forward tag, then checks the marker is still there
  (a concurrent drop may have removed it) and puts it back if not;
- whoever drops a marker (a tag moved away, a tag or manifest deleted) deletes it, then
  re-reads the forward tag and puts the marker back if the tag points to that digest again.
Whichever of the two comes last sees the other's write, so a marker never stays missing for a
tag that points to its digest. A crash between steps leaves only a stale marker.

Repositories tagged before the index existed have no markers: until the flag
`paths.tag_index_flag` exists, finding the tags of a digest scans every tag once, writing the
missing markers as it goes, then writes the flag (a tag set during the scan writes its own
marker). New repositories pay that scan at their first delete by digest, once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from ocispec.digest import Digest, DigestError
from registry import errors
from registry.policies import immutability
from registry.policies.config import Policies
from registry.stores import paths
from registry.stores.batch import Batch
from registry.stores.pagination import Page
from storage_backends.base import NotFound, StorageBackend


@dataclass(frozen=True, slots=True)
class TagInfo:
    digest: Digest
    pushed: float | None  # seconds since the epoch, the pushing replica's clock


def _link(digest: Digest, pushed: float) -> bytes:
    return json.dumps({"digest": str(digest), "pushed": round(pushed, 6)}).encode()


def _parse_link(raw: bytes) -> TagInfo | None:
    """A tag object: JSON {digest, pushed}, or (older) the bare digest; None if corrupt."""
    try:
        text = raw.decode()
        if not text.startswith("{"):
            return TagInfo(Digest.parse(text), None)
        body = json.loads(text)
        pushed = body.get("pushed")
        when = float(pushed) if isinstance(pushed, (int, float)) else None
        return TagInfo(Digest.parse(str(body["digest"])), when)
    except (DigestError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None


class TagStore:
    def __init__(self, backend: StorageBackend, policies: Policies | None = None) -> None:
        self._backend = backend
        self.policies = policies  # tag immutability (registry.policies.immutability)

    async def resolve(self, name: str, tag: str) -> Digest:
        found = await self._target(name, tag)
        if found is None:
            raise errors.MANIFEST_UNKNOWN(detail={"tag": tag})
        return found

    async def current(self, name: str, tag: str) -> Digest | None:
        """The digest `tag` points to now; None when it does not exist."""
        return await self._target(name, tag)

    async def _target(self, name: str, tag: str) -> Digest | None:
        """The digest `tag` points to now; None when it does not exist (or is unreadable)."""
        info = await self._read(name, tag)
        return None if info is None else info.digest

    async def _read(self, name: str, tag: str) -> TagInfo | None:
        try:
            return _parse_link(await self._backend.get(paths.tag_link(name, tag)))
        except NotFound:
            return None

    async def info(self, name: str, tag: str) -> TagInfo | None:
        """`tag`'s digest and push time (one read); None when it does not exist."""
        key = paths.tag_link(name, tag)
        parsed = await self._read(name, tag)
        if parsed is None or parsed.pushed is not None:
            return parsed
        # Written before push times were recorded: the object's own modification time.
        try:
            return TagInfo(parsed.digest, (await self._backend.stat(key)).modified)
        except NotFound:
            return None

    async def set(self, name: str, tag: str, digest: Digest, enforce: bool = True) -> None:
        """Point `tag` at `digest`; DENIED if that moves an immutable tag (unless `enforce`
        is false: the pull-through cache mirrors an upstream's moves)."""
        first = Batch()
        reads = self.stage_markers(first, name, [tag], digest)
        await first.run(self._backend)
        olds = self.olds(first, reads)
        links = Batch()
        self.stage_links(links, name, [tag], digest, olds, enforce)
        await links.run(self._backend)
        last = Batch()
        checks = self.stage_recheck(last, name, [tag], digest)
        await last.run(self._backend)
        await self.finish(name, [tag], digest, olds, [last.flag(i) for i in checks])

    # Setting tags in steps, so a manifest PUT can run each step in a batch with its own
    # operations: (1) markers, and the old targets read meanwhile; (2) the forward tags;
    # (3) the markers re-checked; then `finish`. The order is the module docstring's.

    def stage_markers(self, batch: Batch, name: str, tags: list[str], digest: Digest) -> list[int]:
        """Step 1: each tag's marker for `digest` is written; its old target read (the read
        costs no extra round trip). A refusal later leaves only stale markers."""
        reads = []
        for tag in tags:
            reads.append(batch.get(paths.tag_link(name, tag)))
            batch.put(paths.tag_marker(name, digest, tag), b"")
        return reads

    @staticmethod
    def olds(batch: Batch, reads: list[int]) -> list[Digest | None]:
        """The old targets step 1 read (None: no such tag, or unreadable)."""
        out: list[Digest | None] = []
        for index in reads:
            raw = batch.data(index)
            info = None if raw is None else _parse_link(raw)
            out.append(None if info is None else info.digest)
        return out

    def stage_links(
        self,
        batch: Batch,
        name: str,
        tags: list[str],
        digest: Digest,
        olds: list[Digest | None],
        enforce: bool,
    ) -> None:
        """Step 2: the forward tags, after step 1; DENIED (before any is staged) if one would
        move an immutable tag. The push time rides in the tag object (docs/policies.md)."""
        if enforce:
            for tag, old in zip(tags, olds, strict=True):
                immutability.check_set(self.policies, name, tag, old, digest)
        link = _link(digest, time.time())
        for tag in tags:
            batch.put(paths.tag_link(name, tag), link)

    def stage_recheck(self, batch: Batch, name: str, tags: list[str], digest: Digest) -> list[int]:
        """Step 3, after step 2: are the markers still there (a concurrent drop)?"""
        return [batch.exists(paths.tag_marker(name, digest, tag)) for tag in tags]

    async def finish(
        self,
        name: str,
        tags: list[str],
        digest: Digest,
        olds: list[Digest | None],
        present: list[bool],
    ) -> None:
        """Put back the markers step 3 found missing; drop the markers of moved tags."""
        for tag, ok in zip(tags, present, strict=True):
            if not ok:
                await self._backend.put(paths.tag_marker(name, digest, tag), b"")
        for tag, old in zip(tags, olds, strict=True):
            if old is not None and old != digest:
                await self._drop_marker(name, tag, old)

    async def delete(self, name: str, tag: str) -> None:
        old = await self._target(name, tag)
        if old is None and not await self._backend.exists(paths.tag_link(name, tag)):
            raise errors.MANIFEST_UNKNOWN(detail={"tag": tag})
        immutability.check_delete(self.policies, name, [tag])
        await self._backend.delete(paths.tag_link(name, tag))
        if old is not None:
            await self._drop_marker(name, tag, old)

    async def _drop_marker(self, name: str, tag: str, digest: Digest) -> None:
        marker = paths.tag_marker(name, digest, tag)
        await self._backend.delete(marker)
        if await self._target(name, tag) == digest:  # re-set meanwhile: see the docstring
            await self._backend.put(marker, b"")

    async def pointing_to(self, name: str, digest: Digest) -> list[str]:
        """The tags pointing to `digest` now, sorted: O(tags ever set to it), not O(all tags)."""
        candidates = await self._candidates(name, digest)
        targets = await _bounded(self._target(name, tag) for tag in candidates)
        return [t for t, d in zip(candidates, targets, strict=True) if d == digest]

    async def untag(self, name: str, digest: Digest) -> list[str]:
        """Delete every tag pointing to `digest`, and the digest's markers; the tags deleted."""
        candidates = await self._candidates(name, digest)
        deleted = await _bounded(self._delete_if(name, tag, digest) for tag in candidates)
        await _bounded(self._drop_marker(name, tag, digest) for tag in candidates)
        return [t for t, gone in zip(candidates, deleted, strict=True) if gone]

    async def _candidates(self, name: str, digest: Digest) -> list[str]:
        """Tags that may point to `digest` (a superset of those that do)."""
        if not await self._backend.exists(paths.tag_index_flag(name)):
            await self._index_repository(name)
        return await self._markers(name, digest)

    async def _delete_if(self, name: str, tag: str, digest: Digest) -> bool:
        """Delete `tag` if it points to `digest` (it may have moved since its marker)."""
        if await self._target(name, tag) != digest:
            return False
        await self._backend.delete(paths.tag_link(name, tag))
        return True

    async def _markers(self, name: str, digest: Digest) -> list[str]:
        try:
            return await self._backend.list_dir(paths.tag_markers_dir(name, digest))
        except NotFound:
            return []

    async def _index_repository(self, name: str) -> None:
        """Once per repository tagged before the index: read every tag, write its marker, then
        the flag. A tag set meanwhile writes its own marker; one deleted leaves a stale one."""
        tags = await self.names(name)
        targets = await _bounded(self._target(name, tag) for tag in tags)
        pairs = [(t, d) for t, d in zip(tags, targets, strict=True) if d is not None]
        await _bounded(self._backend.put(paths.tag_marker(name, d, t), b"") for t, d in pairs)
        await self._backend.put(paths.tag_index_flag(name), b"")

    async def names(self, name: str) -> list[str]:
        """All tags of `name`, sorted (byte order, as Go's sort.Strings)."""
        try:
            return sorted(await self._backend.list_dir(paths.tags_dir(name)))
        except NotFound:
            return []

    async def page(self, name: str, n: int | None, last: str | None) -> Page:
        """At most `n` tags after `last` (None: all), from one bounded listing."""
        if n is None:
            return Page([t for t in await self.names(name) if last is None or t > last], None)
        # `last` comes from the client and need not be a tag: the listing starts after its
        # longest tag-character prefix (a safe lower bound S3 accepts), the rest is filtered.
        want, out = n + 1, list[str]()
        cursor = _tag_bound(last) if last is not None else None
        while len(out) < want:
            batch = want - len(out)
            found = await self._backend.list_dir(
                paths.tags_dir(name), start_after=cursor, limit=batch
            )
            out += found if last is None else [t for t in found if t > last]
            if len(found) < batch:
                break
            cursor = found[-1]
        items = out[:n]
        # n == 0 must return an empty list and no Link (spec, "Listing Tags").
        return Page(items, items[-1] if len(out) > n and items else None)


_CONCURRENCY = 32  # storage requests in flight for one scan or untag


_T = TypeVar("_T")


async def _bounded(calls: Iterable[Awaitable[_T]]) -> list[_T]:
    """Await `calls` with at most _CONCURRENCY at once, results in order."""
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def one(call: Awaitable[_T]) -> _T:
        async with limit:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


_TAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_MAX_TAG = 128


def _tag_bound(last: str) -> str | None:
    """The longest prefix of `last` made of tag characters, at most a tag long: every tag
    greater than `last` is greater than it too."""
    end = next((i for i, c in enumerate(last) if c not in _TAG_CHARS), len(last))
    return last[: min(end, _MAX_TAG)] or None
