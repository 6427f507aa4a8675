"""A build step's filesystem changes as a reproducible layer: find the changes, write the tar.

Changes come from an overlayfs upper directory (a character device 0/0 is a deletion, the
`trusted.overlay.opaque` xattr an opaque directory) or, where the rootfs was a copy, from
comparing the tree before and after the step. Either way they become OCI layer entries:
`.wh.NAME` for a deletion, `.wh..wh..opq` for an opaque directory. The tar lists entries
sorted by name, without user or group names, with timestamps clamped to SOURCE_DATE_EPOCH
when it is set, and is compressed with gzip (no name, mtime 0) or zstd: the same changes give
the same bytes, and so the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from puller.store import GraphStore
from puller.store.layers import LayerRecord
from puller.store.tarsafe import OPAQUE_MARKER, WHITEOUT_PREFIX

OVERLAY_OPAQUE = "trusted.overlay.opaque"


@dataclass(frozen=True)
class Change:
    path: str  # relative, no leading slash
    kind: str  # "entry" (add or modify: taken from `source`), "whiteout", "opaque"
    source: Path | None = None


# -- from an overlay upper directory ----------------------------------------------------------


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def changes_from_upper(upper: Path) -> list[Change]:
    out: list[Change] = []
    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            rel = posixpath.join(rel_dir, name) if rel_dir else name
            st = os.lstat(full)
            if _is_overlay_whiteout(st):
                out.append(Change(rel, "whiteout"))
                continue
            out.append(Change(rel, "entry", Path(full)))
            if stat.S_ISDIR(st.st_mode) and _is_opaque(full):
                out.append(Change(rel, "opaque"))
    return out


# -- from two trees -----------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, int, int, int, int, str]]


def snapshot(root: Path) -> Snapshot:
    """Every path's (mode, uid, gid, size, mtime_ns, link target): what a change alters."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0
            out[posixpath.join(rel_dir, name) if rel_dir else name] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                size,
                mtime,
                link,
            )
    return out


def changes_between(before: Snapshot, root: Path) -> list[Change]:
    after = snapshot(root)
    out: list[Change] = []
    changed: set[str] = set()
    for path, meta in after.items():
        if before.get(path) != meta:
            changed.add(path)
    # a changed entry's parent directories go in too, with their metadata (as in a diff of
    # an overlay upper directory, where they were copied up)
    for path in list(changed):
        parent = posixpath.dirname(path)
        while parent:
            changed.add(parent)
            parent = posixpath.dirname(parent)
    for path in sorted(changed):
        old = before.get(path)
        new = after[path]
        if old is not None and stat.S_ISDIR(old[0]) and not stat.S_ISDIR(new[0]):
            out.append(Change(path, "whiteout"))  # a directory replaced: remove it first
        out.append(Change(path, "entry", root / path))
    for path in sorted(set(before) - set(after)):
        parent = posixpath.dirname(path)
        if parent and parent not in after:
            continue  # a deleted parent's whiteout covers it
        out.append(Change(path, "whiteout"))
    return out


# -- the tar ------------------------------------------------------------------------------------


class _HashingWriter:
    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()


def _clamp(mtime: float, epoch: int | None) -> int:
    value = int(mtime)
    return min(value, epoch) if epoch is not None else value


def _order(change: Change) -> tuple[str, int]:
    # within a directory: the opaque marker and whiteouts before the entries they precede
    parent, name = posixpath.split(change.path)
    if change.kind == "opaque":
        return (posixpath.join(change.path, ""), 0)
    if change.kind == "whiteout":
        return (posixpath.join(parent, name), 0)
    return (change.path, 1)


def write_tar(changes: list[Change], out: Any, epoch: int | None) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for change in sorted(changes, key=_order):
            parent, name = posixpath.split(change.path)
            if change.kind in ("whiteout", "opaque"):
                marker = OPAQUE_MARKER if change.kind == "opaque" else WHITEOUT_PREFIX + name
                where = change.path if change.kind == "opaque" else parent
                info = tarfile.TarInfo(posixpath.join(where, marker) if where else marker)
                info.mode = 0o644
                info.mtime = _clamp(0, epoch)
                tf.addfile(info)
                continue
            assert change.source is not None
            info = tf.gettarinfo(str(change.source), arcname=change.path)
            info.uname = info.gname = ""
            info.mtime = _clamp(info.mtime, epoch)
            info.pax_headers = {}
            if info.isreg():
                with open(change.source, "rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)


@dataclass(frozen=True)
class BuiltLayer:
    diff_id: Digest
    digest: Digest
    size: int
    media_type: str
    record: LayerRecord


def store_layer(
    store: GraphStore,
    parent: Digest | None,
    changes: list[Change],
    compression: str = "gzip",
    epoch: int | None = None,
) -> BuiltLayer:
    """Write the changes as a layer blob into the store and register (unpack) it there."""
    tmpdir = store.root / "ingest"
    tmpdir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmpdir, prefix="build-", suffix=".layer") as tmp:
        compressed = _HashingWriter(tmp)
        if compression == "zstd":
            media_type = mt.OCI_LAYER_ZSTD
            zwriter = zstandard.ZstdCompressor().stream_writer(compressed, closefd=False)  # type: ignore[arg-type]
            raw = _HashingWriter(zwriter)  # type: ignore[arg-type]
            write_tar(changes, raw, epoch)
            zwriter.close()  # type: ignore[no-untyped-call]
        else:
            media_type = mt.OCI_LAYER_GZIP
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:  # type: ignore[arg-type]
                raw = _HashingWriter(gz)  # type: ignore[arg-type]
                write_tar(changes, raw, epoch)
        tmp.flush()
        diff_id = Digest("sha256", raw.hash.hexdigest())
        digest = Digest("sha256", compressed.hash.hexdigest())
        tmp.seek(0)
        store.content.write_file(tmp, digest, compressed.size)  # type: ignore[arg-type]
    record = store.layers.register(parent, diff_id, digest, media_type)
    return BuiltLayer(diff_id, digest, compressed.size, media_type, record)
