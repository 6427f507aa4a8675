"""Build test images in memory: layer tars (plain, gzip, zstd) made with `tarfile`, an image
config with the right diff_ids, an OCI manifest; write them as an OCI image layout or as a
`docker save` archive. Reusable by any test that needs to push, pull, load or unpack an image.

    img = build_image([[file("etc/a", b"1"), dir_("var")], [whiteout("etc/a")]], "gzip")
    img.blobs()                      # {digest: bytes} of config and layers
    write_oci_layout(path, {"v1": img})
    write_docker_archive(path / "x.tar", {"example.com/a/b:v1": img})
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from ocispec import mediatypes as mt
from ocispec.digest import Digest, digest_bytes

MTIME = 1_700_000_000  # fixed, so that images are reproducible


@dataclass(frozen=True)
class TarEntry:
    """One tar member. `kind`: file, dir, symlink, hardlink, fifo, chardev."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()  # PAX SCHILY.xattr.<name>


def file(name: str, data: bytes = b"", mode: int = 0o644, **kw: Any) -> TarEntry:
    return TarEntry(name, "file", data, mode, **kw)


def dir_(name: str, mode: int = 0o755, **kw: Any) -> TarEntry:
    return TarEntry(name, "dir", mode=mode, **kw)


def symlink(name: str, target: str) -> TarEntry:
    return TarEntry(name, "symlink", mode=0o777, linkname=target)


def hardlink(name: str, target: str) -> TarEntry:
    return TarEntry(name, "hardlink", linkname=target)


def fifo(name: str, mode: int = 0o644) -> TarEntry:
    return TarEntry(name, "fifo", mode=mode)


def chardev(name: str, major: int, minor: int, mode: int = 0o666) -> TarEntry:
    return TarEntry(name, "chardev", mode=mode, devmajor=major, devminor=minor)


def whiteout(path: str) -> TarEntry:
    """Delete `path` of a lower layer: an empty file `.wh.<name>` next to it."""
    parent, name = posixpath.split(path.rstrip("/"))
    return file(posixpath.join(parent, f".wh.{name}") if parent else f".wh.{name}", mode=0o600)


def opaque(directory: str) -> TarEntry:
    """Hide everything lower layers put in `directory`."""
    return file(posixpath.join(directory.rstrip("/"), ".wh..wh..opq"), mode=0o600)


_KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
}


def make_tar(entries: Iterable[TarEntry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar of `entries`, in the given order, names taken verbatim."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _KINDS[e.kind]
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.linkname
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs}
            if e.kind == "file":
                info.size = len(e.data)
                tf.addfile(info, io.BytesIO(e.data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if compression == "":
        return data
    raise ValueError(f"unknown compression {compression!r}")


LAYER_TYPES = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "": mt.OCI_LAYER}


@dataclass(frozen=True)
class Layer:
    media_type: str
    blob: bytes
    diff_id: Digest

    @property
    def digest(self) -> Digest:
        return digest_bytes(self.blob)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": str(self.digest), "size": len(self.blob)}


def make_layer(entries: Iterable[TarEntry] | bytes, compression: str = "gzip") -> Layer:
    raw = entries if isinstance(entries, bytes) else make_tar(entries)
    return Layer(LAYER_TYPES[compression], compress(raw, compression), digest_bytes(raw))


@dataclass(frozen=True)
class Image:
    manifest: bytes
    config: bytes
    layers: tuple[Layer, ...]
    manifest_media_type: str = mt.OCI_MANIFEST
    extra_blobs: dict[Digest, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> Digest:
        return digest_bytes(self.manifest)

    @property
    def config_digest(self) -> Digest:
        return digest_bytes(self.config)

    @property
    def diff_ids(self) -> list[Digest]:
        return [layer.diff_id for layer in self.layers]

    def blobs(self) -> dict[Digest, bytes]:
        out = {self.config_digest: self.config}
        out.update({layer.digest: layer.blob for layer in self.layers})
        out.update(self.extra_blobs)
        return out

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.manifest_media_type,
            "digest": str(self.digest),
            "size": len(self.manifest),
        }


def build_image(
    layers: Sequence[Iterable[TarEntry] | Layer],
    compression: str = "gzip",
    *,
    architecture: str = "amd64",
    os: str = "linux",
    config_extra: dict[str, Any] | None = None,
    docker_media_types: bool = False,
) -> Image:
    """An image whose config lists the right diff_ids, with an OCI (or Docker v2) manifest."""
    built = tuple(x if isinstance(x, Layer) else make_layer(x, compression) for x in layers)
    config: dict[str, Any] = {
        "architecture": architecture,
        "os": os,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [str(x.diff_id) for x in built]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(built))],
    }
    config.update(config_extra or {})
    config_bytes = json.dumps(config, sort_keys=True).encode()
    if docker_media_types:
        manifest_type, config_type = mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG
        layer_descs = [{**x.descriptor(), "mediaType": mt.DOCKER_LAYER} for x in built]
    else:
        manifest_type, config_type = mt.OCI_MANIFEST, mt.OCI_CONFIG
        layer_descs = [x.descriptor() for x in built]
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": config_type,
            "digest": str(digest_bytes(config_bytes)),
            "size": len(config_bytes),
        },
        "layers": layer_descs,
    }
    return Image(json.dumps(manifest, indent=2).encode(), config_bytes, built, manifest_type)


