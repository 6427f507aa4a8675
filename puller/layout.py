"""Import and export images: OCI image layouts (directory or tar) and `docker save` tarballs.

`load(store, path)` reads any of
- an OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`),
- a tar archive of one (optionally gzip-compressed), as `skopeo copy ... oci-archive:` writes,
- a `docker save` tarball (`manifest.json` with Config, RepoTags and Layers; the layers are
  uncompressed tars), for which an OCI manifest is made,
copies every blob into the content store with its digest verified while it streams, registers
the layers (diffIDs checked) and records the names. A tar is read in place, member by member;
nothing is extracted to disk and no tar member name is ever used as a filesystem path.

`save(store, names, path)` writes an OCI image layout directory (merging into an existing one),
one `index.json` entry per name, tagged with `org.opencontainers.image.ref.name` (the tag, as
skopeo's `oci:DIR:TAG` expects) and `io.containerd.image.name` (the full name).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ocispec import mediatypes as mt
from ocispec.digest import Digest, DigestError, DigestMismatch
from ocispec.models import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    ManifestError,
    parse_manifest,
)
from ocispec.reference import Reference, ReferenceError
from puller.store import GraphStore
from puller.store.errors import NotInStore, StoreError
from puller.store.files import atomic_write
from puller.store.images import image_name
from puller.store.limits import UnpackBudget
from puller.store.unpack import sniff_media_type

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_CHUNK = 1 << 20


class LayoutError(StoreError):
    """An archive or layout that cannot be loaded, or an image that cannot be saved."""


# --- sources: a directory or a tar, read by relative member name ------------------------------


class _Source:
    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise LayoutError(f"{name} is larger than {limit} bytes")
        return data

    def __enter__(self) -> _Source:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _clean(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayoutError(f"invalid member name {name!r}")
    return "/".join(parts)


class _DirSource(_Source):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / _clean(name)

    def open(self, name: str) -> IO[bytes]:
        try:
            return open(self._path(name), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise LayoutError(f"{self.root}: {name} is missing") from None

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()


class _TarSource(_Source):
    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")
            self.members = {}
            for m in self.tar.getmembers():
                with contextlib.suppress(LayoutError):
                    self.members[_clean(m.name)] = m
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise LayoutError(f"{path}: not a readable tar archive: {exc}") from None
        self.path = path

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(_clean(name))
        f = self.tar.extractfile(member) if member is not None else None
        if f is None:
            raise LayoutError(f"{self.path}: {name} is missing")
        return f

    def exists(self, name: str) -> bool:
        m = self.members.get(_clean(name))
        return m is not None and (m.isfile() or m.issym() or m.islnk())

    def close(self) -> None:
        self.tar.close()


def _open_source(path: Path) -> _Source:
    if path.is_dir():
        return _DirSource(path)
    if path.is_file():
        return _TarSource(path)
    raise LayoutError(f"{path}: no such file or directory")


# --- names --------------------------------------------------------------------------------


def _normalise(value: str) -> str | None:
    try:
        return image_name(Reference.parse(value))
    except ReferenceError:
        return None


def _default_repository(path: Path) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", path.name.lower().split(".")[0]).strip("-")
    return f"localhost/{stem or 'image'}"


# --- load ---------------------------------------------------------------------------------


def load(store: GraphStore, path: Path, repository: str | None = None) -> list[str]:
    """Load every image of a layout or archive; return the names recorded (or digests)."""
    path = Path(path)
    if repository is not None:
        try:
            Reference.parse(repository)
        except ReferenceError as exc:
            raise LayoutError(f"invalid repository for loaded images: {exc}") from None
    # a prune waits until the load is done: what it writes is named only at the end
    with store.leases.shared(), _open_source(path) as src:
        if src.exists("oci-layout") and src.exists("index.json"):
            return _load_oci(store, src, repository or _default_repository(path))
        if src.exists("manifest.json"):
            return _load_docker(store, src)
    raise LayoutError(f"{path}: neither an OCI image layout nor a docker save archive")


def _blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _copy_blob(store: GraphStore, src: _Source, desc: Descriptor) -> None:
    if store.content.has(desc.digest):
        return
    try:
        with src.open(_blob_name(desc.digest)) as f:
            store.content.write_file(f, desc.digest, desc.size)
    except DigestMismatch as exc:
        raise LayoutError(f"blob {desc.digest}: {exc}") from None


def _parse_json_blob(store: GraphStore, digest: Digest) -> Manifest | Index:
    try:
        return parse_manifest(store.content.read_bytes(digest))
    except ManifestError as exc:
        raise LayoutError(f"manifest {digest}: {exc}") from None


def _register_image(store: GraphStore, manifest: Manifest) -> None:
    try:
        config = ImageConfig.parse(store.content.read_bytes(manifest.config.digest))
    except ManifestError as exc:
        raise LayoutError(f"config {manifest.config.digest}: {exc}") from None
    if len(config.diff_ids) != len(manifest.layers):
        raise LayoutError(
            f"config {manifest.config.digest} lists {len(config.diff_ids)} diff_ids "
            f"for {len(manifest.layers)} layers"
        )
    parent: Digest | None = None
    budget = UnpackBudget()  # the size caps of the environment, the pull cap per image
    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        parent = store.layers.register(
            parent, diff_id, layer.digest, layer.media_type, budget
        ).chain_id


def _host_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return "linux", arch


def _import(store: GraphStore, src: _Source, desc: Descriptor) -> Digest | None:
    """Copy a manifest and what it references; the image manifest to name it by (or None)."""
    _copy_blob(store, src, desc)
    parsed = _parse_json_blob(store, desc.digest)
    if isinstance(parsed, Manifest):
        for ref in parsed.references():
            _copy_blob(store, src, ref)
        if parsed.config.media_type in mt.CONFIGS:
            _register_image(store, parsed)
            return desc.digest
        return None  # an artifact: stored, not unpacked
    chosen: Digest | None = None
    host = _host_platform()
    for child in parsed.manifests:
        if not src.exists(_blob_name(child.digest)):
            continue  # layouts often hold only some platforms of an index
        image = _import(store, src, child)
        if image is None:
            continue
        p = child.platform
        if p is not None and (p.os, p.architecture) == host:
            chosen = image
        elif chosen is None:
            chosen = image
    return chosen


def _load_oci(store: GraphStore, src: _Source, repository: str) -> list[str]:
    try:
        layout = json.loads(src.read("oci-layout"))
        version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    except ValueError:
        version = None
    if not isinstance(version, str) or not version.startswith("1."):
        raise LayoutError("oci-layout: unsupported or missing imageLayoutVersion")
    try:
        index = parse_manifest(src.read("index.json"), mt.OCI_INDEX)
    except ManifestError as exc:
        raise LayoutError(f"index.json: {exc}") from None
    if not isinstance(index, Index):
        raise LayoutError("index.json is not an image index")
    names: list[str] = []
    for desc in index.manifests:
        image = _import(store, src, desc)
        if image is None:
            continue
        name = _name_for(desc, repository, image)
        store.images.set(name, image)
        names.append(name)
    return names


def _name_for(desc: Descriptor, repository: str, image: Digest) -> str:
    full = desc.annotations.get(CONTAINERD_NAME)
    if full and (name := _normalise(full)):
        return name
    ref = desc.annotations.get(REF_NAME)
    if ref:
        if ("/" in ref or "@" in ref) and (name := _normalise(ref)):
            return name
        if name := _normalise(f"{repository}:{ref}"):
            return name
    return image_name(Reference.parse(repository).with_digest(image))


def _load_docker(store: GraphStore, src: _Source) -> list[str]:
    try:
        entries = json.loads(src.read("manifest.json"))
    except ValueError as exc:
        raise LayoutError(f"manifest.json: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise LayoutError("manifest.json: expected a list of objects")
    names: list[str] = []
    for entry in entries:
        config_name, layers = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layers, list):
            raise LayoutError("manifest.json: an entry lacks Config or Layers")
        config_bytes = src.read(config_name)
        config_digest = store.content.write_bytes(config_bytes)
        descriptors = [_docker_layer(store, src, str(name)) for name in layers]
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": str(config_digest),
                "size": len(config_bytes),
            },
            "layers": descriptors,
        }
        digest = store.content.write_bytes(json.dumps(manifest, indent=2).encode())
        parsed = _parse_json_blob(store, digest)
        if not isinstance(parsed, Manifest):  # cannot happen: we just wrote it
            raise LayoutError("internal error: the made manifest did not parse as one")
        _register_image(store, parsed)
        tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        recorded = [n for n in (_normalise(t) for t in tags) if n]
        for name in recorded:
            store.images.set(name, digest)
        names.extend(recorded or [str(digest)])
    return names


def _docker_layer(store: GraphStore, src: _Source, name: str) -> dict[str, Any]:
    with src.open(name) as f:
        head = f.read(_CHUNK)

        def chunks() -> Iterator[bytes]:
            yield head
            while chunk := f.read(_CHUNK):
                yield chunk

        digest = store.content.write_stream(chunks())
    return {
        "mediaType": sniff_media_type(head),
        "digest": str(digest),
        "size": store.content.size(digest),
    }


# --- save ---------------------------------------------------------------------------------


def _resolve(store: GraphStore, name: str) -> tuple[Digest, Reference | None]:
    with contextlib.suppress(DigestError):
        digest = Digest.parse(name)
        if store.content.has(digest):
            return digest, None
    found = store.images.get(name)
    ref: Reference | None = None
    if found is None:
        with contextlib.suppress(ReferenceError):
            ref = Reference.parse(name)
            found = store.images.get(image_name(ref))
    if found is None:
        raise NotInStore(f"no local image named {name}")
    if ref is None:
        with contextlib.suppress(ReferenceError):
            ref = Reference.parse(name)
    return found, ref


def _export_blob(store: GraphStore, dest: Path, digest: Digest) -> None:
    target = dest / _blob_name(digest)
    if target.is_file():
        return
    source = store.content.path(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# Docker schema 2 types -> OCI types: skopeo's `oci:` transport (like the image-layout spec)
# only looks at OCI manifests and indexes, so Docker manifests are converted when saved, as
# `skopeo copy docker://... oci:...` does (the converted manifest has a new digest).
_TO_OCI = {
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_MANIFEST_LIST: mt.OCI_INDEX,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_LAYER: mt.OCI_LAYER_GZIP,
    mt.DOCKER_FOREIGN_LAYER: mt.OCI_LAYER_ND_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": mt.OCI_LAYER,
}


def _oci_descriptor(desc: dict[str, Any]) -> dict[str, Any]:
    out = dict(desc)
    media_type = out.get("mediaType")
    if isinstance(media_type, str):
        out["mediaType"] = _TO_OCI.get(media_type, media_type)
    return out


def _write_layout_blob(dest: Path, data: bytes) -> Digest:
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    target = dest / _blob_name(digest)
    if not target.is_file():
        atomic_write(target, data)
    return digest


def _export(store: GraphStore, dest: Path, digest: Digest) -> dict[str, Any]:
    """Write a manifest (converted to OCI types if needed) and what it references into the
    layout; return the descriptor of what was written."""
    data = store.content.read_bytes(digest)
    parsed = parse_manifest(data)
    if isinstance(parsed, Manifest):
        for ref in parsed.references():
            _export_blob(store, dest, ref.digest)
    if parsed.media_type not in _TO_OCI:
        if isinstance(parsed, Index):
            for child in parsed.manifests:
                if store.content.has(child.digest):
                    _export(store, dest, child.digest)
        _export_blob(store, dest, digest)
        return {"mediaType": parsed.media_type, "digest": str(digest), "size": len(data)}
    raw = dict(parsed.raw)
    raw["mediaType"] = _TO_OCI[parsed.media_type]
    if isinstance(parsed, Manifest):
        raw["config"] = _oci_descriptor(raw["config"])
        raw["layers"] = [_oci_descriptor(x) for x in raw.get("layers", [])]
    else:
        children = []
        for child, child_raw in zip(parsed.manifests, raw["manifests"], strict=True):
            if store.content.has(child.digest):
                written = _export(store, dest, child.digest)
                children.append({**child_raw, **written})
            else:
                children.append(_oci_descriptor(child_raw))
        raw["manifests"] = children
    converted = json.dumps(raw, indent=3).encode()
    new_digest = _write_layout_blob(dest, converted)
    return {"mediaType": raw["mediaType"], "digest": str(new_digest), "size": len(converted)}


def _same_entry(old: dict[str, Any], new: dict[str, Any], tag: str | None) -> bool:
    """Whether `new` replaces `old` in index.json: same tag, or the same untagged digest."""
    annotations = old.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    if tag:
        return bool(annotations.get(REF_NAME) == tag)
    return old.get("digest") == new["digest"] and REF_NAME not in annotations


def save(store: GraphStore, names: list[str], path: Path) -> None:
    """Write the named images (names, or manifest digests) into the OCI layout at `path`."""
    dest = Path(path)
    dest.mkdir(parents=True, exist_ok=True)
    index_path = dest / "index.json"
    existing: list[dict[str, Any]] = []
    if index_path.exists():
        try:
            raw = json.loads(index_path.read_bytes())
            existing = [m for m in raw.get("manifests", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            raise LayoutError(f"{index_path} exists and is not an image index") from None
    atomic_write(dest / "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    for name in names:
        digest, ref = _resolve(store, name)
        written = _export(store, dest, digest)
        annotations: dict[str, str] = {}
        if ref is not None:
            annotations[CONTAINERD_NAME] = image_name(ref)
            if ref.tag or not ref.digest:
                annotations[REF_NAME] = ref.tag or "latest"
        entry = dict(written)
        if annotations:
            entry["annotations"] = annotations
        tag = annotations.get(REF_NAME)
        existing = [m for m in existing if not _same_entry(m, entry, tag)]
        existing.append(entry)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": existing}
    atomic_write(index_path, json.dumps(index, indent=2).encode())


__all__ = ["LayoutError", "image_name", "load", "save"]
