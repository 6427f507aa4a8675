"""Small filesystem helpers: atomic writes, fsync, forced removal, JSON under a file lock
(the locks: locks.py)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from puller.store.locks import file_lock

T = TypeVar("T")


def fsync_dir(path: Path) -> None:
    # Makes a rename durable; some filesystems refuse to open a directory, which is harmless.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def force_rmtree(path: Path) -> None:
    """Remove a tree even when it holds read-only or unsearchable directories (0555, 0500,
    0300, 0000: as unpacked layers and rootfs trees of a non-root user do).

    Neither recursive nor deep: the subdirectories of each directory below the top are moved
    up into the top directory (renamed), so every operation is on a path at most two levels
    below it and a tree thousands of directories deep (shutil.rmtree recursed once per level:
    RecursionError) costs no more than a flat one. On a refusal the directory concerned (a
    real directory, never a symlink: listed as one by its parent) gets u+rwx once and the step
    is tried again; the parent of the tree itself is never changed.
    """
    top = os.fspath(path)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(top)
        return
    granted: set[str] = set()
    spare = itertools.count()

    def grant(exc: OSError, *directories: str) -> None:
        """u+rwx for the first of `directories` not granted yet; else the refusal stands."""
        for directory in directories:
            if directory not in granted and isinstance(exc, PermissionError):
                granted.add(directory)
                os.chmod(directory, stat.S_IRWXU)
                return
        raise exc  # granting access did not help (not our file) or cannot

    def listing(directory: str) -> list[tuple[str, bool]]:
        while True:
            try:
                with os.scandir(directory) as it:
                    return [(e.path, e.is_dir(follow_symlinks=False)) for e in it]
            except OSError as exc:
                grant(exc, directory)

    def unlink(directory: str, entry: str) -> None:
        while True:
            try:
                os.unlink(entry)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                grant(exc, directory)

    def hoist(directory: str, sub: str) -> None:
        """Move `sub` (a directory inside `directory`) up into the top directory."""
        target = os.path.join(top, f".rm-{next(spare)}")
        while True:
            if os.path.lexists(target):
                target = os.path.join(top, f".rm-{next(spare)}")
                continue
            try:
                os.rename(sub, target)
                return
            except OSError as exc:
                # both parents change, and a moved directory's ".." is rewritten
                grant(exc, directory, top, sub)

    def rmdir(parent: str, directory: str) -> None:
        while True:
            try:
                os.rmdir(directory)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if parent == directory:
                    raise  # the tree's own parent is not ours to change
                grant(exc, parent)

    while entries := listing(top):
        for entry, is_dir in entries:
            if not is_dir:
                unlink(top, entry)
                continue
            for child, child_is_dir in listing(entry):
                if child_is_dir:
                    hoist(entry, child)
                else:
                    unlink(entry, child)
            rmdir(top, entry)
    rmdir(top, top)


def read_json(path: Path, default: Any) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return default
    try:
        return json.loads(data)
    except ValueError:
        # A torn file cannot happen with atomic_write; a hand-edited broken one is reset.
        return default


def update_json(path: Path, default: Any, change: Callable[[Any], T]) -> T:
    """Read-modify-write of a JSON file under its lock file, published atomically."""
    with file_lock(path.with_name(path.name + ".lock")):
        value = change(read_json(path, default))
        atomic_write(path, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")
        return value
