"""A container's root filesystem: an overlay of the store's unpacked layers, or a copy.

The store keeps each layer unpacked once (`layers/<alg>/<hex>/rootfs`); those directories are
the overlay's read-only lower directories, shared by every container of every image that has
them, and each container gets its own upper (`diff/`) and work (`work/`) directory. Where
overlayfs cannot be used (no kernel support, no privilege to mount, or a layer that needs
the store's own whiteout handling: `.wh.*` markers and hardlinks to lower layers are
applied by `assemble_rootfs`, not by overlayfs) the layers are copied into the rootfs
instead, which is said once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ocispec.digest import Digest
from puller.store import GraphStore, assemble_rootfs
from puller.store.layers import LayerRecord
from puller.store.tarsafe import WHITEOUT_PREFIX
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
    """Why these layers cannot be overlay lower directories as they are, or None."""
    for record in records[1:]:  # the bottom layer has nothing below to hide or link to
        if record.hardlinks:
            return f"layer {record.chain_id.short} hardlinks into a lower layer"
        if _has_whiteouts(record.unpacked_dir):
            return f"layer {record.chain_id.short} deletes files of a lower layer"
    return None


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
    reason = "copy requested" if copy else overlay_blocker(records)
    if reason is None:
        reason = mount_overlay(
            [r.unpacked_dir for r in records], bundle / "diff", bundle / "work", target
        )
        if reason is None:
            return "overlay"
    if not copy:
        say_once(f"overlay not used ({reason}): copying the image's layers into the rootfs")
    assemble_rootfs(store, chains, target)
    return "copy"
