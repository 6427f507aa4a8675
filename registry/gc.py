"""Online garbage collection: mark every blob reachable from a manifest, sweep the rest.

Runs while replicas serve pushes and pulls; no lock, no read-only mode.

What is reachable (the mark): in every repository of the catalog, every manifest revision
(`_manifests/revisions`), the manifest's own bytes, its config and layers, and, for an index,
its child manifests and whatever those reach. A referrer (a manifest with `subject`) is a
revision in its repository like any other, so it and its blobs are kept as long as the
revision is. With `delete_untagged`, revisions are first pruned to those a tag reaches, plus
children of kept indexes, plus referrers of kept manifests (to a fixed point), plus any
revision written within the grace window.

What is deleted (the sweep): a blob under `blobs/` that is not marked AND whose data and
`touched` mark are both older than the grace window (measured on the storage's own clock: GC
writes `_gc/clock` and reads back its modification time, so replica clock skew does not
matter). Then per-repository `_layers` links to swept blobs (older than the window) go too,
and upload sessions untouched for longer than the upload TTL are purged, as are temp files and
multipart uploads that crashed writers left anywhere in the storage (by the same TTL).

Why a concurrent push cannot lose. Every push path writes the blob's `touched` mark *before*
it checks that the blob exists and relies on it: an upload commit before it publishes (the
content may already exist), a mount before it links, a manifest PUT for its own bytes and
every blob and child it references. A manifest PUT first checks read-only that its references
exist (refusing early writes nothing), then writes the marks, then its revision, then checks
again that everything it references exists (and withdraws the revision with
MANIFEST_BLOB_UNKNOWN otherwise): that last check is the one it relies on, and it comes after
the marks. Tags are written only after that. GC takes a
blob away in two steps: it moves the data to `_gc/trash/`, then re-reads the `touched` mark;
if the mark is now inside the grace window it moves the data back, else deletes it. Take any
push that relies on blob B and a GC that sweeps B:
- the push touched B before GC re-read the mark: GC sees a fresh mark and restores B;
- the push touched B after GC re-read the mark: then the push's existence checks come after
  GC's move, so they find B missing (unless GC restored it) and the push fails cleanly
  (the client re-uploads), never leaving a manifest that references a missing blob.
A blob that is new (uploaded within the window) is never a candidate at all. A fresh
modification time is no substitute for the mark, though: GC moves whatever is at the key when
it gets there, which can be bytes a push wrote after GC judged an older copy (one a second
collector took away meanwhile, or one put back from the trash); only the push's mark makes GC
give them back. So a manifest PUT marks its own bytes even when it writes them itself
(tests/registry/test_gc.py::test_fresh_manifest_bytes_moved_by_a_gc_that_judged_older_ones_are_restored).
The window must exceed the time between a client's blob upload and its manifest PUT (the
default hour is generous), since between those two nothing references the blob yet. A pull may see a
404 on such a blob for the instant it is in the trash; the blob comes back at once.

With `delete_untagged`, a revision is deleted only when its link is older than the window;
afterwards GC re-reads the repository's tags and every revision written within the window,
and restores any deleted revision one of them now reaches. A manifest PUT checks again after
writing its tags that its revision is still there and rewrites it otherwise. This runs
before the mark, so restored revisions keep their blobs.

With retention policies (registry.policies.retention), tags the rules let go are deleted first
(through the tag store, so immutable tags can never go), then untagged manifests are pruned as
above, per repository with the cutoff of its rule's `untagged_after` (never inside the grace
window). A dry run plans the same deletions and prunes as if the tags were gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ocispec.digest import Digest
from ocispec.models import Index, Manifest, ManifestError, parse_manifest
from registry import errors
from registry.observe import audit
from registry.policies.config import Policies
from registry.policies.quota import QuotaStore, usage_text
from registry.policies.retention import TagDeletion, plan_repository
from registry.shared.blobcache import BlobCache
from registry.stores import paths
from registry.stores.catalog import CatalogStore
from registry.stores.repository import RegistryStore
from storage_backends.base import NotFound, StorageBackend, StorageError

logger = logging.getLogger(__name__)

DEFAULT_GRACE = 3600.0
_T = TypeVar("_T")


@dataclass(slots=True)
class GcReport:
    dry_run: bool
    blobs_deleted: int = 0
    bytes_freed: int = 0
    manifests_deleted: int = 0
    links_removed: int = 0
    uploads_purged: int = 0
    leftovers_swept: int = 0  # temp files and multipart uploads crashes left behind
    blobs_kept: int = 0  # reachable blobs
    blobs_young: int = 0  # unreachable but inside the grace window
    deleted: list[Digest] = field(default_factory=list)
    # Untagged manifests pruned (or, dry, that would be), as "name@digest".
    manifests: list[str] = field(default_factory=list)
    # Tags retention deleted (or, dry, would delete), with the rule and the reason.
    tags: list[TagDeletion] = field(default_factory=list)
    # Quota namespaces recounted: (namespace pattern, bytes used, limit).
    quotas: list[tuple[str, int, int]] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (
            f"{verb} {self.blobs_deleted} blob(s), {self.bytes_freed} bytes; "
            f"{self.manifests_deleted} untagged manifest(s), {self.links_removed} link(s), "
            f"{self.uploads_purged} stale upload(s), {self.leftovers_swept} crash leftover(s); "
            f"kept {self.blobs_kept} reachable, "
            f"{self.blobs_young} too young to delete"
        ) + (f"; {len(self.tags)} tag(s) by retention" if self.tags else "")


class GarbageCollector:
    def __init__(
        self,
        backend: StorageBackend,
        grace: float = DEFAULT_GRACE,
        upload_ttl: float = 24 * 3600.0,
        delete_untagged: bool = False,
        dry_run: bool = False,
        log: Callable[[str], None] | None = None,
        blob_cache: BlobCache | None = None,
        policies: Policies | None = None,
        on_delete: Callable[[str, Digest | str], Awaitable[None]] | None = None,
    ) -> None:
        """`policies`: retention rules to apply; `on_delete(repository, tag or digest)` hears of
        every tag and manifest deleted (delete events)."""
        self._backend = backend
        self._policies = policies
        self._on_delete = on_delete
        self._store = RegistryStore(backend, blob_cache=blob_cache, policies=policies)
        self._catalog = CatalogStore(backend)
        self._grace = grace
        self._upload_ttl = upload_ttl
        self._delete_untagged = delete_untagged
        self._dry_run = dry_run
        self._log = log or (lambda message: logger.info("%s", message))

    async def run(self) -> GcReport:
        report = GcReport(dry_run=self._dry_run)
        if not self._dry_run:
            await self._recover_trash()
        now = await self._storage_now()
        cutoff = now - self._grace
        repos = await self._catalog.names()
        # A dry run deletes no revision, so the mark must leave out the ones it would prune:
        # otherwise it keeps (and reports nothing of) what only those manifests reference.
        pruned: dict[str, set[Digest]] = {}
        for name in repos:
            gone = await self._apply_retention(name, report)
            untagged_cutoff = self._untagged_cutoff(name, cutoff, now)
            if untagged_cutoff is None:
                continue
            # A dry run deleted no tag: prune as if the retention's tags were gone.
            ignore = {d.tag for d in gone} if self._dry_run else set()
            pruned[name] = await self._prune_untagged(name, cutoff, untagged_cutoff, ignore)
            report.manifests_deleted += len(pruned[name])
            report.manifests.extend(f"{name}@{d}" for d in sorted(pruned[name], key=str))
        marked: set[Digest] = set()
        per_repository: dict[str, set[Digest]] = {}  # for quotas only
        for name in repos:
            mine: set[Digest] = set()
            await self._mark_repository(name, mine, skip=pruned.get(name, set()))
            marked |= mine
            if self._policies is not None and self._policies.quotas_for(name):
                per_repository[name] = mine
        swept = await self._sweep(marked, cutoff, report)
        await self._recount_quotas(per_repository, report)
        if swept:
            for name in repos:
                report.links_removed += await self._remove_links(name, swept, cutoff)
        # Sessions record their replica's time.time(), so compare with this host's clock.
        report.uploads_purged = await self._store.uploads.purge(
            older_than=self._upload_ttl, dry_run=self._dry_run
        )
        if not self._dry_run:
            # Temp files a crashed write left anywhere else (blobs, links, state), by age.
            report.leftovers_swept = await self._backend.sweep_leftovers(
                "", self._upload_ttl, self._store.uploads.has_session
            )
        return report

    # -- retention ---------------------------------------------------------------------------

    async def _apply_retention(self, name: str, report: GcReport) -> list[TagDeletion]:
        """Delete (dry: only plan) the tags `name`'s retention rule lets go."""
        if self._policies is None or not self._policies.retention:
            return []
        # Push times are the pushing replicas' clocks; compare with this host's.
        planned = await plan_repository(self._store.tags, self._policies, name, time.time())
        done: list[TagDeletion] = []
        user, host = audit.operator()
        for deletion in planned:
            if self._dry_run:
                self._log(f"would delete {deletion.describe()}")
                done.append(deletion)
                continue
            # Re-pushed since the plan (moved, or a fresh push time): judged again next run.
            now = await self._store.tags.info(name, deletion.tag)
            if now is None or now.digest != deletion.digest:
                continue
            try:
                await self._store.manifests.delete(name, deletion.tag)
            except errors.RegistryError as exc:  # gone meanwhile, or immutable since the plan
                self._log(f"kept tag {name}:{deletion.tag}: {exc.message}")
                continue
            audit.record(
                "retention.delete_tag",
                repository=name,
                tag=deletion.tag,
                digest=str(deletion.digest),
                rule=deletion.rule,
                reason=deletion.reason,
                user=user,
                client=host,
            )
            if self._on_delete is not None:
                await self._on_delete(name, deletion.tag)
            self._log(f"deleted {deletion.describe()}")
            done.append(deletion)
        report.tags.extend(done)
        return done

    async def _recount_quotas(
        self, per_repository: dict[str, set[Digest]], report: GcReport
    ) -> None:
        """Every quota namespace's usage from what its repositories reference now (a dry run
        only reports it); corrects what pushes counted incrementally and deletions left."""
        if self._policies is None or not self._policies.quotas:
            return
        quotas = QuotaStore(self._backend, self._policies)
        sizes: dict[Digest, int] = {}

        async def size(digest: Digest) -> int:
            try:
                return (await self._backend.stat(paths.blob_data(digest))).size
            except NotFound:
                return 0

        for rule in self._policies.quotas:
            referenced: set[Digest] = set()
            for name, digests in per_repository.items():
                if rule.matches(name):
                    referenced |= digests
            todo = [d for d in referenced if d not in sizes]
            sizes.update(zip(todo, await _bounded([size(d) for d in todo]), strict=True))
            counted = {d: sizes[d] for d in referenced}
            if self._dry_run:
                used = sum(counted.values())
            else:
                used = await quotas.recount(rule, counted)
            report.quotas.append((rule.repository, used, rule.limit))
            self._log(f"quota {rule.repository}: {usage_text(used, rule.limit)} ({used} bytes)")

    def _untagged_cutoff(self, name: str, cutoff: float, now: float) -> float | None:
        """Revisions pushed before this may be pruned as untagged; None: do not prune `name`."""
        if self._delete_untagged:
            return cutoff
        rule = self._policies.retention_rule(name) if self._policies else None
        if rule is None or rule.untagged_after is None:
            return None
        return min(cutoff, now - rule.untagged_after)  # never inside the grace window

    async def _recover_trash(self) -> None:
        """A GC that died between moving a blob to the trash and deciding puts it back; this
        run then judges it afresh."""
        async for key in self._backend.walk(f"{paths.GC}/trash"):
            alg, _, hex_ = key.removeprefix(f"{paths.GC}/trash/").partition("/")
            digest = _digest(f"{alg}:{hex_}")
            if digest is None:
                continue
            if await self._backend.exists(paths.blob_data(digest)):
                await self._backend.delete(key)
            else:
                await self._backend.move(key, paths.blob_data(digest))

    async def _storage_now(self) -> float:
        """The storage's clock (object mtimes are in it), not this host's. A dry run reads it too
        (writing only GC's own probe object), so it judges ages as the real run will; on
        storage it may not write to, it falls back to this host's clock."""
        try:
            await self._backend.put(paths.gc_clock(), b"")
            return (await self._backend.stat(paths.gc_clock())).modified
        except (StorageError, OSError):
            if not self._dry_run:
                raise
            return time.time()

    # -- mark --------------------------------------------------------------------------------

    async def _revisions(self, name: str) -> dict[Digest, str]:
        """Revision links of `name`: digest -> link key."""
        base = paths.revisions_dir(name)
        out: dict[Digest, str] = {}
        async for key in self._backend.walk(base):
            digest = paths.link_digest(key, base)
            if digest is not None:
                out[digest] = key
        return out

    async def _parse(self, digest: Digest, link_key: str | None = None) -> Manifest | Index | None:
        """The manifest stored under `digest`, parsed with the media type its revision link
        recorded (as the PUT did); None when it is not a manifest."""
        declared = None
        if link_key:
            try:
                declared = _media_type(await self._backend.get(link_key))
            except NotFound:  # a revision just removed: its bytes are still there
                declared = None
        try:
            data = await self._backend.get(paths.blob_data(digest))
            return parse_manifest(data, declared)
        except (NotFound, ManifestError, RecursionError, ValueError):
            return None

    async def _mark_repository(
        self, name: str, marked: set[Digest], skip: set[Digest] | frozenset[Digest] = frozenset()
    ) -> None:
        revisions = {d: k for d, k in (await self._revisions(name)).items() if d not in skip}
        parsed_already: set[Digest] = set()
        wave = list(revisions)
        while wave:
            todo = [d for d in dict.fromkeys(wave) if d not in parsed_already]
            parsed_already.update(todo)
            marked.update(todo)
            # Manifests are read a bounded number at a time: a mark over S3 is round-trip bound.
            found = await _bounded([self._parse(d, revisions.get(d)) for d in todo])
            wave = []
            for parsed in found:
                if isinstance(parsed, Index):
                    wave.extend(d.digest for d in parsed.manifests)
                elif parsed is not None:
                    marked.update(d.digest for d in parsed.references())

    # -- untagged manifests ------------------------------------------------------------------

    async def _tagged(
        self, name: str, ignore: set[str] | frozenset[str] = frozenset()
    ) -> set[Digest]:
        out: set[Digest] = set()
        for tag in await self._store.tags.names(name):
            if tag in ignore:
                continue
            try:
                out.add(await self._store.tags.resolve(name, tag))
            except errors.RegistryError:  # deleted meanwhile, or a corrupt link: reaches nothing
                continue
        return out

    async def _reachable(
        self,
        name: str,
        roots: set[Digest],
        revisions: dict[Digest, str],
        weak_roots: set[Digest] | frozenset[Digest] = frozenset(),
    ) -> set[Digest]:
        """`roots` plus children of kept indexes plus referrers of kept manifests; plus
        `weak_roots` that are not referrers (a referrer follows its subject)."""
        subjects: dict[Digest, Digest] = {}  # referrer -> subject
        parsed_cache: dict[Digest, Manifest | Index | None] = {}
        items = list(revisions.items())
        found = await _bounded([self._parse(digest, key) for digest, key in items])
        for (digest, _), parsed in zip(items, found, strict=True):
            parsed_cache[digest] = parsed
            if parsed is not None and parsed.subject is not None:
                subjects[digest] = parsed.subject.digest
        keep = set(roots) | {d for d in weak_roots if d not in subjects}
        changed = True
        while changed:
            changed = False
            for digest in list(keep):
                parsed = parsed_cache.get(digest)
                if isinstance(parsed, Index):
                    for child in parsed.manifests:
                        if child.digest not in keep:
                            keep.add(child.digest)
                            changed = True
            for referrer, subject in subjects.items():
                if subject in keep and referrer not in keep:
                    keep.add(referrer)
                    changed = True
        return keep

    async def _prune_untagged(
        self,
        name: str,
        cutoff: float,
        untagged_cutoff: float | None = None,
        ignore_tags: set[str] | frozenset[str] = frozenset(),
    ) -> set[Digest]:
        """Delete (dry: only find) the revisions of `name` nothing kept reaches; returns them.
        Revisions written after `cutoff` (the grace window) are kept; those written after
        `untagged_cutoff` (a retention period, earlier) are kept unless they are referrers."""
        revisions = await self._revisions(name)
        roots = await self._tagged(name, ignore_tags)
        weak: set[Digest] = set()
        for digest, key in revisions.items():
            modified = await self._modified(key)
            if modified >= cutoff:
                roots.add(digest)  # just pushed (e.g. a child before its index): not yet judged
            elif untagged_cutoff is not None and modified >= untagged_cutoff:
                weak.add(digest)
        keep = await self._reachable(name, roots, revisions, weak)
        removed: dict[Digest, bytes] = {}
        for digest, key in revisions.items():
            if digest in keep:
                continue
            if self._dry_run:
                removed[digest] = b""
                self._log(f"would delete untagged manifest {name}@{digest}")
                continue
            try:
                removed[digest] = await self._backend.get(key)
            except NotFound:
                continue
            await self._backend.delete(key)
        if self._dry_run or not removed:
            return set(removed)
        # Re-read what a concurrent push may have added meanwhile and restore what it reaches.
        now_revisions = await self._revisions(name)
        fresh = {d for d, key in now_revisions.items() if await self._modified(key) >= cutoff}
        # The removed ones are parsed too, so a restored index brings its children back.
        candidates = {d: paths.manifest_revision_link(name, d) for d in removed}
        again = await self._reachable(
            name, await self._tagged(name) | fresh, {**candidates, **now_revisions}
        )
        for digest in list(removed):
            if digest in again:
                await self._backend.put(paths.manifest_revision_link(name, digest), removed[digest])
                del removed[digest]
                continue
            parsed = await self._parse(digest)
            if parsed is not None and parsed.subject is not None:
                await self._store.referrers.remove(name, parsed.subject.digest, digest)
            self._log(f"deleted untagged manifest {name}@{digest}")
            user, host = audit.operator()
            audit.record(
                "gc.delete_manifest", repository=name, digest=str(digest), user=user, client=host
            )
            if self._on_delete is not None:
                await self._on_delete(name, digest)
        return set(removed)

    async def _modified(self, key: str) -> float:
        try:
            return (await self._backend.stat(key)).modified
        except NotFound:
            return 0.0

    # -- sweep -------------------------------------------------------------------------------

    async def _sweep(self, marked: set[Digest], cutoff: float, report: GcReport) -> set[Digest]:
        swept: set[Digest] = set()
        candidates: list[Digest] = []
        with_data: set[str] = set()
        lone_marks: list[str] = []  # `touched` marks with no data (a push that never came)
        async for key in self._backend.walk(paths.BLOBS):
            digest = paths.blob_digest(key)
            if digest is None:
                if key.endswith("/touched") and key.removesuffix("/touched") not in with_data:
                    lone_marks.append(key)
                continue
            with_data.add(key.removesuffix("/data"))  # walk is sorted: data before touched
            if digest in marked:
                report.blobs_kept += 1
            else:
                candidates.append(digest)
        if not self._dry_run:
            for key in lone_marks:
                data_key = key.removesuffix("/touched") + "/data"
                if await self._modified(key) < cutoff and not await self._backend.exists(data_key):
                    await self._backend.delete(key)
        for digest in candidates:
            data_key = paths.blob_data(digest)
            try:
                size_stat = await self._backend.stat(data_key)
            except NotFound:
                continue
            touched = await self._modified(paths.blob_touched(digest))
            if max(size_stat.modified, touched) >= cutoff:
                report.blobs_young += 1
                continue
            if not self._dry_run and not await self._take_away(digest, cutoff):
                report.blobs_young += 1
                continue
            swept.add(digest)
            report.blobs_deleted += 1
            report.bytes_freed += size_stat.size
            report.deleted.append(digest)
            self._log(f"{'would delete' if self._dry_run else 'deleted'} blob {digest}")
        return swept

    async def _take_away(self, digest: Digest, cutoff: float) -> bool:
        """Move to trash, re-read the touch mark, then delete or restore; True if deleted."""
        data_key, trash = paths.blob_data(digest), paths.gc_trash(digest)
        try:
            await self._backend.move(data_key, trash)
        except NotFound:
            return False
        # Drop the blob from the shared cache before deciding, so no HEAD serves it afterwards;
        # if that cannot be done (Redis down), the blob stays until a later run.
        forgotten = await self._store.blobs.cache.forget(digest)
        if not forgotten or await self._modified(paths.blob_touched(digest)) >= cutoff:
            # A push started relying on it after our first look: give it back.
            if await self._backend.exists(data_key):
                await self._backend.delete(trash)  # re-uploaded meanwhile: same bytes
            else:
                await self._backend.move(trash, data_key)
            return False
        await self._backend.delete(trash)
        await self._backend.delete(paths.blob_touched(digest))
        return True

    async def _remove_links(self, name: str, swept: set[Digest], cutoff: float) -> int:
        base = paths.layers_dir(name)
        removed = 0
        async for key in self._backend.walk(base):
            digest = paths.link_digest(key, base)
            if digest is None or digest not in swept:
                continue
            # A link rewritten within the window belongs to a push that re-uploaded the blob.
            if await self._modified(key) >= cutoff:
                continue
            if not self._dry_run:  # a dry run swept nothing: the blob is still there
                if await self._store.blobs.exists(digest):
                    continue
                await self._backend.delete(key)
            removed += 1
        return removed


async def _bounded(tasks: list[Coroutine[Any, Any, _T]], limit: int = 16) -> list[_T]:
    gate = asyncio.Semaphore(limit)

    async def one(task: Coroutine[Any, Any, _T]) -> _T:
        async with gate:
            return await task

    return list(await asyncio.gather(*(one(t) for t in tasks)))


def _digest(value: str) -> Digest | None:
    try:
        return Digest.parse(value)
    except ValueError:
        return None


def _media_type(link: bytes) -> str | None:
    try:
        value = json.loads(link).get("mediaType")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
