"""Copy an image from one registry (or repository) to another without the local store.

Like `skopeo copy docker://A docker://B`: manifests are read from the source; each blob is
HEADed on the destination, mounted when both sides are the same registry, else streamed
from the source GET straight into the destination upload (never buffered whole; the
destination verifies the digest). An index is copied with all its children. Children
first, the tag last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ocispec.digest import Digest, digest_bytes
from ocispec.models import Descriptor, Index, Manifest, ManifestError, parse_manifest
from ocispec.reference import Reference
from puller.progress import NullReporter, Reporter
from regclient.api import Mounted, RegistryClient


class CopyError(Exception):
    """The source cannot be read as an image or index."""


@dataclass
class CopyResult:
    digest: Digest
    copied: list[Digest] = field(default_factory=list)
    skipped: list[Digest] = field(default_factory=list)
    mounted: list[Digest] = field(default_factory=list)
    bytes_sent: int = 0


class Copier:
    def __init__(
        self,
        source: RegistryClient,
        target: RegistryClient,
        *,
        reporter: Reporter | None = None,
        concurrency: int = 4,
    ) -> None:
        self.source = source
        self.target = target
        self.reporter: Reporter = reporter or NullReporter()
        self._semaphore = asyncio.Semaphore(concurrency)

    async def copy(self, src: Reference, dst: Reference) -> CopyResult:
        await self.target.ensure_pinged()
        fetched = await self.source.get_manifest(src.repository, src.identifier)
        result = CopyResult(fetched.digest)
        await self._copy_manifest(src, dst, fetched.data, fetched.media_type, result, top=True)
        return result

    async def _copy_manifest(
        self, src: Reference, dst: Reference, data: bytes, media_type: str,
        result: CopyResult, top: bool,
    ) -> None:  # fmt: skip
        try:
            parsed = parse_manifest(data, media_type or None)
        except ManifestError as exc:
            raise CopyError(f"{src}: {exc}") from None
        if isinstance(parsed, Index):
            for child in parsed.manifests:
                fetched = await self.source.get_manifest(src.repository, str(child.digest))
                await self._copy_manifest(
                    src, dst, fetched.data, fetched.media_type, result, top=False
                )
        else:
            assert isinstance(parsed, Manifest)
            blobs = {b.digest: b for b in (parsed.config, *parsed.layers)}  # each once
            await asyncio.gather(*(self._copy_blob(src, dst, b, result) for b in blobs.values()))
        if top and dst.digest is None:
            target = dst.tag or "latest"
        else:
            target = str(result.digest) if top else str(digest_bytes(data))
        await self.target.put_manifest(dst.repository, target, data, parsed.media_type)

    async def _copy_blob(
        self, src: Reference, dst: Reference, desc: Descriptor, result: CopyResult
    ) -> None:
        async with self._semaphore:
            if await self.target.head_blob(dst.repository, desc.digest) is not None:
                result.skipped.append(desc.digest)
                self.reporter.finish(desc.digest, "Already exists")
                return
            session = None
            if src.registry == dst.registry and src.repository != dst.repository:
                mounted = await self.target.mount_blob(dst.repository, desc.digest, src.repository)
                if isinstance(mounted, Mounted):
                    result.mounted.append(desc.digest)
                    self.reporter.finish(desc.digest, f"Mounted from {src.repository}")
                    return
                session = mounted
            if session is None:
                session = await self.target.start_upload(dst.repository)
            self.reporter.start(desc.digest, desc.size, "Copying")
            async with self.source.get_blob(src.repository, desc.digest) as response:

                async def body() -> AsyncIterator[bytes]:
                    async for chunk in response.aiter_bytes():
                        result.bytes_sent += len(chunk)
                        self.reporter.advance(desc.digest, len(chunk))
                        yield chunk

                await self.target.finish_upload(session, desc.digest, body(), desc.size)
            result.copied.append(desc.digest)
            self.reporter.finish(desc.digest, "Copied")
