"""A container's root filesystem: an overlay of the store's unpacked layers, or a copy.

The store keeps each layer unpacked once (`layers/<alg>/<hex>/rootfs`); those directories are
the overlay's read-only lower directories, shared by every container of every image that has
them, and each container gets its own upper (`diff/`) and work (`work/`) directory.

A layer that deletes files keeps `.wh.NAME` / `.wh..wh..opq` marker files in the store, which
overlayfs does not understand, and a layer may hold directories that exist only as parents
of its entries (`implicit_dirs`), whose on-disk metadata must not hide the lower layer's. Such
a layer gets, once, an overlay form beside its rootfs (`layers/<alg>/<hex>/overlay/`, removed
with the layer): files hardlinked (no copy), markers turned into overlayfs whiteouts
(character device 0/0) and opaque directories (`trusted.overlay.opaque=y`), implicit
directories given the metadata of the lower layer's directory.

Where overlayfs cannot be used (no kernel support, no privilege to mount, a hardlink into a
lower layer, too many layers for one mount) the layers are copied into the rootfs instead,
which is said once per process.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from ocispec.digest import Digest
from puller.store import GraphStore, assemble_rootfs
from puller.store.files import force_rmtree
from puller.store.layers import LayerRecord
from puller.store.tarsafe import OPAQUE_MARKER, WHITEOUT_PREFIX
from runtime.errors import ContainerError

_said: set[str] = set()
# A mount's option string is limited to a page; beyond that, fall back to a copy.
MAX_MOUNT_DATA = 4000


def say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        print(f"pyreg: {message}", file=sys.stderr)


def layer_records(store: GraphStore, chains: list[Digest]) -> list[LayerRecord]:
    records = []
    for chain_id in chains:
        record = store.layers.get(chain_id)
        if record is None:
            raise ContainerError(f"layer {chain_id} is not in the store: pull the image again")
        records.append(record)
    return records


def _has_whiteouts(root: Path) -> bool:
    for _dirpath, dirnames, filenames in os.walk(root):
        if any(n.startswith(WHITEOUT_PREFIX) for n in (*dirnames, *filenames)):
            return True
    return False


def overlay_blocker(records: list[LayerRecord]) -> str | None:
    """Why these layers cannot be overlay lower directories, or None."""
    for record in records[1:]:  # the bottom layer has nothing below to link to
        if record.hardlinks:
            return f"layer {record.chain_id.short} hardlinks into a lower layer"
    return None


def _needs_overlay_form(record: LayerRecord) -> bool:
    return bool(record.implicit_dirs) or _has_whiteouts(record.unpacked_dir)


def _lower_meta(records: list[LayerRecord], rel: str) -> os.stat_result | None:
    """The metadata of directory `rel` in the topmost of `records` that really has it."""
    for record in reversed(records):
        if rel in record.implicit_dirs:
            continue
        path = record.unpacked_dir / rel
        if os.path.isdir(path) and not os.path.islink(path):
            return os.lstat(path)
    return None


def _convert(src: Path, dst: Path, implicit: set[str], below: list[LayerRecord]) -> None:
    """Build the overlay form of the layer tree `src` in the new directory `dst`."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        rel_dir = "" if rel_dir == "." else rel_dir
        out_dir = dst / rel_dir if rel_dir else dst
        names = set(dirnames) | set(filenames)
        if OPAQUE_MARKER in names:
            os.setxattr(out_dir, "trusted.overlay.opaque", b"y")
        for name in sorted(names):
            if name == OPAQUE_MARKER:
                continue
            s_path = os.path.join(dirpath, name)
            if name.startswith(WHITEOUT_PREFIX):
                hidden = name[len(WHITEOUT_PREFIX) :]
                if hidden not in ("", ".", "..") and not hidden.startswith(WHITEOUT_PREFIX):
                    os.mknod(out_dir / hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                continue
            d_path = out_dir / name
            st = os.lstat(s_path)
            if stat.S_ISDIR(st.st_mode):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                meta = _lower_meta(below, rel) if rel in implicit else None
                meta = meta or st
                os.mkdir(d_path)
                os.chown(d_path, meta.st_uid, meta.st_gid)
                os.chmod(d_path, stat.S_IMODE(meta.st_mode))
            elif stat.S_ISREG(st.st_mode):
                os.link(s_path, d_path)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s_path), d_path)
                os.lchown(d_path, st.st_uid, st.st_gid)
            else:
                os.mknod(d_path, st.st_mode, st.st_rdev)
                os.chown(d_path, st.st_uid, st.st_gid)
    # mtimes last, deepest first: creating entries above changed them
    for dirpath, _dirnames, _filenames in sorted(os.walk(dst), key=lambda w: -len(w[0])):
        rel = os.path.relpath(dirpath, dst)
        source = src / rel if rel != "." else src
        if source.is_dir():
            st = os.lstat(source)
            os.utime(dirpath, ns=(st.st_atime_ns, st.st_mtime_ns))


def lower_dir(records: list[LayerRecord], index: int) -> Path:
    """The directory to use as overlay lower for `records[index]` (made once if needed)."""
    record = records[index]
    if not _needs_overlay_form(record):
        return record.unpacked_dir
    final = record.unpacked_dir.parent / "overlay"
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(dir=record.unpacked_dir.parent, prefix=".overlay-"))
    try:
        st = os.lstat(record.unpacked_dir)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        _convert(record.unpacked_dir, tmp, set(record.implicit_dirs), records[:index])
        try:
            os.rename(tmp, final)
        except OSError:  # made meanwhile by another container start
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            force_rmtree(tmp)
    return final


def mount_overlay(lowers: list[Path], upper: Path, work: Path, target: Path) -> str | None:
    """Mount; None on success, else why not (the caller then copies)."""
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    # overlayfs lists lower directories top first
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    data = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    if len(data) > MAX_MOUNT_DATA:
        return "too many layers for one overlay mount"
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", data, str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return done.stderr.strip() or f"mount exited {done.returncode}"
    return None


def is_mounted(target: Path) -> bool:
    return os.path.ismount(target)


def unmount(target: Path) -> None:
    if is_mounted(target):
        done = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
        if done.returncode != 0 and is_mounted(target):
            # still in use (e.g. a process inside): detach it so removal can go on
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def prepare(store: GraphStore, chains: list[Digest], bundle: Path, copy: bool = False) -> str:
    """Make `bundle/rootfs`; return "overlay" or "copy"."""
    records = layer_records(store, chains)
    target = bundle / "rootfs"
    if not records:  # an image without layers (FROM scratch): an empty directory
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, 0o755)
        return "copy"
    reason = "copy requested" if copy else overlay_blocker(records)
    if reason is None:
        try:
            lowers = [lower_dir(records, i) for i in range(len(records))]
        except OSError as exc:  # e.g. no trusted xattrs or device nodes on this filesystem
            lowers, reason = [], f"cannot prepare the layers for overlayfs: {exc}"
        if lowers:
            reason = mount_overlay(lowers, bundle / "diff", bundle / "work", target)
        if reason is None:
            return "overlay"
    if not copy:
        say_once(f"overlay not used ({reason}): copying the image's layers into the rootfs")
    assemble_rootfs(store, chains, target)
    return "copy"
