"""Assemble a root filesystem from registered layers, in order, honouring whiteouts.

Each layer's unpacked directory is walked (parents before children) and applied onto the
target with the same safe `Applier` that unpacked it: in every directory an opaque marker
(`.wh..wh..opq`) first empties what lower layers put there, then `.wh.NAME` markers delete
`NAME`, then the layer's own entries are copied (files by `copy_file_range`, hardlinks within
the layer kept as hardlinks, hardlinks to lower layers re-made from `meta.json`). Whiteouts
only ever hide lower layers' files, as the image spec says, because they are applied before
the layer's own entries.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ocispec.digest import Digest
from puller.store.errors import NotInStore
from puller.store.layers import LayerRecord
from puller.store.tarsafe import OPAQUE_MARKER, WHITEOUT_PREFIX, Applier, Entry

if TYPE_CHECKING:
    from puller.store import GraphStore


def assemble_rootfs(store: GraphStore, chain_ids: list[Digest], target: Path) -> None:
    """Apply the layers `chain_ids` (bottom first) onto `target` (created if missing)."""
    records: list[LayerRecord] = []
    for chain_id in chain_ids:
        record = store.layers.get(chain_id)
        if record is None:
            raise NotInStore(f"layer {chain_id} is not in the local store")
        records.append(record)
    target.mkdir(parents=True, exist_ok=True)
    applier = Applier(target)
    for record in records:
        apply_layer_dir(applier, record)
    applier.finish()


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode):
        return "chardev"
    if stat.S_ISBLK(mode):
        return "blockdev"
    return None


def _read_xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}
    except OSError:
        return {}


def apply_layer_dir(applier: Applier, record: LayerRecord) -> None:
    implicit = set(record.implicit_dirs)
    inodes: dict[tuple[int, int], str] = {}
    # Depth-first, parents before children, with an explicit stack of directories being
    # walked: a layer thousands of directories deep must not hit the recursion limit.
    stack = [("", _enter_dir(applier, record.unpacked_dir, ""))]
    while stack:
        rel, entries = stack[-1]
        e = next(entries, None)
        if e is None:
            stack.pop()
            continue
        path = f"{rel}/{e.name}" if rel else e.name
        if _apply_entry(applier, e, path, implicit, inodes, record.modes):
            stack.append((path, _enter_dir(applier, record.unpacked_dir, path)))
    for path, linkname in sorted(record.hardlinks.items()):
        applier.apply(Entry(path, "hardlink", linkname=linkname))


def _enter_dir(applier: Applier, src_root: Path, rel: str) -> Iterator[os.DirEntry[str]]:
    """Apply a layer directory's opaque marker and whiteouts; its other entries, in order."""
    with os.scandir(os.path.join(src_root, rel) if rel else src_root) as it:
        entries = sorted(it, key=lambda e: e.name)
    names = {e.name for e in entries}
    if OPAQUE_MARKER in names:
        applier.clear(rel)
    for e in entries:
        hidden = e.name[len(WHITEOUT_PREFIX) :]
        # `.wh.` alone or `.wh..` would name the directory itself or its parent: not a whiteout
        if (
            e.name.startswith(WHITEOUT_PREFIX)
            and e.name != OPAQUE_MARKER
            and hidden not in ("", ".", "..")
        ):
            applier.remove(f"{rel}/{hidden}" if rel else hidden)
    return iter([e for e in entries if not e.name.startswith(WHITEOUT_PREFIX)])


def _apply_entry(
    applier: Applier,
    e: os.DirEntry[str],
    path: str,
    implicit: set[str],
    inodes: dict[tuple[int, int], str],
    modes: dict[str, int],
) -> bool:
    """Apply one entry of a layer directory; True when it is a directory to walk into."""
    st = e.stat(follow_symlinks=False)
    kind = _kind(st.st_mode)
    if kind is None:
        return False
    mode = st.st_mode
    if path in modes:  # kept readable on disk by a rootless registration
        mode = stat.S_IFMT(mode) | modes[path]
    entry = Entry(path, kind, mode, st.st_uid, st.st_gid, st.st_mtime)
    entry.xattrs = _read_xattrs(e.path)
    if kind == "dir":
        if path in implicit:
            applier.ensure_dir(path)
        else:
            applier.directory(entry)
        return True
    if kind == "symlink":
        entry.linkname = os.readlink(e.path)
    elif kind in ("chardev", "blockdev"):
        entry.devmajor, entry.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif kind == "file" and st.st_nlink > 1:
        first = inodes.setdefault((st.st_dev, st.st_ino), path)
        if first != path:
            applier.apply(Entry(path, "hardlink", linkname=first))
            return False
    applier.apply(entry, Path(e.path) if kind == "file" else None)
    return False
