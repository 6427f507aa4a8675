"""Typed views of descriptors, manifests, indexes and image configs.

Parsing validates structure (what a registry must refuse as MANIFEST_INVALID) and keeps the
raw JSON: a manifest's identity is its exact bytes, so nothing here re-serialises one for storage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ocispec import mediatypes as mt
from ocispec.digest import Digest, DigestError


class ManifestError(ValueError):
    """A document that is not a valid manifest, index or config."""


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ManifestError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(f"{where}: {key!r} has the wrong type")
    return value


def _optional(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        raise ManifestError(f"{where}: {key!r} has the wrong type")
    return value


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Platform:
        if not isinstance(obj, dict):
            raise ManifestError("platform: not an object")
        return cls(
            os=_require(obj, "os", str, "platform"),
            architecture=_require(obj, "architecture", str, "platform"),
            variant=_optional(obj, "variant", str, "platform"),
            os_version=_optional(obj, "os.version", str, "platform"),
        )

    @classmethod
    def parse(cls, value: str) -> Platform:
        """`os/arch[/variant]`, as `--platform` takes it."""
        parts = value.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {value!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: str | None = None

    @classmethod
    def from_json(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: not an object")
        try:
            digest = Digest.parse(_require(obj, "digest", str, where))
        except DigestError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        size = _require(obj, "size", int, where)
        if size < 0:
            raise ManifestError(f"{where}: negative size")
        urls = _optional(obj, "urls", list, where) or []
        if not all(isinstance(u, str) for u in urls):
            raise ManifestError(f"{where}: 'urls' must be strings")
        annotations = _optional(obj, "annotations", dict, where) or {}
        platform = obj.get("platform")
        return cls(
            media_type=_require(obj, "mediaType", str, where),
            digest=digest,
            size=size,
            urls=tuple(urls),
            annotations=annotations,
            platform=Platform.from_json(platform) if platform is not None else None,
            artifact_type=_optional(obj, "artifactType", str, where),
            data=_optional(obj, "data", str, where),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            p: dict[str, Any] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            if self.platform.os_version:
                p["os.version"] = self.platform.os_version
            out["platform"] = p
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2), or an artifact manifest in OCI form."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str]
    raw: dict[str, Any]

    def references(self) -> list[Descriptor]:
        return [self.config, *self.layers]


@dataclass(frozen=True, slots=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str]
    raw: dict[str, Any]


def load_json(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not valid JSON: {exc}") from None
    except RecursionError:  # `[[[[...` from a malicious peer: malformed input, not a crash
        raise ManifestError("not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ManifestError("not a JSON object")
    return obj


def detect_media_type(obj: dict[str, Any], declared: str | None = None) -> str:
    """The manifest's media type: its `mediaType` field, else the Content-Type, else a guess."""
    field_type = obj.get("mediaType")
    if field_type is not None and not isinstance(field_type, str):
        raise ManifestError("'mediaType' must be a string")
    if field_type and declared and field_type != declared and declared in mt.MANIFESTS:
        raise ManifestError(f"mediaType {field_type!r} does not match Content-Type {declared!r}")
    if field_type:
        return field_type
    if declared and declared in mt.MANIFESTS:
        return declared
    if "manifests" in obj:
        return mt.OCI_INDEX
    if "config" in obj:
        return mt.OCI_MANIFEST
    raise ManifestError("cannot tell the manifest's media type")


def parse_manifest(data: bytes, declared: str | None = None) -> Manifest | Index:
    """Parse and validate a manifest or index; raise ManifestError when it is not one."""
    obj = load_json(data)
    media_type = detect_media_type(obj, declared)
    if media_type in mt.INDEXES:
        return _parse_index(obj, media_type)
    if media_type in mt.IMAGE_MANIFESTS:
        return _parse_image(obj, media_type)
    raise ManifestError(f"unsupported manifest media type {media_type!r}")


def _check_schema_version(obj: dict[str, Any]) -> None:
    if obj.get("schemaVersion") != 2 or isinstance(obj.get("schemaVersion"), bool):
        raise ManifestError("schemaVersion must be 2")


def _subject(obj: dict[str, Any]) -> Descriptor | None:
    raw = obj.get("subject")
    return Descriptor.from_json(raw, "subject") if raw is not None else None


def _parse_image(obj: dict[str, Any], media_type: str) -> Manifest:
    _check_schema_version(obj)
    config = Descriptor.from_json(obj.get("config"), "config")
    layers_raw = obj.get("layers", [] if media_type == mt.OCI_MANIFEST else None)
    if not isinstance(layers_raw, list):
        raise ManifestError("'layers' must be a list")
    layers = tuple(Descriptor.from_json(x, f"layers[{i}]") for i, x in enumerate(layers_raw))
    return Manifest(
        media_type=media_type,
        config=config,
        layers=layers,
        subject=_subject(obj),
        artifact_type=_optional(obj, "artifactType", str, "manifest"),
        annotations=_optional(obj, "annotations", dict, "manifest") or {},
        raw=obj,
    )


def _parse_index(obj: dict[str, Any], media_type: str) -> Index:
    _check_schema_version(obj)
    manifests_raw = obj.get("manifests")
    if not isinstance(manifests_raw, list):
        raise ManifestError("'manifests' must be a list")
    manifests = tuple(
        Descriptor.from_json(x, f"manifests[{i}]") for i, x in enumerate(manifests_raw)
    )
    return Index(
        media_type=media_type,
        manifests=manifests,
        subject=_subject(obj),
        artifact_type=_optional(obj, "artifactType", str, "index"),
        annotations=_optional(obj, "annotations", dict, "index") or {},
        raw=obj,
    )


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config that pulling and unpacking need."""

    os: str
    architecture: str
    variant: str | None
    diff_ids: tuple[Digest, ...]
    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        obj = load_json(data)
        rootfs = obj.get("rootfs")
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
            raise ManifestError("config: missing rootfs.diff_ids")
        try:
            diff_ids = tuple(Digest.parse(d) for d in rootfs["diff_ids"])
        except DigestError as exc:
            raise ManifestError(f"config: {exc}") from None
        return cls(
            os=str(obj.get("os", "")),
            architecture=str(obj.get("architecture", "")),
            variant=obj.get("variant") if isinstance(obj.get("variant"), str) else None,
            diff_ids=diff_ids,
            raw=obj,
        )


def chain_ids(diff_ids: list[Digest] | tuple[Digest, ...]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).

    (image-spec config.md)
    """

    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            text = f"{out[-1]} {diff_id}".encode()
            out.append(Digest("sha256", hashlib.sha256(text).hexdigest()))
    return out
