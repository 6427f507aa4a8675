"""The store's advisory file locks (flock): a lock held for a block, a file held locked for an
object's life, and the test whether anybody holds one.

A lock dies with the process that held it, so a file nobody holds locked (an ingest's partial,
a pull's lease) belongs to a process that ended: whoever can take the lock may remove it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """An advisory lock held on `path` (created if needed) for the block's duration:
    exclusive, or `shared` with other shared holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_if_free(fd: int) -> bool:
    """Take the exclusive lock of the open file `fd` unless somebody holds it (False), at once."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def try_lock(path: Path) -> bool:
    """True when nobody holds the lock on `path` right now (it is released at once)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        return lock_if_free(fd)
    finally:
        os.close(fd)


class HeldFile(ABC):
    """A file held locked for the object's life: `close()` (or the `with` block's end)
    lets it go."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
