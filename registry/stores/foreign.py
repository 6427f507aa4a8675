"""Foreign (non-distributable) layers: which descriptors a manifest PUT may leave out of
storage, and which `urls` it accepts for them.

As distribution does (`registry/storage/ocimanifesthandler.go`, `schema2manifesthandler.go`):
- in an OCI image manifest, a layer that carries `urls` need not be in the registry; clients
  fetch it from those URLs (its media type may say non-distributable or not);
- in a Docker schema 2 manifest, only a layer of type
  `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip` with `urls` is exempt;
- everything else (the config, other layers, an index's manifests) must be in the repository.

Every URL of an exempt layer must be `http://` or `https://` with a host and no fragment,
match one of `validation.manifests.urls.allow` (when that list is given) and none of
`...deny`; patterns are regular expressions searched anywhere in the URL (Go's MatchString).
Unlike distribution, which allows no URL at all when neither list is set (and answers a 500
UNKNOWN), pyreg allows any http(s) URL by default and refuses with MANIFEST_INVALID naming the
layer and the URL; `deny: [".*"]` refuses every foreign layer. Mirrored manifests (the
pull-through cache) are not checked: the upstream decided.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from ocispec.models import Descriptor, Index, Manifest
from registry import errors


class ValidationConfigError(ValueError):
    """`validation:` settings that cannot be used."""


@dataclass(frozen=True, slots=True)
class UrlRules:
    allow: tuple[re.Pattern[str], ...] = ()  # empty: any http(s) URL
    deny: tuple[re.Pattern[str], ...] = ()

    def refusal(self, url: str) -> str | None:
        """Why `url` is refused, or None when it is acceptable."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return "not a URL"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL with a host"
        if parts.fragment:
            return "has a fragment"
        if self.allow and not any(p.search(url) for p in self.allow):
            return "matches no validation.manifests.urls.allow pattern"
        if any(p.search(url) for p in self.deny):
            return "matches a validation.manifests.urls.deny pattern"
        return None


def parse_validation(raw: Mapping[str, Any] | None) -> UrlRules:
    """`{manifests: {urls: {allow: [regex...], deny: [regex...]}}}` (distribution's keys)."""
    if not raw:
        return UrlRules()
    if not isinstance(raw, Mapping) or set(raw) - {"manifests"}:
        raise ValidationConfigError("validation: expected {manifests: {urls: {allow, deny}}}")
    manifests = raw.get("manifests") or {}
    if not isinstance(manifests, Mapping) or set(manifests) - {"urls"}:
        raise ValidationConfigError("validation.manifests: expected {urls: {allow, deny}}")
    urls = manifests.get("urls") or {}
    if not isinstance(urls, Mapping) or set(urls) - {"allow", "deny"}:
        raise ValidationConfigError("validation.manifests.urls: expected {allow, deny}")
    return UrlRules(_patterns(urls.get("allow"), "allow"), _patterns(urls.get("deny"), "deny"))


def _patterns(value: Any, key: str) -> tuple[re.Pattern[str], ...]:
    where = f"validation.manifests.urls.{key}"
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationConfigError(f"{where}: expected a list of regular expressions")
    try:
        return tuple(re.compile(v) for v in value)
    except re.error as exc:
        raise ValidationConfigError(f"{where}: {exc}") from None


def is_external(manifest: Manifest, layer: Descriptor) -> bool:
    """Whether `layer` of `manifest` may be absent from the registry (fetched from its urls)."""
    if not layer.urls:
        return False
    if manifest.media_type == mt.DOCKER_MANIFEST:
        return layer.media_type == mt.DOCKER_FOREIGN_LAYER
    return True


def stored_references(parsed: Manifest | Index) -> list[Digest]:
    """Digests a manifest needs in the repository: an index's manifests; an image's config and
    every layer that is not external."""
    if isinstance(parsed, Index):
        return [d.digest for d in parsed.manifests]
    layers = [d.digest for d in parsed.layers if not is_external(parsed, d)]
    return [parsed.config.digest, *layers]


def check_urls(parsed: Manifest | Index, rules: UrlRules) -> None:
    """MANIFEST_INVALID when an external layer names a URL the rules refuse."""
    if isinstance(parsed, Index):
        return
    for layer in parsed.layers:
        if not is_external(parsed, layer):
            continue
        for url in layer.urls:
            why = rules.refusal(url)
            if why is not None:
                raise errors.MANIFEST_INVALID(
                    f"foreign layer {layer.digest}: URL {url!r} refused ({why})",
                    detail={"digest": str(layer.digest), "url": url, "reason": why},
                )
