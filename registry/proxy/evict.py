"""Least-recently-used eviction of cached blobs above `proxy.max_bytes`.

The cap counts the blobs that only mirrored repositories link (layers and configs; manifests
are small and stay). A pass lists the blob links of every mirrored repository, leaves out
blobs any ordinary repository links (pushed content is never evicted), and while the total is
over the cap removes the least recently served blob: its links in the mirrored repositories,
then its data. A later pull fetches it again from the upstream.

"Last served" is the mtime of `_proxy/access/<digest>`, written by the cache at most once a
minute per blob and process; a blob never served since it was fetched counts from its own
mtime. A blob touched within `evict_grace` (a push relying on it, or a fresh fetch) is kept,
the same protection online GC gives pushes (registry/gc.py). Every replica may run passes:
deleting what another pass already deleted is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from ocispec.digest import Digest
from registry.proxy import mapping
from registry.proxy.config import ProxyConfig
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.base import NotFound, StorageBackend, StorageError

logger = logging.getLogger("registry.proxy")

ACCESS_RESOLUTION = 60.0  # seconds: how stale a recorded access time may be


@dataclass(slots=True)
class EvictReport:
    cached_bytes: int = 0  # before the pass
    evicted: int = 0
    evicted_bytes: int = 0


class AccessLog:
    """Records when the cache served a blob, at most once per ACCESS_RESOLUTION per blob."""

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend
        self._written: dict[Digest, float] = {}

    async def touch(self, digest: Digest) -> None:
        now = time.monotonic()
        if now - self._written.get(digest, -ACCESS_RESOLUTION) < ACCESS_RESOLUTION:
            return
        self._written[digest] = now
        if len(self._written) > 100_000:  # bounded: forget the oldest half
            for key in sorted(self._written, key=self._written.__getitem__)[:50_000]:
                del self._written[key]
        try:
            await self._backend.put(paths.proxy_access(digest), b"")
        except StorageError:
            logger.warning("could not record the access to %s", digest)


async def _mtime(backend: StorageBackend, key: str) -> float | None:
    try:
        return (await backend.stat(key)).modified
    except NotFound:
        return None


async def _links(backend: StorageBackend, name: str) -> list[Digest]:
    base = paths.layers_dir(name)
    found = []
    try:
        async for key in backend.walk(base):
            digest = paths.link_digest(key, base)
            if digest is not None:
                found.append(digest)
    except NotFound:
        pass
    return found


class Evictor:
    def __init__(self, config: ProxyConfig, store: RegistryStore) -> None:
        self._config = config
        self._store = store
        self._backend = store.backend

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.evict_interval)
            try:
                report = await self.run_once()
            except Exception:
                logger.exception("proxy cache eviction failed; will retry")
                continue
            if report.evicted:
                logger.info(
                    "evicted %d cached blob(s), %d bytes", report.evicted, report.evicted_bytes
                )

    async def run_once(self) -> EvictReport:
        report = EvictReport()
        cap = self._config.max_bytes
        if cap is None:
            return report
        holders: dict[Digest, list[str]] = defaultdict(list)
        pushed: set[Digest] = set()
        for name in await self._store.catalog.names():
            links = await _links(self._backend, name)
            if mapping.by_local_name(self._config, name) is None:
                pushed.update(links)
            else:
                for digest in links:
                    holders[digest].append(name)
        entries: list[tuple[float, int, Digest]] = []
        for digest in holders.keys() - pushed:
            data = paths.blob_data(digest)
            try:
                stat = await self._backend.stat(data)
            except NotFound:
                continue
            used = await _mtime(self._backend, paths.proxy_access(digest))
            entries.append((used if used is not None else stat.modified, stat.size, digest))
        report.cached_bytes = total = sum(size for _, size, _ in entries)
        now = time.time()
        for _, size, digest in sorted(entries):
            if total <= cap:
                break
            touched = await _mtime(self._backend, paths.blob_touched(digest))
            if touched is not None and now - touched < self._config.evict_grace:
                continue
            for name in holders[digest]:
                await self._backend.delete(paths.layer_link(name, digest))
            await self._backend.delete(paths.blob_data(digest))
            await self._backend.delete(paths.proxy_access(digest))
            total -= size
            report.evicted += 1
            report.evicted_bytes += size
        return report
