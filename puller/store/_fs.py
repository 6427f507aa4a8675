"""Small filesystem helpers: atomic writes, fsync, forced removal, JSON under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

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

    On a refusal the parent and the entry itself (a real directory, never a symlink: rmtree
    checked it) get u+rwx and the entry is removed again, a directory with its own rmtree.
    """
    retried: set[str] = set()
    top = str(path)

    def onerror(func: Callable[..., Any], p: str, exc_info: Any) -> None:
        if isinstance(exc_info[1], FileNotFoundError):
            return
        if p in retried:  # granting access did not help (not our file): give up
            raise exc_info[1]
        retried.add(p)
        if p != top:  # the parent of the tree itself is not ours to change
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(p), stat.S_IRWXU)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                os.chmod(p, stat.S_IRWXU)
            # rmtree gives up on a directory it could not open or list: start it over
            shutil.rmtree(p, onerror=onerror)
        else:
            os.unlink(p)

    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        # onerror, not onexc: Python 3.11 (removed only in 3.14).
        shutil.rmtree(path, onerror=onerror)
    else:
        os.unlink(path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held on `path` (created if needed) for the block's duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_lock(path: Path) -> bool:
    """True when nobody holds the lock on `path` right now (it is released at once)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


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
