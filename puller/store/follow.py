"""Read a blob while it downloads, so a layer unpacks side by side with its own download.

A `GrowingFile` reads the ingest's partial file through its own descriptor (opened while the
ingest holds the partial's lock, so the commit's rename does not matter) up to the bytes the
downloader reported written, and waits for more. It returns end-of-file only after `finish()`,
which the puller calls once the blob's digest and size were verified and the blob committed:
whoever unpacks from it publishes nothing built from unverified bytes. Anything unusual (a
retry, a reset, a failed download, the blob already stored) `abandon()`s it: the reader
raises `Abandoned` and the layer is unpacked from the committed blob instead, as before.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from puller.store.errors import StoreError

_WAKE_MAX = 1 << 20


class Abandoned(StoreError):
    """The download this stream follows was retried, reset or failed: unpack from the blob."""


class GrowingFile:
    """A read-only, forward-only file object over a partial file another thread appends to.
    Writer side (the downloader): `attach`, `grew`, `finish`, `abandon`; reader side: `read`
    (at most 1 MiB per call, also for read())."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._written = 0
        self._pos = 0
        self._complete = False
        self._abandoned = False
        self._wake_at: int | None = None  # a waiting reader wants the file this long
        self.size = 0  # the blob's size, once finished

    def attach(self, partial: Path, written: int) -> None:
        """The ingest holds `partial` (locked) with `written` bytes in it."""
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW)
        with self._cond:
            if self._fd is not None or self._abandoned:
                os.close(fd)
                self._abandon_locked()
                return
            self._fd = fd
            self._written = written
            self._cond.notify_all()

    def grew(self, written: int) -> None:
        with self._cond:
            self._written = written
            if self._wake_at is not None and written >= self._wake_at:
                self._cond.notify_all()

    def finish(self) -> None:
        """The blob is verified and committed: what was written is all there is."""
        with self._cond:
            if self._fd is None:
                self._abandon_locked()
            self._complete = True
            self.size = self._written
            self._cond.notify_all()

    def abandon(self) -> None:
        """Idempotent; a no-op once finished."""
        with self._cond:
            if not self._complete:
                self._abandon_locked()

    def _abandon_locked(self) -> None:
        self._abandoned = True
        self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        # wait for a full read's worth (or the end), not for each network piece: one wake-up
        # per decompressor read instead of one per socket receive
        wanted = n if 0 < n < _WAKE_MAX else _WAKE_MAX
        with self._cond:
            while True:
                if self._abandoned:
                    self._close()
                    raise Abandoned("the download was interrupted")
                available = self._written - self._pos
                if self._fd is not None and (available >= wanted or self._complete):
                    break
                self._wake_at = self._pos + wanted
                self._cond.wait()
                self._wake_at = None
            fd = self._fd
        if available <= 0:
            self._close()
            return b""
        data = os.pread(fd, min(available, n if n > 0 else _WAKE_MAX), self._pos)
        if not data:  # the partial was cut short under us: not the file we were told of
            self._close()
            raise Abandoned("the partial file is shorter than written")
        self._pos += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
