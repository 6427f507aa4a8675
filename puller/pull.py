"""Pull an image from a registry into the local graph store.

Order (docker's): resolve the reference to a manifest; from an index pick the platform;
store the manifest; fetch the config and the layers concurrently (bounded), skipping blobs
the store already has; every blob is verified (digest and size) while it streams into a
resumable `Ingest`, so a broken download continues with `Range` from the bytes already on
disk, in this run (retries) or the next one (the partial file is kept). Each layer is
registered in the layer graph (unpacked, diffID checked) while its blob downloads, reading the
partial file as it grows (store/follow.py: the layer is published only after the blob's digest
checked); after a retry or a reset it is unpacked from the stored blob instead. Layers unpack
side by side; the name is recorded last, so it never points at an incomplete image.

Unpacking stops at the size caps (store/limits.py: per layer and for the whole pull). A pull
holds a lease on every blob and layer it uses, taken before it looks for them (store/leases.py),
so a concurrent `pyreg prune` keeps them; and before recording the name it checks that all of
them are still in the store, failing loudly otherwise.

When a tag resolves to an index, the name records the chosen platform's manifest (as podman
does); the index itself is kept in the content store.
"""

from __future__ import annotations

import asyncio
import functools
import platform as host_platform
import re
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from ocispec import mediatypes as mt
from ocispec.digest import Digest, DigestMismatch
from ocispec.models import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    ManifestError,
    Platform,
    chain_ids,
    parse_manifest,
)
from ocispec.reference import Reference
from puller import foreign
from puller.progress import NullReporter, Reporter
from puller.store import GraphStore, Lease, StoreError
from puller.store.follow import Abandoned, GrowingFile
from puller.store.images import image_name
from puller.store.limits import SizeCapExceeded, SizeCaps, UnpackBudget
from puller.store.unpack import compression_of
from regclient.api import RegistryClient

DEFAULT_CONCURRENCY = 4
DEFAULT_RETRIES = 5
#: an image config is read whole into memory; real ones are kilobytes (a long history: ~1 MiB)
MAX_CONFIG_BYTES = 32 * 1024 * 1024
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# errors after which a download is worth resuming
RESUMABLE = (httpx.TransportError, httpx.StreamError, ConnectionError)

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class _Follow:
    """A layer's download, read along by its unpack (store/follow.py)."""

    file: GrowingFile
    started: asyncio.Event  # attached to its download, or given up: the unpack may start


class PullError(Exception):
    """The image cannot be pulled (no matching platform, not an image, download failed)."""


def host_platform_spec() -> Platform:
    machine = host_platform.machine().lower()
    arch = _ARCH.get(machine, machine)
    variant = "v7" if machine == "armv7l" else ("v8" if arch == "arm64" else None)
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    return Platform(os_name, arch, variant)


def choose_platform(index: Index, wanted: Platform) -> Descriptor:
    """The index entry for `wanted`; a variant is matched only when asked for or present."""
    candidates = [
        d
        for d in index.manifests
        if d.platform is not None
        and d.platform.os == wanted.os
        and d.platform.architecture == wanted.architecture
        and d.media_type in mt.IMAGE_MANIFESTS
    ]
    exact = [d for d in candidates if d.platform and d.platform.variant == wanted.variant]
    if exact:
        return exact[0]
    # no variant asked: any; arm64 images often omit the implied "v8"
    if candidates and (
        wanted.variant is None or (wanted.architecture, wanted.variant) == ("arm64", "v8")
    ):
        loose = [d for d in candidates if d.platform and not d.platform.variant]
        return (loose or candidates)[0]
    return _no_platform(index, wanted)


def _no_platform(index: Index, wanted: Platform) -> Descriptor:
    offered = sorted({str(d.platform) for d in index.manifests if d.platform is not None})
    raise PullError(f"no image for platform {wanted} (offered: {', '.join(offered) or 'none'})")


@dataclass
class PullResult:
    reference: Reference
    name: str  # what was recorded in the image index
    digest: Digest  # the image manifest's digest (what `name` points at)
    resolved_digest: Digest  # the digest the reference resolved to (maybe an index)
    downloaded: list[Digest] = field(default_factory=list)
    existing: list[Digest] = field(default_factory=list)
    bytes_downloaded: int = 0