def sample_layers() -> list[list[TarEntry]]:
    """Three layers exercising every rule of layer application."""
    base = [
        dir_("etc"),
        file("etc/hostname", b"base\n"),
        file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        dir_("usr"),
        dir_("usr/bin"),
        file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        hardlink("usr/bin/tool-alias", "usr/bin/tool"),
        symlink("bin", "usr/bin"),
        dir_("opt", 0o750),
        dir_("opt/app"),
        file("opt/app/old.txt", b"old"),
        dir_("opt/app/sub"),
        file("opt/app/sub/deep.txt", b"deep"),
        dir_("var"),
        dir_("var/cache"),
        file("var/cache/big", b"c" * 70000, 0o600),
        file("setuid", b"s", 0o4755),
        dir_("tmp", 0o1777),
        fifo("tmp/fifo"),
        symlink("etc/dangling", "/nowhere/at/all"),
    ]
    middle = [
        dir_("etc"),
        whiteout("etc/hostname"),
        file("etc/motd", b"hello\n", 0o640),
        dir_("opt/app"),
        opaque("opt/app"),
        file("opt/app/new.txt", b"new"),
        whiteout("var/cache"),
        file("etc/passwd", b"root:x:0:0::/root:/bin/bash\n"),
    ]
    top = [
        dir_("etc"),
        whiteout("etc/dangling"),
        file("etc/hostname", b"top\n"),
        hardlink("etc/passwd-link", "etc/passwd"),  # to a file of a lower layer
        symlink("etc/relative", "../usr/bin/tool"),
        dir_("var"),
        dir_("var/cache", 0o700),
        file("var/cache/fresh", b"f"),
    ]
    return [base, middle, top]


def tricky_layers() -> list[list[TarEntry]]:
    """Layers for corner cases: replacements of one type by another, links through lower
    symlinks, whiteouts of symlinks, nested opaque dirs, odd and long names."""
    long_name = "deep/" + "d" * 120 + "/" + "f" * 150
    base = [
        dir_("usr"),
        dir_("usr/lib"),
        symlink("lib", "usr/lib"),
        dir_("was-dir"),
        file("was-dir/child", b"c"),
        file("was-file", b"f"),
        symlink("was-link", "usr"),
        dir_("target"),
        file("target/keep", b"k"),
        symlink("link-to-dir", "target"),
        dir_("nest"),
        dir_("nest/a"),
        file("nest/a/x", b"x"),
        dir_("nest/b"),
        file("nest/b/y", b"y"),
        file("sp ace/ünï cødé", b"u"),
        file(long_name, b"long"),
        file("empty", b""),
        file("with-xattr", b"x", xattrs=(("user.note", "hello"),)),
        dir_("sgid", 0o2775),
    ]
    middle = [
        file("was-dir", b"now a file"),
        dir_("was-file", 0o711),
        dir_("was-link"),
        file("was-link/inside", b"i"),
        whiteout("link-to-dir"),
        opaque("nest/a"),
        file("nest/a/z", b"z"),
        file("usr/lib/libx.so", b"elf"),
    ]
    top = [
        hardlink("usr/lib/libx.so.1", "usr/lib/libx.so"),
        symlink("nest/b", "a"),
        file(long_name, b"longer"),
        whiteout("sp ace/ünï cødé"),
    ]
    return [base, middle, top]


