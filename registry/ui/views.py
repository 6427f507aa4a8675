"""What the pages show, read from the registry's own stores. Manifests and configs come from
whoever pushed them: every field is read defensively (wrong types are shown as absent), and
the templates escape everything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ocispec.digest import Digest, DigestError
from registry import errors
from registry.stores.repository import RegistryStore

#: configs larger than this are not read for display (a config is a few KiB)
MAX_CONFIG_BYTES = 1024 * 1024
INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _digest(value: Any) -> str | None:
    try:
        return str(Digest.parse(value)) if isinstance(value, str) else None
    except DigestError:
        return None


def platform_text(platform: Any) -> str:
    p = _dict(platform)
    parts = [_str(p.get("os")), _str(p.get("architecture")), _str(p.get("variant"))]
    return "/".join(x for x in parts if x)


@dataclass(slots=True)
class Descriptor:
    media_type: str
    digest: str | None
    size: int
    platform: str = ""
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


def descriptor(raw: Any) -> Descriptor:
    d = _dict(raw)
    notes = {str(k): str(v) for k, v in _dict(d.get("annotations")).items()}
    return Descriptor(
        _str(d.get("mediaType")),
        _digest(d.get("digest")),
        _int(d.get("size")),
        platform_text(d.get("platform")),
        _str(d.get("artifactType")),
        notes,
    )


@dataclass(slots=True)
class ImageConfig:
    created: str = ""
    platform: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)


def parse_config(data: bytes) -> ImageConfig:
    try:
        raw = _dict(json.loads(data))
    except ValueError:
        return ImageConfig()
    inner = _dict(raw.get("config"))
    history = [
        {
            "created": _str(h.get("created")),
            "created_by": _str(h.get("created_by")),
            "comment": _str(h.get("comment")),
            "empty": "yes" if h.get("empty_layer") is True else "",
        }
        for h in map(_dict, _list(raw.get("history")))
    ]
    return ImageConfig(
        created=_str(raw.get("created")),
        platform=platform_text(raw),
        entrypoint=[str(x) for x in _list(inner.get("Entrypoint"))],
        cmd=[str(x) for x in _list(inner.get("Cmd"))],
        env=[str(x) for x in _list(inner.get("Env"))],
        workdir=_str(inner.get("WorkingDir")),
        user=_str(inner.get("User")),
        ports=sorted(str(x) for x in _dict(inner.get("ExposedPorts"))),
        labels={str(k): str(v) for k, v in _dict(inner.get("Labels")).items()},
        history=history,
    )


@dataclass(slots=True)
class ImageView:
    name: str
    digest: str
    media_type: str
    raw: str  # pretty-printed JSON
    is_index: bool
    artifact_type: str = ""
    config: Descriptor | None = None
    image_config: ImageConfig | None = None
    layers: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)  # an index's
    subject: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    referrers: list[Descriptor] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        own = self.config.size if self.config else 0
        return own + sum(layer.size for layer in self.layers)


async def read_small_blob(store: RegistryStore, name: str, digest: str | None) -> bytes | None:
    """A blob of `name` up to MAX_CONFIG_BYTES, or None (absent, unlinked, too large)."""
    if digest is None:
        return None
    parsed = Digest.parse(digest)
    try:
        size = await store.blobs.size(name, parsed)
    except errors.RegistryError:
        return None
    if size > MAX_CONFIG_BYTES:
        return None
    chunks = [chunk async for chunk in store.blobs.read(parsed, 0, size)]
    return b"".join(chunks)


async def image(
    store: RegistryStore, name: str, reference: Digest | str, with_extras: bool = True
) -> ImageView:
    """The manifest or index `reference` names (MANIFEST_UNKNOWN when none)."""
    stored = await store.manifests.get(name, reference)
    try:
        raw = _dict(json.loads(stored.data))
        pretty = json.dumps(raw, indent=2, sort_keys=True)
    except ValueError:
        raw, pretty = {}, stored.data.decode("utf-8", "replace")
    is_index = stored.media_type in INDEX_TYPES or "manifests" in raw
    view = ImageView(
        name=name,
        digest=str(stored.digest),
        media_type=stored.media_type,
        raw=pretty,
        is_index=is_index,
        artifact_type=_str(raw.get("artifactType")),
        subject=descriptor(raw["subject"]).digest if "subject" in raw else None,
        annotations={str(k): str(v) for k, v in _dict(raw.get("annotations")).items()},
    )
    if is_index:
        view.manifests = [descriptor(m) for m in _list(raw.get("manifests"))]
    else:
        view.config = descriptor(raw.get("config"))
        view.layers = [descriptor(x) for x in _list(raw.get("layers"))]
        if not view.artifact_type and view.config.media_type not in CONFIG_TYPES:
            view.artifact_type = view.config.media_type
    if with_extras:
        if view.config is not None and view.config.media_type in CONFIG_TYPES:
            data = await read_small_blob(store, name, view.config.digest)
            if data is not None:
                view.image_config = parse_config(data)
        view.referrers = [descriptor(d) for d in await store.referrers.list(name, stored.digest)]
        view.tags = await store.tags.pointing_to(name, stored.digest)
    return view


CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)


@dataclass(slots=True)
class TagRow:
    tag: str
    digest: str
    size: int | None  # None for an index (its platforms' sizes are on their own pages)
    platforms: str
    created: str


async def tag_row(store: RegistryStore, name: str, tag: str) -> TagRow | None:
    """One tag's summary (None when it went meanwhile): size and created from its manifest
    and config, platforms from an index."""
    try:
        view = await image(store, name, tag, with_extras=False)
    except errors.RegistryError:
        return None
    created = ""
    size: int | None = None
    platforms = ""
    if view.is_index:
        platforms = ", ".join(m.platform for m in view.manifests if m.platform)  # no size
    else:
        size = view.size
        if view.config is not None and view.config.media_type in CONFIG_TYPES:
            data = await read_small_blob(store, name, view.config.digest)
            if data is not None:
                config = parse_config(data)
                created, platforms = config.created, config.platform
    return TagRow(tag, view.digest, size, platforms, created)
