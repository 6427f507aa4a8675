"""Copy an image from one registry (or repository) to another without the local store.

Like `skopeo copy docker://A docker://B`: manifests are read from the source; each blob is
HEADed on the destination, mounted when both sides are the same registry, else streamed
from the source GET straight into the destination upload (never buffered whole; the
destination verifies the digest). An index is copied with all its children. Children
first, the tag last. A layer with `urls` is left out (the manifest points at them) unless
`allow_nondistributable`; then it is read from the source registry or, when that lacks it, from
its URLs, verified before its last piece goes (puller/foreign.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ocispec.digest import Digest, DigestMismatch, Verifier, digest_bytes
from ocispec.models import Descriptor, Index, Manifest, ManifestError, parse_manifest
from ocispec.reference import Reference
from puller import foreign
from puller.progress import NullReporter, Reporter
from regclient.api import Mounted, RegistryClient, RegistryError, UploadSession


class CopyError(Exception):
    """The source cannot be read as an image or index."""


@dataclass
class CopyResult:
    digest: Digest
    copied: list[Digest] = field(default_factory=list)
    skipped: list[Digest] = field(default_factory=list)
    mounted: list[Digest] = field(default_factory=list)
    bytes_sent: int = 0
    foreign: list[Digest] = field(default_factory=list)  # left at their `urls`, not copied


class Copier:
    def __init__(
        self,
        source: RegistryClient,
        target: RegistryClient,
        *,
        reporter: Reporter | None = None,
        concurrency: int = 4,
        allow_nondistributable: bool | None = None,
    ) -> None:
        self.allow_nondistributable = foreign.allowed(allow_nondistributable)
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
            for digest in foreign.kept_as_reference(parsed.layers, self.allow_nondistributable):
                del blobs[digest]
                result.foreign.append(digest)
                self.reporter.finish(digest, "Skipped foreign layer")
            await asyncio.gather(*(self._copy_blob(src, dst, b, result) for b in blobs.values()))
        if top and dst.digest is None:
            target = dst.tag or "latest"
        else:
            target = str(result.digest) if top else str(digest_bytes(data))
        try:
            await self.target.put_manifest(dst.repository, target, data, parsed.media_type)
        except RegistryError as exc:
            hint = foreign.refusal_hint(exc, parsed, self.allow_nondistributable)
            if hint is not None:
                raise CopyError(hint) from exc
            raise

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
            source = foreign.LayerSource(
                self.source, src.repository, desc, self.allow_nondistributable
            )
            self.reporter.start(desc.digest, desc.size, "Copying")
            while True:
                if session is None:
                    session = await self.target.start_upload(dst.repository)
                try:
                    await self._stream(source, session, desc, result)
                    break
                except DigestMismatch as exc:
                    if source.current is None:
                        raise  # the source registry's own bytes: nothing else to try
                    source.refused(str(exc))  # a foreign URL: try the next one
                    session = None
            result.copied.append(desc.digest)
            self.reporter.finish(desc.digest, "Copied")

    async def _stream(
        self, source: foreign.LayerSource, session: UploadSession, desc: Descriptor,
        result: CopyResult,
    ) -> None:  # fmt: skip
        async with source.open() as response:

            async def body() -> AsyncIterator[bytes]:
                # each piece goes once the next one arrived; the last only after the digest
                # and size are checked, so wrong bytes never complete the upload
                verifier = Verifier(desc.digest, desc.size)
                held: bytes | None = None
                async for chunk in response.aiter_bytes():
                    verifier.update(chunk)
                    if held:
                        yield held
                    held = chunk
                    result.bytes_sent += len(chunk)
                    self.reporter.advance(desc.digest, len(chunk))
                verifier.verify()
                if held:
                    yield held

            await self.target.finish_upload(session, desc.digest, body(), desc.size)