class Puller:
    def __init__(
        self,
        client: RegistryClient,
        store: GraphStore,
        *,
        reporter: Reporter | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.2,
        caps: SizeCaps | None = None,
        checkpoint: Callable[[str], Awaitable[None]] | None = None,
        allow_nondistributable: bool | None = None,
    ) -> None:
        """`caps`: uncompressed size caps (default: from the environment, limits.py).
        `checkpoint(step)` is awaited between steps ("fetched": everything is in the store,
        the name is not recorded yet); a seam for tests to act in between.
        `allow_nondistributable`: fetch foreign layers the registry lacks from their `urls`
        (puller/foreign.py; default: PYREG_ALLOW_NONDISTRIBUTABLE)."""
        self.client = client
        self.allow_nondistributable = foreign.allowed(allow_nondistributable)
        self.caps = caps
        self.checkpoint = checkpoint
        self.store = store
        self.reporter: Reporter = reporter or NullReporter()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._unpacks: ThreadPoolExecutor | None = None
        self._concurrency = concurrency
        self._pulls = 0
        self.retries = retries
        self.backoff = backoff

    async def pull(
        self, ref: Reference, platform: Platform | None = None, *, name: str | None = None
    ) -> PullResult:
        """`name`: record the image under it instead of `ref`'s (a mirror served `ref`)."""
        budget = UnpackBudget(self.caps or SizeCaps.from_env())
        lease = await asyncio.to_thread(self.store.leases.open)
        # unpacks that follow their downloads; every one is finished or given up by the
        # time _pull returns, so the shutdown waits only for unpacks already under way
        # (shared by concurrent pulls of this Puller, shut down by the last one)
        if self._unpacks is None:
            self._unpacks = ThreadPoolExecutor(max(self._concurrency, 1), "pyreg-unpack")
        pool = self._unpacks
        self._pulls += 1
        try:
            return await self._pull(ref, platform, lease, budget, name)
        finally:
            self._pulls -= 1
            if self._pulls == 0:
                self._unpacks = None
                await asyncio.to_thread(pool.shutdown)
            lease.close()

    async def _pull(
        self,
        ref: Reference,
        platform: Platform | None,
        lease: Lease,
        budget: UnpackBudget,
        name: str | None = None,
    ) -> PullResult:
        repo = ref.repository
        fetched = await self.client.get_manifest(repo, ref.identifier)
        resolved = fetched.digest
        parsed = _parse(fetched.data, fetched.media_type)
        data, digest = fetched.data, fetched.digest
        await asyncio.to_thread(lease.add, [resolved])
        if isinstance(parsed, Index):
            await self._store_bytes(data, digest)
            entry = choose_platform(parsed, platform or host_platform_spec())
            child = await self.client.get_manifest(repo, str(entry.digest))
            parsed = _parse(child.data, child.media_type)
            if not isinstance(parsed, Manifest):
                raise PullError(f"{ref}: the index entry for {entry.platform} is not an image")
            data, digest = child.data, child.digest
            await asyncio.to_thread(lease.add, [digest])
        result = PullResult(ref, name or image_name(ref), digest, resolved)
        complete = False
        try:
            chains = await self._fetch_image(ref, parsed, result, lease, budget)
            await self._store_bytes(data, digest)
            complete = True
        finally:
            # Where each blob came from (later pushes mount from there): one locked, fsync'd
            # write for the whole pull, also for what a failed pull did fetch.
            manifests = (resolved, digest) if complete else ()
            held = (*result.existing, *result.downloaded, *manifests)
            self.store.sources.record(ref.registry, repo, *held)
        if self.checkpoint is not None:
            await self.checkpoint("fetched")
        blobs = [resolved, digest, parsed.config.digest, *(d.digest for d in parsed.layers)]
        await asyncio.to_thread(self._verify, ref, blobs, chains)
        self.store.images.set(result.name, digest)  # last: the name points at a whole image
        return result

    def _verify(self, ref: Reference, blobs: list[Digest], chains: list[Digest]) -> None:
        """Everything the name will reach is in the store (a lease keeps a concurrent prune
        from removing it; this makes sure nothing else did either)."""
        missing = [f"blob {d}" for d in dict.fromkeys(blobs) if not self.store.content.has(d)]
        missing += [f"layer {c}" for c in chains if self.store.layers.get(c) is None]
        if missing:
            raise PullError(
                f"{ref}: {missing[0]} vanished from the local store during the pull"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + "; the image is not recorded: pull it again"
            )

    async def _store_bytes(self, data: bytes, digest: Digest) -> None:
        if not self.store.content.has(digest):
            await asyncio.to_thread(self.store.content.write_bytes, data, digest)

    async def _fetch_image(
        self,
        ref: Reference,
        manifest: Manifest,
        result: PullResult,
        lease: Lease,
        budget: UnpackBudget,
    ) -> list[Digest]:
        """Fetch the config and layers, register the layers; the chainIDs (none for an
        artifact that is not an image)."""
        is_image = manifest.config.media_type in mt.CONFIGS
        if is_image and manifest.config.size > MAX_CONFIG_BYTES:
            # checked before downloading: a hostile registry's giant config (say, millions of
            # diff_ids) would otherwise be downloaded and then parsed in memory
            raise PullError(
                f"{ref}: image config of {manifest.config.size} bytes "
                f"(more than {MAX_CONFIG_BYTES}) refused"
            )
        await asyncio.to_thread(
            lease.add, [manifest.config.digest, *(d.digest for d in manifest.layers)]
        )
        # one task per distinct blob: images may repeat a layer (e.g. empty ones)
        tasks: dict[Digest, asyncio.Task[None]] = {}
        # layers unpack from their downloads as they arrive (not when compression is sniffed:
        # that seeks back); the config is never followed
        follows = {
            d.digest: _Follow(GrowingFile(), asyncio.Event())
            for d in manifest.layers
            if is_image and compression_of(d.media_type) in ("gzip", "zstd", "")
        }
        for desc in (manifest.config, *manifest.layers):
            if desc.digest not in tasks:
                follow = follows.get(desc.digest) if desc is not manifest.config else None
                tasks[desc.digest] = asyncio.create_task(
                    self._fetch_blob(ref, desc, result, follow)
                )
        registrations: list[asyncio.Task[None]] = []
        try:
            await tasks[manifest.config.digest]  # the config: needed for the diff_ids
            if not is_image:
                await asyncio.gather(*tasks.values())
                return []
            config = ImageConfig.parse(
                await asyncio.to_thread(self.store.content.read_bytes, manifest.config.digest)
            )
            if len(config.diff_ids) != len(manifest.layers):
                raise PullError(
                    f"{ref}: the config lists {len(config.diff_ids)} layers, "
                    f"the manifest {len(manifest.layers)}"
                )
            chains = chain_ids(config.diff_ids)
            await asyncio.to_thread(lease.add, (), chains)
            parents: list[Digest | None] = [None, *chains[:-1]]
            # each layer unpacks as soon as its blob is in; the graph does not need the
            # parent registered first, so layers unpack side by side
            registrations = []
            for layer, diff_id, chain, parent in zip(
                manifest.layers, config.diff_ids, chains, parents, strict=True
            ):
                # one layer blob may appear twice: only its first registration follows it
                follow = follows.pop(layer.digest, None)
                registrations.append(
                    asyncio.create_task(
                        self._register(
                            tasks[layer.digest], parent, diff_id, chain, layer, budget, follow
                        )
                    )
                )
            await asyncio.gather(*registrations)
            return chains
        except ManifestError as exc:
            raise PullError(f"{ref}: {exc}") from None
        finally:
            for unused in follows.values():
                unused.file.abandon()  # not followed by a registration (none, or a repeat)
            # on failure, stop the rest (a layer already unpacking in a thread finishes)
            pending = [*tasks.values(), *registrations]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _register(
        self,
        download: asyncio.Task[None],
        parent: Digest | None,
        diff_id: Digest,
        chain: Digest,
        layer: Descriptor,
        budget: UnpackBudget,
        follow: _Follow | None = None,
    ) -> None:
        if follow is not None and self.store.layers.get(chain) is None:
            await follow.started.wait()  # no thread waits for a download still queued
            try:
                await self._register_from(parent, diff_id, layer, budget, follow.file)
            except Abandoned:
                pass  # the download was retried, reset or failed: see below
            else:
                await asyncio.shield(download)
                return
        elif follow is not None:
            follow.file.abandon()
        await asyncio.shield(download)  # shared by repeated layers: do not cancel it here
        if self.store.layers.get(chain) is None:
            await self._register_from(parent, diff_id, layer, budget, None)

    async def _register_from(
        self,
        parent: Digest | None,
        diff_id: Digest,
        layer: Descriptor,
        budget: UnpackBudget,
        follow: GrowingFile | None,
    ) -> None:
        register = functools.partial(
            self.store.layers.register,
            parent,
            diff_id,
            layer.digest,
            layer.media_type,
            budget,
            follow,
        )
        try:
            if follow is None:
                await asyncio.to_thread(register)
            else:
                # its own threads: one waiting for its download must not hold up the default
                # pool, which the downloads' ingest opens and commits need
                await asyncio.get_running_loop().run_in_executor(self._unpacks, register)
        except SizeCapExceeded as exc:  # names the layer itself
            raise PullError(str(exc)) from exc
        except Abandoned:
            raise
        except StoreError as exc:  # bad compression, diffID mismatch, unsafe tar entry
            raise PullError(f"layer {layer.digest}: {exc}") from exc

    async def _fetch_blob(
        self, ref: Reference, desc: Descriptor, result: PullResult, follow: _Follow | None
    ) -> None:
        try:
            await self._fetch_blob_once(ref, desc, result, follow)
        finally:
            if follow is not None:  # a no-op once the download finished it
                follow.file.abandon()
                follow.started.set()

    async def _fetch_blob_once(
        self, ref: Reference, desc: Descriptor, result: PullResult, follow: _Follow | None
    ) -> None:
        content = self.store.content
        if content.has(desc.digest):
            result.existing.append(desc.digest)
            self.reporter.finish(desc.digest, "Already exists")
            return
        source = foreign.LayerSource(self.client, ref.repository, desc, self.allow_nondistributable)
        async with self._semaphore:
            attempt = 0
            while True:
                try:
                    await self._download(source, result, follow)
                    break
                except (*RESUMABLE, DigestMismatch) as exc:
                    # a mismatch discarded the partial: the next try starts from 0 (and
                    # skips a foreign URL that served those bytes)
                    if isinstance(exc, DigestMismatch):
                        source.refused(str(exc))
                    if follow is not None:
                        follow.file.abandon()  # unpacked from the stored blob instead
                    attempt += 1
                    if attempt > self.retries:
                        raise PullError(f"download of {desc.digest} failed: {exc}") from exc
                    self.reporter.start(desc.digest, desc.size, f"Retrying ({attempt})")
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        result.downloaded.append(desc.digest)
        self.reporter.finish(desc.digest, "Pull complete")

    async def _download(
        self, source: foreign.LayerSource, result: PullResult, follow: _Follow | None
    ) -> None:
        """Download the rest of one blob into its ingest, counting the bytes received; a
        `follow` reads along (from the partial file) and ends once the blob is committed."""
        desc = source.desc
        ingest = await asyncio.to_thread(self.store.content.ingest, desc.digest, desc.size)
        try:
            offset = ingest.offset
            if follow is not None:
                if offset < desc.size:  # else stored already, or complete: nothing to follow
                    follow.file.attach(ingest.partial, offset)
                follow.started.set()
            self.reporter.start(desc.digest, desc.size, "Downloading")
            if offset < desc.size:
                async with source.open(offset) as response:
                    if offset and not _resumes_at(response, offset):
                        if follow is not None:
                            follow.file.abandon()  # it read bytes that are now rewritten
                        ingest.reset()  # the server sent the whole blob again
                        offset = 0
                    self.reporter.advance(desc.digest, offset)
                    async for chunk in response.aiter_bytes():
                        ingest.write(chunk)
                        if follow is not None:
                            follow.file.grew(ingest.offset)
                        result.bytes_downloaded += len(chunk)
                        self.reporter.advance(desc.digest, len(chunk))
            await asyncio.to_thread(ingest.commit)
            if follow is not None:
                follow.file.finish()  # verified and stored: the reader may reach the end
        finally:
            ingest.close()  # keeps the partial for the next try or the next run


def _resumes_at(response: httpx.Response, offset: int) -> bool:
    if response.status_code != 206:
        return False
    match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
    return match is not None and int(match.group(1)) == offset


def _parse(data: bytes, media_type: str) -> Manifest | Index:
    try:
        return parse_manifest(data, media_type or None)
    except ManifestError as exc:
        raise PullError(f"not a manifest: {exc}") from None


async def pull(
    client: RegistryClient,
    store: GraphStore,
    ref: Reference,
    *,
    platform: Platform | None = None,
    reporter: Reporter | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    retries: int = DEFAULT_RETRIES,
    caps: SizeCaps | None = None,
) -> PullResult:
    puller = Puller(
        client, store, reporter=reporter, concurrency=concurrency, retries=retries, caps=caps
    )
    return await puller.pull(ref, platform)
