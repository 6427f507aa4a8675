"""Foreign (non-distributable) layers: where the client fetches them, and whether it uploads them.

A layer is foreign when its media type says non-distributable
(`application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`,
`application/vnd.oci.image.layer.nondistributable.v1.tar[+gzip|+zstd]`) or its descriptor
carries `urls` (Windows base layers were the common case).

Pull (and copy's reads): the registry is asked first, as registries may hold such layers. When
it has not got the layer, the descriptor's `urls` are tried in order, only with
`--allow-nondistributable` (or PYREG_ALLOW_NONDISTRIBUTABLE=1), only http(s) URLs; the bytes go
through the same verified ingest as a registry download (digest and size checked while they
stream, the size caps of the unpack apply). A URL that answers with other bytes is not asked
again; the next one is. The requests go through the registry client, whose auth flow sets
`Authorization` only on the registry's own origin (regclient/auth.py): credentials never reach
those URLs (CVE-2020-15157 was containerd sending them there).

Push and copy (as containers/image, which does not copy a layer that has URLs to a registry):
a layer with `urls` is not uploaded; the manifest keeps its descriptor, so the image is pushed
as a reference to those URLs. `--allow-nondistributable` uploads it too (containers/image's
`copy.Options.DownloadForeignLayers`, docker's `allow-nondistributable-artifacts`, containerd's
`--allow-non-distributable-blobs`), leaving the manifest byte for byte as it was (its digest,
media types and `urls` unchanged), so pulls find the layer in the registry.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from ocispec.models import Descriptor, Index, Manifest
from regclient.api import NotFound, RegistryClient

NONDISTRIBUTABLE = frozenset(
    {mt.DOCKER_FOREIGN_LAYER, mt.OCI_LAYER_ND, mt.OCI_LAYER_ND_GZIP, mt.OCI_LAYER_ND_ZSTD}
)
ENV = "PYREG_ALLOW_NONDISTRIBUTABLE"
FLAG = "--allow-nondistributable"
_TRUE = frozenset({"1", "true", "yes", "on"})


class ForeignLayerError(Exception):
    """A foreign layer that cannot be had: not in the registry, and not allowed or not
    available from its URLs."""


def is_foreign(desc: Descriptor) -> bool:
    return desc.media_type in NONDISTRIBUTABLE or bool(desc.urls)


def kept_as_reference(layers: Sequence[Descriptor], allow: bool) -> set[Digest]:
    """Layers a push or copy leaves out (the manifest points at their `urls`)."""
    return set() if allow else {d.digest for d in layers if d.urls}


def refusal_hint(exc: Exception, parsed: Manifest | Index, allow: bool) -> str | None:
    """For a manifest PUT the registry refused: the message naming the foreign layers the
    manifest left at their URLs (a likely reason), or None when it left none."""
    kept = kept_as_reference([] if isinstance(parsed, Index) else parsed.layers, allow)
    return refused_references(exc, sorted(kept, key=str)) if kept else None


def refused_references(exc: Exception, kept: Sequence[Digest]) -> str:
    """The message for a manifest the registry refused while it points at foreign layers."""
    layers = "1 foreign layer at its" if len(kept) == 1 else f"{len(kept)} foreign layers at their"
    return (
        f"{exc}; the manifest leaves {layers} URLs, which the registry may refuse "
        f"(distribution does unless validation.manifests.urls.allow lets them through): "
        f"{FLAG} uploads them"
    )


def allowed(flag: bool | None = None) -> bool:
    """The flag when given, else PYREG_ALLOW_NONDISTRIBUTABLE."""
    if flag:
        return True
    return os.environ.get(ENV, "").strip().lower() in _TRUE


def usable_urls(desc: Descriptor) -> list[str]:
    """The descriptor's http(s) URLs with a host, in order."""
    out = []
    for url in desc.urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.scheme in ("http", "https") and parts.hostname:
            out.append(url)
    return out


@dataclass
class LayerSource:
    """Where one blob's bytes come from: the registry, then (when allowed) its URLs.

    `open(offset)` gives a streaming response; after bytes from it failed verification, the
    caller says `refused(reason)` and the next `open` skips that URL."""

    client: RegistryClient
    repository: str
    desc: Descriptor
    allow: bool = False
    current: str | None = None  # the URL serving the open response; None: the registry
    failed: dict[str, str] = field(default_factory=dict)  # URL -> why it is not asked again
    _registry_lacks: bool = False

    @asynccontextmanager
    async def open(self, offset: int = 0) -> AsyncIterator[httpx.Response]:
        async with AsyncExitStack() as stack:
            response = await self._open(stack, offset)
            yield response

    async def _open(self, stack: AsyncExitStack, offset: int) -> httpx.Response:
        self.current = None
        if not self._registry_lacks:
            try:
                return await stack.enter_async_context(
                    self.client.get_blob(self.repository, self.desc.digest, offset)
                )
            except NotFound:
                if not is_foreign(self.desc):
                    raise
                self._registry_lacks = True
        return await self._from_urls(stack, offset)

    def refused(self, reason: str) -> None:
        if self.current is not None:
            self.failed[self.current] = reason

    async def _from_urls(self, stack: AsyncExitStack, offset: int) -> httpx.Response:
        digest = self.desc.digest
        urls = usable_urls(self.desc)
        if not self.allow:
            where = f" (its URLs: {', '.join(self.desc.urls)})" if self.desc.urls else ""
            raise ForeignLayerError(
                f"layer {digest} is non-distributable and the registry does not hold it"
                f"{where}; pass {FLAG} (or set {ENV}=1) to fetch it from its URLs"
            )
        if not urls:
            listed = ", ".join(self.desc.urls) or "none"
            raise ForeignLayerError(
                f"layer {digest} is non-distributable, the registry does not hold it and it has "
                f"no http(s) URL to fetch it from (urls: {listed}); ask the image's publisher "
                "for a registry that holds it"
            )
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        for url in urls:
            if url in self.failed:
                continue
            attempt = AsyncExitStack()  # closed at once when this URL is not the one
            try:
                response = await attempt.enter_async_context(
                    self.client.http.stream("GET", url, headers=headers)
                )
            except httpx.TransportError as exc:
                await attempt.aclose()
                self.failed[url] = str(exc) or type(exc).__name__
                continue
            if response.status_code in (200, 206):
                stack.push_async_exit(attempt)
                self.current = url
                return response
            await attempt.aclose()
            self.failed[url] = f"HTTP {response.status_code}"
        tried = "; ".join(f"{u}: {why}" for u, why in self.failed.items())
        raise ForeignLayerError(
            f"layer {digest} is non-distributable, the registry does not hold it and none of "
            f"its URLs served it ({tried})"
        )
