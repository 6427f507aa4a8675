"""The filesystem's multipart parts, written in place into one data file per upload.

A chunked blob push arrives as one part per request, in order. Writing each part to a file of
its own and concatenating them at completion copied every byte a second time and fsync'd the
whole blob twice; here each part is written into the upload's one `data` file, at the end of
what the parts already there cover, and completing an upload whose parts tile that file from
offset 0 is a rename. Under the upload's directory (see filesystem.py):

    data                                the parts' bytes, each at its offset
    <number:05d>.<offset:x>.<size:x>.<token>.at
                                        an (empty) record: part `number` is `size` bytes of
                                        `data` from `offset`; created after those bytes are
                                        durable, so a record vouches for them
    <number:05d>.part                   a whole part in a file of its own (the layout before
                                        this one; still read, never written)

Rules that keep what the separate files guaranteed:
- One writer at a time: `data` is written only under an exclusive `flock` on it (several
  processes may share the root); a second writer waits for it (without holding a thread),
  and gives up as storage trouble after `LOCK_WAIT` seconds.
- Nothing a record vouches for is ever overwritten: a part goes at the end of the live
  records (`top`), and bytes beyond it, which a writer killed mid-part left and no record
  names, are cut off first. A re-uploaded number therefore lands after its old bytes, its
  new record replaces the old one (the highest offset wins should a crash leave both), and
  the ETag (offset, size, a random token) changes with it: the caller's ETag check at
  completion still tells a rewritten part from the one it recorded.
- Completion takes the lock too, and a writer that got the lock checks that `data` is still
  the upload's (not renamed away by a completion that went first).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage_backends.base import CHUNK_SIZE, Part

DATA = "data"
_RECORD = ".at"
_LEGACY = ".part"
#: seconds a part write or a completion waits for another writer of the same upload
LOCK_WAIT = 30.0
#: how often it looks again meanwhile
LOCK_POLL = 0.05
_OPEN_DATA = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NEW_RECORD = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class Record:
    number: int
    file: str  # DATA, or a legacy part file's name
    offset: int
    size: int
    etag: str
    name: str  # the record's own file name

    @property
    def end(self) -> int:
        return self.offset + self.size

    def part(self) -> Part:
        return Part(self.number, self.size, self.etag)


def scan(directory: Path) -> dict[int, Record]:
    """The upload's parts by number (one directory listing, no file opened)."""
    records: dict[int, Record] = {}
    legacy: dict[int, Record] = {}
    with os.scandir(directory) as it:
        for entry in it:
            name = entry.name
            if name.endswith(_RECORD):
                fields = name[: -len(_RECORD)].split(".")
                if len(fields) != 4 or not fields[0].isdigit():
                    continue
                number, offset, size = int(fields[0]), int(fields[1], 16), int(fields[2], 16)
                record = Record(number, DATA, offset, size, ".".join(fields[1:]), name)
                have = records.get(number)
                if have is None or record.offset > have.offset:  # the newest: appends only rise
                    records[number] = record
            elif name.endswith(_LEGACY) and name[: -len(_LEGACY)].isdigit():
                st = entry.stat()
                number = int(name[: -len(_LEGACY)])
                etag = f"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"
                legacy[number] = Record(number, name, 0, st.st_size, etag, name)
    for number, record in legacy.items():
        records.setdefault(number, record)
    return records


def try_lock(directory: Path) -> int | None:
    """The upload's `data` file opened (created when missing) and locked exclusively, or None
    while another writer holds it. FileNotFoundError: the upload is gone."""
    path = directory / DATA
    while True:
        fd = os.open(path, _OPEN_DATA, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            mine, current = os.fstat(fd), os.stat(path)
        except FileNotFoundError:
            current = None  # renamed away by a completion that held the lock before us
        except BaseException:
            os.close(fd)
            raise
        if current is not None and (mine.st_ino, mine.st_dev) == (current.st_ino, current.st_dev):
            return fd
        os.close(fd)  # opened the file a completion then published: open the upload's anew


def prepare(fd: int, directory: Path, number: int) -> int:
    """Where part `number` goes (the end of what live records cover); what lies beyond (a
    killed writer's partial bytes, named by no record) is cut off first."""
    top = max((r.end for r in scan(directory).values() if r.file == DATA), default=0)
    if os.fstat(fd).st_size != top:
        os.ftruncate(fd, top)
    return top


def record(fd: int, directory: Path, number: int, offset: int, size: int, durable: bool) -> Part:
    """Make part `number` (`size` bytes written at `offset`) durable, then its record; older
    records of the number go after the new one exists."""
    if durable:
        os.fdatasync(fd)
    token = os.urandom(4).hex()
    name = f"{number:05d}.{offset:x}.{size:x}.{token}{_RECORD}"
    os.close(os.open(directory / name, _NEW_RECORD, 0o644))
    if durable:
        fsync_dir(directory)  # the record (and a new `data` file's own entry)
    for entry in os.scandir(directory):
        if entry.name != name and (
            entry.name.startswith(f"{number:05d}.")
            and (entry.name.endswith(_RECORD) or entry.name == f"{number:05d}{_LEGACY}")
        ):
            unlink_quiet(entry.path)
    return Part(number, size, f"{offset:x}.{size:x}.{token}")


def tiles_data(records: list[Record]) -> bool:
    """Whether the records lie in `data` back to back from offset 0 (completion: a rename)."""
    at = 0
    for r in records:
        if r.file != DATA or r.offset != at:
            return False
        at = r.end
    return True


def cut_to(fd: int, size: int, durable: bool) -> None:
    """`data` ends where the last chosen part ends (stray bytes beyond go)."""
    have = os.fstat(fd).st_size
    if have < size:
        raise OSError(errno.EIO, f"upload data is {have} bytes, its parts need {size}")
    if have > size:
        os.ftruncate(fd, size)
        if durable:
            os.fsync(fd)  # the new length must survive with the rename


def copy_parts(directory: Path, data_fd: int, records: list[Record], out: int) -> None:
    """Append each record's bytes to `out`, in the kernel where it can (copy_file_range)."""
    for r in records:
        if r.file == DATA:
            _copy_range(data_fd, out, r.offset, r.size)
        else:
            src = os.open(directory / r.file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                _copy_range(src, out, 0, r.size)
            finally:
                os.close(src)


def _copy_range(src: int, dst: int, offset: int, size: int) -> None:
    copy: Callable[..., int] | None = getattr(os, "copy_file_range", None)
    left = size
    if copy is not None:
        try:
            while left:
                n = copy(src, dst, min(left, 64 * CHUNK_SIZE), offset)
                if n == 0:
                    break
                offset += n
                left -= n
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    while left:
        piece = os.pread(src, min(left, CHUNK_SIZE), offset)
        if not piece:
            break
        os.write(dst, piece)
        offset += len(piece)
        left -= len(piece)
    if left:
        raise OSError(errno.EIO, f"upload part shorter than recorded ({left} bytes missing)")


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable: without this a power cut after the rename may
    bring back the old name (or none) although the file's bytes were fsync'd."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quiet(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
