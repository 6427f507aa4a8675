"""Storage quotas per namespace: the bytes of the unique blobs its manifests reference.

A namespace is a quota rule's repository pattern; every repository it matches counts in it
(a repository may count in several). A blob shared by two namespaces counts in both (as in
Harbor); counted once per namespace however many manifests reference it. What counts: each
manifest's own bytes, its config and layers (an index: its own bytes; its children count as
the manifests they are).

Kept incrementally at manifest push: the blobs of the manifest not yet counted (one marker per
counted blob, `paths.quota_blob`) are added to the namespace's usage (`paths.quota_usage`).
A push that would exceed the limit is refused with 403 DENIED before anything is written;
blobs uploaded but never referenced by an accepted manifest never count (nothing half-pushed
counts). Deletions do not lower the usage at once (a blob may still be referenced by another
manifest): `pyreg gc` recounts every namespace from what is reachable and rewrites it.

Guarantee under concurrency (no compare-and-swap in storage): pushes racing on several
replicas near the limit each check the usage they read, so the limit can be overshot by the
pushes in flight at that moment (at most one manifest's new blobs per concurrent push), and a
racing update of the usage object can be lost (it then under-counts); both are corrected by
the next `pyreg gc`. The limit is a brake on growth, not a hard byte-exact ceiling.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from ocispec.digest import Digest
from registry import errors
from registry.policies.config import Policies, QuotaRule
from registry.stores import paths
from storage_backends.base import NotFound, StorageBackend

_CONCURRENCY = 8
_T = TypeVar("_T")
_R = TypeVar("_R")


async def _bounded(items: Iterable[_T], call: Callable[[_T], Awaitable[_R]]) -> list[_R]:
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(item: _T) -> _R:
        async with gate:
            return await call(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


def namespace_id(rule: QuotaRule) -> str:
    """A storage-safe, stable key for the namespace (its pattern may hold `*`)."""
    return hashlib.sha256(rule.repository.encode()).hexdigest()[:32]


_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def usage_text(used: int, limit: int) -> str:
    """`9.8 of 10 GiB`: both in the limit's unit."""
    unit, size = next(((u, s) for u, s in _UNITS if limit >= s), ("bytes", 1))

    def short(value: int) -> str:
        return f"{value / size:.1f}".removesuffix(".0")

    return f"{short(used)} of {short(limit)} {unit}"


@dataclass(frozen=True, slots=True)
class Charge:
    """What an admitted push adds to one namespace, written by `QuotaStore.commit`."""

    rule: QuotaRule
    new: tuple[Digest, ...]
    size: int


class QuotaStore:
    def __init__(self, backend: StorageBackend, policies: Policies) -> None:
        self._backend = backend
        self._policies = policies

    async def usage(self, rule: QuotaRule) -> int:
        try:
            return int(
                json.loads(await self._backend.get(paths.quota_usage(namespace_id(rule))))["bytes"]
            )
        except (NotFound, ValueError, KeyError, TypeError):
            return 0

    async def admit(self, name: str, sizes: dict[Digest, int]) -> list[Charge]:
        """Read-only: DENIED if counting the blobs `sizes` (digest -> bytes) of a manifest
        pushed to `name` would exceed a namespace's limit; else what to `commit`."""
        charges = []
        for rule in self._policies.quotas_for(name):
            ns = namespace_id(rule)
            digests = list(sizes)
            keys = [paths.quota_blob(ns, d) for d in digests]
            counted = await _bounded(keys, self._backend.exists)
            new = tuple(d for d, ok in zip(digests, counted, strict=True) if not ok)
            added = sum(sizes[d] for d in new)
            if not added:
                continue
            used = await self.usage(rule)
            if used + added > rule.limit:
                raise errors.DENIED(
                    f"quota of {rule.repository} exceeded: {usage_text(used + added, rule.limit)}",
                    detail={
                        "namespace": rule.repository,
                        "rule": rule.where,
                        "used": used,
                        "adding": added,
                        "limit": rule.limit,
                    },
                )
            charges.append(Charge(rule, new, added))
        return charges

    async def commit(self, charges: list[Charge]) -> None:
        for charge in charges:
            ns = namespace_id(charge.rule)
            await _bounded([paths.quota_blob(ns, d) for d in charge.new], self._mark)
            used = await self.usage(charge.rule)
            await self._write(charge.rule, used + charge.size)

    async def _mark(self, key: str) -> None:
        await self._backend.put(key, b"")

    async def _write(self, rule: QuotaRule, used: int) -> None:
        body = {"bytes": used, "namespace": rule.repository}
        await self._backend.put(paths.quota_usage(namespace_id(rule)), json.dumps(body).encode())

    async def recount(self, rule: QuotaRule, referenced: dict[Digest, int]) -> int:
        """Rewrite the namespace from what its manifests reference now (GC); its bytes."""
        ns = namespace_id(rule)
        base = paths.quota_blobs_dir(ns)
        stale, present = [], set()
        async for key in self._backend.walk(base):
            digest = paths.link_digest(key + "/link", base)  # keys are <base>/<alg>/<hex>
            if digest is None or digest not in referenced:
                stale.append(key)
            else:
                present.add(digest)
        await _bounded(stale, self._backend.delete)
        missing = [paths.quota_blob(ns, d) for d in referenced if d not in present]
        await _bounded(missing, self._mark)
        total = sum(referenced.values())
        await self._write(rule, total)
        return total
