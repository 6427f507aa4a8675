"""Reading one file's byte range in pieces, each piece one call in a worker thread.

The filesystem backend's `stream` drives a `PieceReader` through its own thread pool: the
first call opens the file and learns its size (so an absent file is `FileNotFoundError`
before anything is yielded), every call reads one piece with `pread`, and the call that
reads the last byte also closes the file. A 16 MiB blob is 16 thread hops, where aiofiles
needed an open, 16 reads and a close (18 hops through asyncio's default executor, whose
`cpus + 4` threads every other `to_thread` call shares).

A new `bytes` per piece, not a buffer reused across pieces: the piece goes to the
transport, which keeps a reference to what it could not send yet (uvloop buffers a
`memoryview` of the object, no copy), and the application is not told when it is sent.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading

_OPEN = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class PieceReader:
    """`next()` (in a worker thread) returns the next piece of at most `piece_size` bytes,
    or `b""` at the end. `close()` releases the file early and ends the reading; it waits
    for a `next()` in progress (a read whose awaiting request was cancelled goes on in its
    thread), so the descriptor is never closed under a read, nor its number reused by then."""

    def __init__(self, path: str, offset: int, length: int | None, piece_size: int) -> None:
        self.path = path
        self._position = offset
        self._length = length
        self._piece = piece_size
        self._remaining = -1  # unknown until the file is open
        self._fd: int | None = None
        self._started = False
        # set once no file is or will be open; read without the lock by the event loop, so it
        # turns true only after the descriptor is closed (`_started and _fd is None` also held
        # while a first `next()` was still opening the file: a stream cancelled right then
        # skipped its close, and the descriptor stayed open as long as the reader lived)
        self._done = False
        self._lock = threading.Lock()

    @property
    def finished(self) -> bool:
        """Read to the end, failed to open, or closed: no file is or will be open. False
        while a first `next()` waits in a queue or is opening the file."""
        return self._done

    def next(self) -> bytes:
        with self._lock:
            if not self._started:
                self._started = True
                try:
                    self._open()
                except BaseException:
                    self._done = True
                    raise
            fd = self._fd
            if fd is None:
                return b""
            data = os.pread(fd, min(self._piece, self._remaining), self._position)
            self._position += len(data)
            self._remaining -= len(data)
            if not data or self._remaining <= 0:
                self._close()  # the last piece: no hop of its own to close the file
            return data

    def _open(self) -> None:
        fd = os.open(self.path, _OPEN)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a directory opens, but is a prefix, not an object
                raise IsADirectoryError(errno.EISDIR, "not a file", self.path)
            size = st.st_size
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        available = max(0, size - self._position)
        self._remaining = available if self._length is None else min(self._length, available)
        if self._remaining <= 0:
            self._close()

    def close(self) -> None:
        with self._lock:
            self._started = True  # a later next() reads nothing
            self._remaining = 0
            self._close()

    def __del__(self) -> None:
        # A stream dropped without being closed (a cancelled request's generator is only
        # finalised by the garbage collector): nothing can be reading now, so close here.
        self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._done = True


def open_regular(path: str) -> io.FileIO:
    """`path` open for reading, refused (IsADirectoryError) unless it is a regular file."""
    file = io.FileIO(path, "r")
    try:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a file", path)
    except BaseException:
        file.close()
        raise
    return file
