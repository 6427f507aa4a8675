"""The pull-through cache: makes a mirrored repository's local copy current enough to answer.

Handlers call in before they read the local stores (registry/proxy/hooks.py); what is cached
is stored as ordinary repository content (tags, revisions, links, blobs), so the normal read
path serves it, access rules apply to it, and GC treats its tags like any other tags.

- Manifest by digest: immutable; fetched once when missing.
- Manifest by tag: answered locally within the upstream's `tag_ttl` of the last confirmation;
  after it, a HEAD by tag asks the upstream for its digest (no body, and no Docker Hub pull
  counted) and the manifest is fetched by digest only when it changed. When the upstream fails
  and a copy is cached, the copy answers (stale-if-error, logged and counted).
- Blob: immutable; a miss is one upstream GET per process (single-flight) and, through a lease
  in storage, per set of replicas; the bytes stream to the clients while they are written and
  verified (registry/proxy/blobfetch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from ocispec.digest import Digest
from regclient.api import RegistryClient
from registry import errors
from registry.proxy import upstream as up
from registry.proxy.blobfetch import BlobFetch
from registry.proxy.config import ProxyConfig, Upstream
from registry.proxy.evict import AccessLog, Evictor
from registry.proxy.lease import Lease
from registry.proxy.mapping import Target
from registry.proxy.singleflight import SingleFlight
from registry.proxy.stats import ProxyStats
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.base import StorageError

logger = logging.getLogger("registry.proxy")

LEASE_POLL = 0.25  # seconds between looks at a blob another replica is fetching
STALE_RETRY = 30.0  # seconds a tag served stale waits before its upstream is asked again


@dataclass(frozen=True, slots=True)
class Checked:
    at: float  # time.time() of the last answer from the upstream (or of its failure)
    digest: Digest
    stale: bool  # the upstream failed then: the tag is served stale until asked again

    def fresh_until(self, tag_ttl: float) -> float:
        return self.at + (STALE_RETRY if self.stale else tag_ttl)


class ProxyCache:
    def __init__(self, config: ProxyConfig, store: RegistryStore) -> None:
        self.config = config
        self.store = store
        self.stats = ProxyStats()
        self.owner = uuid.uuid4().hex  # this process, in leases
        self._clients: dict[str, RegistryClient] = {}
        self._manifests: SingleFlight[None] = SingleFlight()
        self._blobs: dict[tuple[str, Digest], BlobFetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.access = AccessLog(store.backend)
        self.evictor = Evictor(config, store)

    def start(self) -> None:
        """Background work: eviction passes when a size cap is configured."""
        if self.config.max_bytes is not None:
            self._spawn(self.evictor.run_forever())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def client(self, upstream: Upstream) -> RegistryClient:
        client = self._clients.get(upstream.name)
        if client is None:
            client = self._clients[upstream.name] = up.open_client(upstream)
        return client

    async def local_repository_exists(self, name: str) -> bool:
        try:
            return await self.store.catalog.exists(name)
        except StorageError:
            return False  # the read path will report the outage itself

    def _failed(self, upstream: Upstream, what: str, exc: BaseException) -> None:
        self.stats.upstream_errors += 1
        logger.warning("upstream %s: %s failed: %s", upstream.name, what, exc)

    # -- manifests ------------------------------------------------------------------------------

    async def ensure_manifest(self, target: Target, reference: Digest | str) -> None:
        """Make `reference` answerable from the local store, or raise the client's error."""
        manifests = self.store.manifests
        if isinstance(reference, Digest):
            if await manifests.has(target.local, reference):
                self.stats.hits += 1
                return
            key = ("digest", target.local, str(reference))
            await self._manifests.do(key, lambda: self._fetch_by_digest(target, reference))
            return
        checked = await self._checked(target.local, reference)
        if checked is not None and time.time() < checked.fresh_until(target.upstream.tag_ttl):
            if await manifests.has(target.local, checked.digest):
                if checked.stale:
                    self.stats.stale_serves += 1
                else:
                    self.stats.hits += 1
                return
        key = ("tag", target.local, reference)
        await self._manifests.do(key, lambda: self._revalidate(target, reference))

    async def _fetch_by_digest(self, target: Target, digest: Digest) -> None:
        if await self.store.manifests.has(target.local, digest):
            return  # fetched by a flight that ended just before this one began
        client = self.client(target.upstream)
        self.stats.upstream_requests += 1
        try:
            fetched = await client.get_manifest(target.remote, str(digest))
        except up.FAILURES as exc:
            if up.is_not_found(exc):
                raise errors.MANIFEST_UNKNOWN(detail={"digest": str(digest)}) from None
            self._failed(target.upstream, f"manifest {target.remote}@{digest}", exc)
            raise up.as_client_error(target.upstream, exc) from None
        self.stats.misses += 1
        self.stats.upstream_bytes += len(fetched.data)
        await self._store_manifest(target, digest, fetched.data, fetched.media_type)

    async def _revalidate(self, target: Target, tag: str) -> None:
        """Ask the upstream what `tag` is now; fetch the manifest only if it changed."""
        local: Digest | None = None
        with contextlib.suppress(errors.MANIFEST_UNKNOWN):
            local = await self.store.tags.resolve(target.local, tag)
        if local is not None and not await self.store.manifests.has(target.local, local):
            local = None
        client = self.client(target.upstream)
        self.stats.upstream_requests += 1
        try:
            info = await client.head_manifest(target.remote, tag)
            if info is None:
                raise errors.MANIFEST_UNKNOWN(detail={"tag": tag})
            if info.digest is not None and info.digest == local:
                self.stats.hits += 1
                await self._mark_checked(target.local, tag, local)
                return
            fetched = await client.get_manifest(
                target.remote, str(info.digest) if info.digest is not None else tag
            )
        except up.FAILURES as exc:
            if up.is_not_found(exc):
                raise errors.MANIFEST_UNKNOWN(detail={"tag": tag}) from None
            self._failed(target.upstream, f"manifest {target.remote}:{tag}", exc)
            if local is not None:
                self.stats.stale_serves += 1
                logger.warning(
                    "serving cached %s:%s (%s) past its TTL: upstream %s failed",
                    target.local,
                    tag,
                    local,
                    target.upstream.name,
                )
                # ask again only after STALE_RETRY: a down upstream must not cost every pull
                # its connect timeouts
                await self._mark_checked(target.local, tag, local, stale=True)
                return
            raise up.as_client_error(target.upstream, exc) from None
        self.stats.misses += 1
        self.stats.upstream_bytes += len(fetched.data)
        await self._store_manifest(target, tag, fetched.data, fetched.media_type)
        await self._mark_checked(target.local, tag, fetched.digest)

    async def _store_manifest(
        self, target: Target, reference: Digest | str, data: bytes, media_type: str
    ) -> None:
        try:
            await self.store.manifests.put(
                target.local,
                reference,
                data,
                media_type or None,
                require_references=False,
                mirror=True,
            )
        except (errors.MANIFEST_INVALID, errors.DIGEST_INVALID) as exc:
            # what the upstream sent is not a manifest this registry can store: its fault
            self._failed(target.upstream, f"manifest {target.remote}:{reference}", exc)
            raise errors.UPSTREAM_ERROR(
                f"upstream {target.upstream.name} sent a manifest this registry cannot store: "
                f"{exc.message}",
                detail={"upstream": target.upstream.name, "reference": str(reference)},
            ) from None

    async def _checked(self, name: str, tag: str) -> Checked | None:
        """When `tag` was last confirmed with the upstream (or found stale), to which digest."""
        try:
            raw = json.loads(await self.store.backend.get(paths.proxy_tag_checked(name, tag)))
            return Checked(float(raw["checked"]), Digest.parse(raw["digest"]), bool(raw["stale"]))
        except (StorageError, ValueError, KeyError, TypeError):
            return None

    async def _mark_checked(self, name: str, tag: str, digest: Digest, stale: bool = False) -> None:
        body = {"checked": time.time(), "digest": str(digest), "stale": stale}
        await self.store.backend.put(paths.proxy_tag_checked(name, tag), json.dumps(body).encode())

    # -- blobs ----------------------------------------------------------------------------------

    async def blob_is_local(self, target: Target, digest: Digest) -> bool:
        """The blob can be served from storage (linking content another repository holds
        once the upstream confirms this repository has it: never a private blob by digest)."""
        blobs = self.store.blobs
        if await blobs.is_linked(target.local, digest):  # one request: cached pulls stay cheap
            self.stats.hits += 1
            if self.config.max_bytes is not None:
                await self.access.touch(digest)
            return True
        if not await blobs.exists(digest):
            return False
        if await self.upstream_blob_size(target, digest) is None:
            raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)})
        await blobs.link(target.local, digest)
        self.stats.hits += 1
        return True

    async def upstream_blob_size(self, target: Target, digest: Digest) -> int | None:
        """HEAD at the upstream: the size, None when it does not have the blob."""
        self.stats.upstream_requests += 1
        try:
            return await self.client(target.upstream).head_blob(target.remote, digest)
        except up.FAILURES as exc:
            self._failed(target.upstream, f"HEAD blob {target.remote}@{digest}", exc)
            raise up.as_client_error(target.upstream, exc) from None

    def blob_fetch(self, target: Target, digest: Digest) -> BlobFetch:
        """The fetch of this blob in flight in this process, started if there is none."""
        key = (target.local, digest)
        fetch = self._blobs.get(key)
        if fetch is None:
            fetch = self._blobs[key] = BlobFetch()
            self._spawn(self._fetch_blob(target, digest, fetch))
        return fetch

    async def _fetch_blob(self, target: Target, digest: Digest, fetch: BlobFetch) -> None:
        lease = Lease(
            self.store.backend, paths.proxy_lease(digest), self.config.lease_ttl, self.owner
        )
        keeper: asyncio.Task[None] | None = None
        try:
            while not await lease.acquire():
                # Another replica is fetching it: wait for the blob to appear (or its lease
                # to lapse, when that replica died), instead of a second upstream request.
                if await self.store.blobs.exists(digest):
                    await self._adopt(target, digest)
                    fetch.stored_elsewhere()
                    return
                await asyncio.sleep(LEASE_POLL)
            keeper = asyncio.create_task(lease.keep())
            await self._download(target, digest, fetch)
        except BaseException as exc:
            fetch.failed(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            with contextlib.suppress(StorageError):
                await lease.release()
            self._blobs.pop((target.local, digest), None)

    async def _adopt(self, target: Target, digest: Digest) -> None:
        """Serve a blob someone else put in storage: already linked here by the fetch that
        stored it, or linked once the upstream confirms this repository has it (the same
        digest may have come in through another mirrored repository)."""
        if await self.store.blobs.is_linked(target.local, digest):
            return
        if await self.upstream_blob_size(target, digest) is None:
            raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)})
        await self.store.blobs.link(target.local, digest)

    async def _download(self, target: Target, digest: Digest, fetch: BlobFetch) -> None:
        if await self.store.blobs.exists(digest):
            # published meanwhile (a lapsed lease, a fetch that just finished)
            await self._adopt(target, digest)
            fetch.stored_elsewhere()
            return
        client = self.client(target.upstream)
        self.stats.upstream_requests += 1
        self.stats.misses += 1
        try:
            async with client.get_blob(target.remote, digest) as response:
                raw_size = response.headers.get("content-length")
                size = int(raw_size) if raw_size and raw_size.isdigit() else None
                if not fetch.ready.done():
                    fetch.ready.set_result(size)

                async def counted() -> AsyncIterator[bytes]:
                    async for piece in response.aiter_bytes():
                        self.stats.upstream_bytes += len(piece)
                        yield piece

                await self.store.uploads.put_monolithic(
                    target.local,
                    digest,
                    fetch.tee(counted()),
                    size,
                )
        except up.FAILURES as exc:
            if up.is_not_found(exc):
                raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)}) from None
            self._failed(target.upstream, f"blob {target.remote}@{digest}", exc)
            raise up.as_client_error(target.upstream, exc) from None
        except (errors.DIGEST_INVALID, errors.SIZE_INVALID) as exc:
            # the upstream sent other bytes than the digest names: nothing was stored
            self._failed(target.upstream, f"blob {target.remote}@{digest}", exc)
            raise errors.UPSTREAM_ERROR(
                f"upstream {target.upstream.name} sent content that does not match {digest}",
                detail={"upstream": target.upstream.name, "digest": str(digest)},
            ) from None
        await fetch.succeeded()
