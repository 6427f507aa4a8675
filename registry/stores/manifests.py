"""Manifests: validated by media type, stored byte-exact, with their media type beside them.

The bytes go to the global content store by digest; the repository keeps a revision link
(JSON: digest and media type as pushed) so GET answers with the exact Content-Type.
A PUT requires every referenced blob or child manifest to be in the same repository
(foreign layers with `urls` are exempt, their URLs checked: stores/foreign.py); `subject` need
not exist.

Bounded work per manifest: at most `MAX_DESCRIPTORS` descriptors (refused with MANIFEST_INVALID
right after parsing, before any storage call); references are checked read-only first, in
batches of `CHECK_BATCH` with at most `CHECK_CONCURRENCY` storage calls in flight, stopping at
the first batch with a missing one, so a manifest that is refused writes nothing (not even
in-use marks) and one request cannot fill the storage's thread pool or connection pool.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ocispec import mediatypes as mt
from ocispec.digest import Digest, DigestError, digest_bytes
from ocispec.models import Index, Manifest, ManifestError, parse_manifest
from ocispec.reference import valid_tag
from registry import errors
from registry.policies import immutability
from registry.policies.quota import QuotaStore
from registry.stores import paths
from registry.stores.batch import Batch
from registry.stores.blobs import BlobStore
from registry.stores.catalog import CatalogStore
from registry.stores.foreign import UrlRules, check_urls, stored_references
from registry.stores.referrers import ReferrerStore
from registry.stores.tags import TagStore
from storage_backends.base import NotFound, Plan, StorageBackend

#: descriptors one manifest may carry (config + layers, or an index's manifests); Docker caps
#: an image at 127 layers, so this leaves room for large artifacts and multi-platform indexes
MAX_DESCRIPTORS = 1024
#: references checked per round; a round with a missing one ends the check
CHECK_BATCH = 64
#: storage calls one manifest PUT keeps in flight at most
CHECK_CONCURRENCY = 8
_T = TypeVar("_T")
_R = TypeVar("_R")


async def _bounded(
    items: Iterable[_T], call: Callable[[_T], Awaitable[_R]], gate: asyncio.Semaphore | None = None
) -> list[_R]:
    """`call` on every item, at most CHECK_CONCURRENCY at a time (or as `gate` allows, shared
    by the steps of one PUT that run side by side), results in order."""
    gate = gate or asyncio.Semaphore(CHECK_CONCURRENCY)

    async def one(item: _T) -> _R:
        async with gate:
            return await call(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    media_type: str
    data: bytes


@dataclass(slots=True)
class _Publish:
    """What the write rounds of one manifest PUT need (computed on the event loop)."""

    name: str
    digest: Digest
    needed: list[Digest]
    data: bytes
    revision: str
    link: bytes
    tags: list[str]
    require_references: bool
    subject: Digest | None = None
    referrer: dict[str, Any] | None = None
    enforce: bool = True


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How the write rounds ended: references missing at the re-check, or the tags' old
    targets, which markers were still there and whether the revision was."""

    missing: list[str]
    olds: list[Digest | None] = field(default_factory=list)
    markers: list[bool] = field(default_factory=list)
    kept: bool = True


@dataclass(frozen=True, slots=True)
class PutResult:
    digest: Digest
    subject: Digest | None


def referrer_descriptor(parsed: Manifest | Index, digest: Digest, size: int) -> dict[str, Any]:
    """The descriptor the referrers API lists for a manifest (spec, "Listing Referrers")."""
    out: dict[str, Any] = {"mediaType": parsed.media_type, "digest": str(digest), "size": size}
    if parsed.artifact_type:
        out["artifactType"] = parsed.artifact_type
    elif isinstance(parsed, Manifest):
        out["artifactType"] = parsed.config.media_type
    if parsed.annotations:
        out["annotations"] = parsed.annotations
    return out


