"""Background flushes for streamed writes: the disk works while the body is still arriving.

A blob pushed in one request is written in MiB pieces and fsync'd once at the end (an
acknowledged push is durable). Left alone, the bytes wait in caches until that fsync: the
kernel's page cache (its own writeback starts after 30 s by default), and on a virtual
machine also the host's, which the fsync's cache flush then has to empty. The fsync then
waits for the whole object after the last byte has arrived: for 256 MiB that was ~0.45 s of a
~1.1 s push on this project's test machine (docs/performance.md, 2026-12-02).

`Writeback` has every complete window flushed (`fdatasync`) by a thread of its own while the
writer goes on, at most one flush at a time per stream, so the fsync at the end waits for
the last window or so. Durability still comes from that final fsync and nothing else; this
only changes when the disk does the work. The flushing thread works on a duplicate of the
descriptor and closes it itself, so the writer may close its own at any time. A duplicate
shares the writer's open file, and the kernel reports a write-back error once per open file:
an error a flush meets is kept and raised by `finish`, which the writer calls before its own
fsync, so a full or failing disk still fails the request.

(Starting the page cache's writeback early with `sync_file_range` was tried first: it emptied
the guest's cache but not the host's, and the final flush still took ~0.4 s.)
"""

from __future__ import annotations

import os
import threading

#: bytes written between two background flushes: large enough that a flush is worth a
#: thread, small enough that the fsync at the end has little left
WINDOW = 32 * 1024 * 1024


def _flush(fd: int) -> None:
    os.fdatasync(fd)


class Writeback:
    """Flushes one file window by window, in the background, as a writer reports its bytes.

    `written` is called from the worker thread that wrote and never blocks on the disk;
    `finish` before the writer's own fsync: a write-back error is reported once per open
    file, and the flush shares the writer's, so what a flush met is raised there."""

    def __init__(self, fd: int, offset: int = 0, enabled: bool = True) -> None:
        self._fd = fd
        self._flushed = offset  # where the last flush started from the writer's side
        self._enabled = enabled
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        self.flushes = 0  # started so far (none: `finish` has nothing to wait for)

    def written(self, end: int) -> None:
        """The file's bytes up to `end` are written: flush them once a window is complete
        (unless a flush is still running: the next report catches up)."""
        if not self._enabled or end - self._flushed < WINDOW or self._error is not None:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._flushed = end
        self._thread = threading.Thread(
            target=self._flush, args=(os.dup(self._fd),), name="pyreg-flush", daemon=True
        )
        self._thread.start()
        self.flushes += 1

    def _flush(self, fd: int) -> None:
        try:
            _flush(fd)
        except OSError as exc:  # EIO, ENOSPC: the writer raises it (finish)
            self._error = exc
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Wait for a running flush; raise the error a flush met, if any."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
