"""Early writeback for streamed writes: the disk works while the body is still arriving.

A blob pushed in one request is written in MiB pieces and fsync'd once at the end (an
acknowledged push is durable). Left alone, the kernel keeps the dirty pages until that fsync
(or its own expiry, 30 s by default), and the fsync then waits for the whole object to reach
the disk after the last byte has arrived: for 256 MiB that was ~0.5 s of a 1.4 s push here.
`Writeback` asks the kernel to start writing each complete window as soon as it is written
(`sync_file_range(..., SYNC_FILE_RANGE_WRITE)`: asynchronous, it only queues the I/O), so the
final fsync waits for the tail alone. Durability still comes from that fsync and nothing else;
this only changes when the disk does the work. Pages stay in the page cache (a fresh blob is
often pulled soon), unlike `posix_fadvise(DONTNEED)`, which would also start writeback.

Python's `os` has no `sync_file_range`; it is called through ctypes (glibc and musl have it).
Where it is missing (not Linux) or a filesystem refuses it, streams are written as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

#: bytes handed to the kernel's writeback at a time: large enough that each call queues a
#: sizeable I/O, small enough that the fsync at the end has little left to wait for
WINDOW = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call  # type: ignore[no-any-return]


_sync_file_range = _load()


def available() -> bool:
    return _sync_file_range is not None


class Writeback:
    """Starts writeback of one file's bytes window by window as a writer reports them.

    Called from the worker thread that wrote (ctypes drops the GIL for the call)."""

    def __init__(self, fd: int, offset: int = 0, enabled: bool = True) -> None:
        self._fd = fd
        self._start = offset  # the first byte not yet handed to writeback
        self._enabled = enabled and _sync_file_range is not None

    def written(self, end: int) -> None:
        """The file's bytes up to `end` are written: queue them once a window is complete."""
        if not self._enabled or end - self._start < WINDOW:
            return
        assert _sync_file_range is not None
        if _sync_file_range(self._fd, self._start, end - self._start, _SYNC_FILE_RANGE_WRITE):
            # refused (EINVAL on a filesystem without it, ESPIPE...): plain writes from here
            # on; the fsync at the end makes the bytes durable either way
            self._enabled = False
            return
        self._start = end

    @property
    def active(self) -> bool:
        return self._enabled