class ManifestStore:
    def __init__(
        self,
        backend: StorageBackend,
        blobs: BlobStore,
        tags: TagStore,
        referrers: ReferrerStore,
        catalog: CatalogStore,
        quotas: QuotaStore | None = None,
        url_rules: UrlRules | None = None,
    ) -> None:
        self._backend = backend
        self._url_rules = url_rules or UrlRules()
        self._quotas = quotas  # registry.policies.quota
        self._blobs = blobs
        self._tags = tags
        self._referrers = referrers
        self._catalog = catalog

    async def resolve(self, name: str, reference: Digest | str) -> Digest:
        """A tag's digest, or a digest known in the repository; MANIFEST_UNKNOWN otherwise."""
        if isinstance(reference, str):
            return await self._tags.resolve(name, reference)
        if not await self.has(name, reference):
            raise errors.MANIFEST_UNKNOWN(detail={"digest": str(reference)})
        return reference

    async def has(self, name: str, digest: Digest) -> bool:
        return await self._backend.exists(paths.manifest_revision_link(name, digest))

    async def get(self, name: str, reference: Digest | str) -> StoredManifest:
        digest = await self.resolve(name, reference)
        try:
            link = json.loads(await self._backend.get(paths.manifest_revision_link(name, digest)))
            data = await self._backend.get(paths.blob_data(digest))
        except (NotFound, ValueError):
            raise errors.MANIFEST_UNKNOWN(detail={"digest": str(digest)}) from None
        return StoredManifest(digest, str(link.get("mediaType", mt.OCI_MANIFEST)), data)

    async def put(
        self,
        name: str,
        reference: Digest | str,
        data: bytes,
        content_type: str | None,
        extra_tags: list[str] | None = None,
        require_references: bool = True,
        mirror: bool = False,
    ) -> PutResult:
        """Store a manifest under a tag or its digest (plus `extra_tags`, spec end-7b).

        `require_references=False` is for the pull-through cache (registry.proxy): a mirrored
        manifest is stored before its blobs, which arrive when clients ask for them.
        `mirror=True` (the cache too) exempts the tags from immutability: upstreams move them."""
        try:
            parsed = parse_manifest(data, content_type)
        except ManifestError as exc:
            raise errors.MANIFEST_INVALID(str(exc)) from None
        except RecursionError:  # absurdly nested JSON: malformed input, not a server fault
            raise errors.MANIFEST_INVALID("JSON nested too deeply") from None
        count = len(parsed.manifests) if isinstance(parsed, Index) else len(parsed.references())
        if count > MAX_DESCRIPTORS:
            raise errors.MANIFEST_INVALID(
                f"{count} descriptors; at most {MAX_DESCRIPTORS} per manifest",
                detail={"descriptors": count, "limit": MAX_DESCRIPTORS},
            )
        if isinstance(reference, Digest):
            digest = digest_bytes(data, reference.algorithm)
            if digest != reference:
                raise errors.DIGEST_INVALID(
                    "manifest does not match the digest it was pushed by",
                    detail={"expected": str(reference), "actual": str(digest)},
                )
        else:
            digest = digest_bytes(data)
        tags = [reference] if isinstance(reference, str) else []
        tags += extra_tags or []
        if not mirror:  # read-only, before any write: a refused push stores nothing
            check_urls(parsed, self._url_rules)
            await self._check_immutable(name, tags, digest)
        needed = list(dict.fromkeys(stored_references(parsed)))  # each digest once, in order
        blob_key = paths.blob_data(digest)
        revision = paths.manifest_revision_link(name, digest)
        link = json.dumps({"digest": str(digest), "mediaType": parsed.media_type}).encode()
        subject = parsed.subject.digest if parsed.subject else None
        referrer = None if subject is None else referrer_descriptor(parsed, digest, len(data))
        # Read-only first: a manifest refused here has written nothing. The same round looks
        # up the manifest's own bytes (that only spares a rewrite: the check after the
        # revision is the one relied on).
        check = self._check_plan(name, needed, blob_key, require_references)
        publish = _Publish(
            name,
            digest,
            needed,
            data,
            revision,
            link,
            tags,
            require_references,
            subject,
            referrer,
            enforce=not mirror,
        )
        charges = []
        if self._quotas is not None and not mirror:
            # Read-only too: a push over a quota is refused before it writes anything.
            have_bytes = await self._backend.rounds(check)
            charges = await self._quotas.admit(name, await self._sizes(digest, data, needed))
            outcome = await self._backend.rounds(self._publish_plan(publish, have_bytes))
        else:  # every round of the PUT in one plan: on the filesystem, one thread hop
            outcome = await self._backend.rounds(self._put_plan(check, publish))
        if outcome.missing:
            await self._backend.delete(revision)
            raise errors.MANIFEST_BLOB_UNKNOWN(detail={"missing": outcome.missing})
        await self._catalog.mark(name)  # no storage call once this process has seen `name`
        await self._tags.finish(name, tags, digest, outcome.olds, outcome.markers)
        if not outcome.kept:
            await self._backend.put(revision, link)
        if charges and self._quotas is not None:
            await self._quotas.commit(charges)
        return PutResult(digest, subject)

    def _put_plan(self, check: Plan[bool], publish: _Publish) -> Plan[_Outcome]:
        have_bytes = yield from check
        return (yield from self._publish_plan(publish, have_bytes))

    def _publish_plan(self, p: _Publish, have_bytes: bool) -> Plan[_Outcome]:
        """The writes of a PUT whose references were found, as dependent storage rounds.

        Online GC safety (registry/gc.py): mark everything this push relies on as in use
        *before* the existence check it relies on (after the revision is written); tags only
        after that check; the revision re-checked after the tags. Each round holds operations
        that need no order among themselves; on the filesystem the plan runs in a worker
        thread, so it only computes and raises."""
        # 1. The marks, the bytes and the revision (nothing reads the revision as a manifest
        #    before this PUT answers; the filesystem writes them in this order).
        writes = Batch()
        for d in [p.digest, *p.needed]:
            writes.put(paths.blob_touched(d), b"")
        if not have_bytes:
            writes.put(paths.blob_data(p.digest), p.data)
        writes.put(p.revision, p.link)
        yield from writes.round()
        # 2. The existence check relied on, with the tags' markers and old targets (markers
        #    may be stale, so a refusal here leaves nothing that matters).
        checked = [p.digest, *p.needed] if p.require_references else [p.digest]
        check = Batch()
        present = [check.exists(paths.blob_data(d)) for d in checked]
        reads = self._tags.stage_markers(check, p.name, p.tags, p.digest)
        yield from check.round()
        missing = [str(d) for d, i in zip(checked, present, strict=True) if not check.flag(i)]
        if missing:
            return _Outcome(missing)
        olds = self._tags.olds(check, reads)
        # 3. The tags (DENIED before any is written if one is immutable) and the referrer.
        publish = Batch()
        self._tags.stage_links(publish, p.name, p.tags, p.digest, olds, enforce=p.enforce)
        if p.subject is not None and p.referrer is not None:
            self._referrers.stage_add(publish, p.name, p.subject, p.digest, p.referrer)
        yield from publish.round()
        # 4. The re-checks after the tags: their markers, and the revision, which
        #    `gc --delete-untagged` may have removed between our write and the tags.
        last = Batch()
        markers = self._tags.stage_recheck(last, p.name, p.tags, p.digest)
        kept = last.exists(p.revision)
        yield from last.round()
        return _Outcome([], olds, [last.flag(i) for i in markers], last.flag(kept))

    async def _sizes(self, digest: Digest, data: bytes, needed: list[Digest]) -> dict[Digest, int]:
        """Bytes of the manifest and of every blob it references (for quotas)."""

        async def size(d: Digest) -> int:
            try:
                return (await self._backend.stat(paths.blob_data(d))).size
            except NotFound:  # a missing one fails the push's own checks later
                return 0

        found = await _bounded(needed, size)
        return {digest: len(data), **dict(zip(needed, found, strict=True))}

    async def _check_immutable(self, name: str, tags: list[str], digest: Digest) -> None:
        policies = self._tags.policies
        if policies is None:
            return
        for tag in tags:
            if policies.immutable_rule(name, tag) is not None:  # one read, only for such tags
                old = await self._tags.current(name, tag)
                immutability.check_set(policies, name, tag, old, digest)

    def _check_plan(
        self, name: str, needed: list[Digest], own: str, require_references: bool
    ) -> Plan[bool]:
        """MANIFEST_BLOB_UNKNOWN unless every digest is in the repository (a blob linked, or
        a child manifest's revision, and the content itself), checked in bounded rounds of
        one or two storage batches; the error lists the missing ones of the first round
        that has any. Returns whether the object `own` exists (looked up in the first)."""
        first = Batch()
        own_index = first.exists(own)
        if not require_references:
            yield from first.round()
            return first.flag(own_index)
        have = False
        for start in range(0, max(len(needed), 1), CHECK_BATCH):
            chunk = needed[start : start + CHECK_BATCH]
            linked = [first.exists(paths.layer_link(name, d)) for d in chunk]
            content = [first.exists(paths.blob_data(d)) for d in chunk]
            yield from first.round()
            found = [first.flag(i) for i in linked]
            unlinked = [k for k, ok in enumerate(found) if not ok]
            if unlinked:  # children of an index are manifests: a revision, not a layer link
                second = Batch()
                revisions = [
                    second.exists(paths.manifest_revision_link(name, chunk[k])) for k in unlinked
                ]
                yield from second.round()
                for k, i in zip(unlinked, revisions, strict=True):
                    found[k] = second.flag(i)
            missing = [
                str(d)
                for d, ok, i in zip(chunk, found, content, strict=True)
                if not (ok and first.flag(i))
            ]
            if missing:
                raise errors.MANIFEST_BLOB_UNKNOWN(detail={"missing": missing})
            if start == 0:
                have = first.flag(own_index)
            first = Batch()
        return have

    async def delete(self, name: str, reference: Digest | str) -> None:
        """A tag: remove only that tag. A digest: the manifest and every tag pointing to it."""
        if isinstance(reference, str):
            await self._tags.delete(name, reference)
            return
        stored = await self.get(name, reference)
        policies = self._tags.policies
        if policies is not None and any(r.regex.fullmatch(name) for r in policies.immutable):
            tags = await self._tags.pointing_to(name, reference)
            immutability.check_delete(policies, name, tags)
        await self._tags.untag(name, reference)  # O(its tags), via the reverse tag index
        await self._backend.delete(paths.manifest_revision_link(name, reference))
        try:
            parsed = parse_manifest(stored.data, stored.media_type)
        except ManifestError:
            return
        if parsed.subject is not None:
            await self._referrers.remove(name, parsed.subject.digest, reference)


def parse_reference(value: str) -> Digest | str:
    """`<tag-or-digest>` from a URL: a Digest (DIGEST_INVALID when malformed) or a valid tag."""
    if ":" in value:
        try:
            return Digest.parse(value)
        except DigestError as exc:
            raise errors.DIGEST_INVALID(str(exc)) from None
    if not valid_tag(value):
        raise errors.TAG_INVALID(detail={"tag": value})
    return value