def sample_image(compression: str = "gzip") -> Image:
    return build_image(sample_layers(), compression)


def write_blob(root: Path, digest: Digest, data: bytes) -> None:
    path = root / "blobs" / digest.algorithm / digest.hex
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_oci_layout(root: Path, images: dict[str, Image]) -> Path:
    """An OCI image layout, one index.json entry per tag (`org.opencontainers.image.ref.name`)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    manifests = []
    for tag, image in images.items():
        write_blob(root, image.digest, image.manifest)
        for d, data in image.blobs().items():
            write_blob(root, d, data)
        desc = image.descriptor()
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        manifests.append(desc)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    (root / "index.json").write_text(json.dumps(index))
    return root


def write_docker_archive(path: Path, images: dict[str, Image]) -> Path:
    """A tarball shaped like `docker save` output: manifest.json, <id>.json, <id>/layer.tar.

    Layers are stored uncompressed, as docker does; `images` maps a RepoTag to an image.
    """
    manifest_json = []
    with tarfile.open(path, "w") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = MTIME
            tf.addfile(info, io.BytesIO(data))

        for repo_tag, image in images.items():
            config_name = f"{image.config_digest.hex}.json"
            add(config_name, image.config)
            layer_names = []
            for i, layer in enumerate(image.layers):
                raw = _decompress(layer)
                name = f"{digest_bytes(f'{image.config_digest}{i}'.encode()).hex}/layer.tar"
                add(name, raw)
                layer_names.append(name)
            manifest_json.append(
                {"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}
            )
        add("manifest.json", json.dumps(manifest_json).encode())
    return path


def _decompress(layer: Layer) -> bytes:
    if layer.media_type == mt.OCI_LAYER_GZIP:
        return gzip.decompress(layer.blob)
    if layer.media_type == mt.OCI_LAYER_ZSTD:
        return zstandard.ZstdDecompressor().decompressobj().decompress(layer.blob)
    return layer.blob


def register_image(store: Any, image: Image, name: str | None = None) -> list[Digest]:
    """Put `image` into a puller GraphStore (blobs, layers, optional name); its chainIDs."""
    from ocispec.models import chain_ids

    store.content.write_bytes(image.config, image.config_digest)
    store.content.write_bytes(image.manifest, image.digest)
    parent = None
    for layer in image.layers:
        store.content.write_bytes(layer.blob, layer.digest)
        parent = store.layers.register(
            parent, layer.diff_id, layer.digest, layer.media_type
        ).chain_id
    if name is not None:
        store.images.set(name, image.digest)
    return chain_ids(image.diff_ids)


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    import os

    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def snapshot(root: Path, *, contents: bool = True) -> dict[str, tuple[Any, ...]]:
    """Path -> (type, permission bits, size, sha256 of contents, link target, is-hardlinked,
    extended attributes) of every object under `root`: what two unpackers must agree on."""
    import hashlib
    import os
    import stat

    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            regular = stat.S_ISREG(st.st_mode)
            digest = None
            if regular and contents:
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, root)] = (
                stat.S_IFMT(st.st_mode),
                oct(stat.S_IMODE(st.st_mode)),
                st.st_size if regular else None,
                digest,
                os.readlink(p) if stat.S_ISLNK(st.st_mode) else None,
                st.st_nlink > 1 if regular else None,
                _xattrs(p),
            )
    return out
