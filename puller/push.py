"""Push an image from the local graph store to a registry.

Children first, manifests last, the tag last (go-containerregistry `remote/write.go`).
For each blob: HEAD (all at once), and skip it when the repository has it; else, when the
store knows another repository of the same registry holding it, a cross-repository mount
(201 = done, 202 = the registry opened an ordinary upload session: use it); else an upload:
monolithic (POST, then PUT with the body) for small blobs; for large ones PATCHes of up to
CHUNK_SIZE with the last chunk in the closing PUT (a layer under CHUNK_SIZE: POST, then one
PUT), resuming from the registry's upload status (GET Location -> Range) after a failure.
A layer with `urls` is not uploaded unless asked (puller/foreign.py): the manifest points at them.
Bodies are async iterators of 1 MiB pieces with an explicit Content-Length: one big bytes
body makes httpcore's send loop quadratic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ocispec.digest import Digest
from ocispec.models import Descriptor, Index, Manifest, ManifestError, parse_manifest
from ocispec.reference import Reference
from ocispec.units import human_size
from puller import foreign
from puller.progress import NullReporter, Reporter
from puller.store import GraphStore, NotInStore
from puller.store.images import image_name
from regclient.api import (
    Mounted,
    NotFound,
    RangeNotSatisfiable,
    RegistryClient,
    RegistryError,
    UploadSession,
    UploadUnknown,
)

PIECE = 1 << 20
MONOLITHIC_MAX = 8 << 20  # below this, one PUT; above, chunks that can be resumed
CHUNK_SIZE = 64 << 20  # one PATCH for most layers; under 100 MB proxy body caps
DEFAULT_CONCURRENCY = 4
DEFAULT_RETRIES = 3


class PushError(Exception):
    """The image cannot be pushed (missing locally, upload failed)."""


@dataclass
class PushResult:
    reference: Reference
    digest: Digest
    pushed: list[Digest] = field(default_factory=list)
    skipped: list[Digest] = field(default_factory=list)
    mounted: list[Digest] = field(default_factory=list)
    bytes_sent: int = 0
    foreign: list[Digest] = field(default_factory=list)  # left at their `urls`, not uploaded

    def summary(self) -> str:
        kept = f", {len(self.foreign)} foreign left at their URLs" if self.foreign else ""
        return (
            f"pushed {len(self.pushed)} blobs ({_human(self.bytes_sent)} sent), "
            f"mounted {len(self.mounted)}, skipped {len(self.skipped)} already present{kept}"
        )


def _human(n: int) -> str:
    return human_size(n)


async def file_pieces(
    path: Path, offset: int, length: int, on_piece: Callable[[int], None] | None = None
) -> AsyncIterator[bytes]:
    """`length` bytes of `path` from `offset`, in 1 MiB pieces read in a thread."""
    with path.open("rb") as f:
        f.seek(offset)
        remaining = length
        while remaining > 0:
            piece = await asyncio.to_thread(f.read, min(PIECE, remaining))
            if not piece:
                raise PushError(f"{path} is shorter than its descriptor says")
            remaining -= len(piece)
            if on_piece is not None:
                on_piece(len(piece))
            yield piece


class Pusher:
    def __init__(
        self,
        client: RegistryClient,
        store: GraphStore,
        *,
        reporter: Reporter | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        retries: int = DEFAULT_RETRIES,
        monolithic_max: int = MONOLITHIC_MAX,
        chunk_size: int = CHUNK_SIZE,
        allow_nondistributable: bool | None = None,
    ) -> None:
        """`allow_nondistributable`: upload layers with `urls` too (default:
        PYREG_ALLOW_NONDISTRIBUTABLE; puller/foreign.py)."""
        self.client = client
        self.allow_nondistributable = foreign.allowed(allow_nondistributable)
        self.store = store
        self.reporter: Reporter = reporter or NullReporter()
        self._semaphore = asyncio.Semaphore(concurrency)
        self.retries = retries
        self.monolithic_max = monolithic_max
        self.chunk_size = chunk_size

    async def push(self, ref: Reference, local_name: str | None = None) -> PushResult:
        """Push the image named `local_name` (default: `ref` itself) to `ref`."""
        name = local_name or image_name(ref)
        digest = self.store.images.get(name)
        if digest is None:
            raise PushError(f"no local image named {name}")
        await self.client.ensure_pinged()
        result = PushResult(ref, digest)
        # what the repository now holds, recorded for later mounts in one write at the end
        # (each write is a locked, fsync'd rewrite of the sources file): also on failure
        held: list[Digest] = []
        try:
            await self._push_manifest(ref, digest, result, held, top=True)
        finally:
            if held:
                self.store.sources.record(ref.registry, ref.repository, *held)
        return result

    def _load(self, digest: Digest) -> tuple[bytes, Manifest | Index]:
        try:
            data = self.store.content.read_bytes(digest)
        except NotInStore:
            raise PushError(f"manifest {digest} is not in the local store") from None
        try:
            return data, parse_manifest(data)
        except ManifestError as exc:
            raise PushError(f"local manifest {digest} is invalid: {exc}") from None

    async def _push_manifest(
        self, ref: Reference, digest: Digest, result: PushResult, held: list[Digest], top: bool
    ) -> None:
        data, parsed = self._load(digest)
        if isinstance(parsed, Index):
            for child in parsed.manifests:
                if not self.store.content.has(child.digest):
                    raise PushError(f"index {digest}: child {child.digest} is not in the store")
                await self._push_manifest(ref, child.digest, result, held, top=False)
        else:
            # each distinct blob once: images may repeat a layer
            blobs = {b.digest: b for b in (parsed.config, *parsed.layers)}
            for digest in foreign.kept_as_reference(parsed.layers, self.allow_nondistributable):
                del blobs[digest]
                result.foreign.append(digest)
                self.reporter.finish(digest, "Skipped foreign layer")
            await asyncio.gather(*(self._push_blob(ref, b, result, held) for b in blobs.values()))
        target = str(digest) if not top or ref.digest else (ref.tag or "latest")
        if top and ref.digest is not None and ref.digest != digest:
            raise PushError(f"{ref}: the local image has digest {digest}")
        try:
            await self.client.put_manifest(ref.repository, target, data, parsed.media_type)
        except RegistryError as exc:
            hint = foreign.refusal_hint(exc, parsed, self.allow_nondistributable)
            if hint is not None:
                raise PushError(hint) from exc
            raise
        held.append(digest)

    async def _push_blob(
        self, ref: Reference, desc: Descriptor, result: PushResult, held: list[Digest]
    ) -> None:
        # existence checks are cheap: all at once, not queued behind other blobs' uploads
        # (the connection pool bounds them); only mounts and uploads take a slot
        if await self.client.head_blob(ref.repository, desc.digest) is not None:
            result.skipped.append(desc.digest)
            status = "Layer already exists"
        else:
            async with self._semaphore:
                status = await self._mount_or_upload(ref, desc, result)
        held.append(desc.digest)
        self.reporter.finish(desc.digest, status)

    async def _mount_or_upload(self, ref: Reference, desc: Descriptor, result: PushResult) -> str:
        repo, digest = ref.repository, desc.digest
        try:
            path = self.store.content.path(digest)
        except NotInStore:
            raise PushError(f"blob {digest} is not in the local store") from None
        session: UploadSession | None = None
        for source in self.store.sources.repositories(ref.registry, digest):
            if source == repo:
                continue
            try:
                mounted = await self.client.mount_blob(repo, digest, source)
            except RegistryError:
                continue  # e.g. no pull right on the source: try the next, then upload
            if isinstance(mounted, Mounted):
                result.mounted.append(digest)
                return f"Mounted from {source}"
            session = mounted
            break
        if session is None:
            session = await self.client.start_upload(repo)
        self.reporter.start(digest, desc.size, "Pushing")
        await self._upload(repo, session, desc, path, result)
        result.pushed.append(digest)
        return "Pushed"

    async def _upload(
        self, repo: str, session: UploadSession, desc: Descriptor, path: Path, result: PushResult
    ) -> None:
        size = desc.size

        def sent(n: int) -> None:
            result.bytes_sent += n
            self.reporter.advance(desc.digest, n)

        if size <= self.monolithic_max:
            failures = 0
            while True:
                try:
                    body = file_pieces(path, 0, size, sent)
                    await self.client.finish_upload(session, desc.digest, body, size)
                    return
                except (httpx.TransportError, UploadUnknown) as exc:
                    # small: a fresh session and the whole blob again is simplest
                    failures += 1
                    if failures > self.retries:
                        raise PushError(f"upload of {desc.digest} failed: {exc}") from exc
                    await asyncio.sleep(0.2 * 2 ** (failures - 1))
                    session = await self.client.start_upload(repo)
        # The last (for most layers the only) chunk goes in the closing PUT: one request less
        # per layer, and a registry receiving a whole blob in one PUT publishes it as it
        # arrives (docs/performance.md). Failures resume from the registry's upload status.
        failures = 0
        while True:
            chunk = max(self.chunk_size, session.min_chunk)
            length = size - session.offset
            try:
                body = file_pieces(path, session.offset, min(chunk, length), sent)
                if length <= chunk:
                    await self.client.finish_upload(
                        session, desc.digest, body, length, ranged=session.offset > 0
                    )
                    return
                session = await self.client.patch_chunk(session, body, chunk)
            except (httpx.TransportError, RangeNotSatisfiable, UploadUnknown) as exc:
                failures += 1
                if failures > self.retries:
                    raise PushError(f"upload of {desc.digest} failed: {exc}") from exc
                await asyncio.sleep(0.2 * 2 ** (failures - 1))
                session = await self._resume(repo, session)

    async def _resume(self, repo: str, session: UploadSession) -> UploadSession:
        """Where to go on after a failed request: the registry knows how much it kept. A
        session it no longer knows (expired, or committed before the answer was lost) is
        replaced by a fresh one, from byte 0."""
        try:
            return await self.client.upload_status(session)
        except (UploadUnknown, NotFound):
            return await self.client.start_upload(repo)


async def push(
    client: RegistryClient,
    store: GraphStore,
    ref: Reference,
    *,
    local_name: str | None = None,
    reporter: Reporter | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> PushResult:
    pusher = Pusher(client, store, reporter=reporter, concurrency=concurrency)
    return await pusher.push(ref, local_name)
