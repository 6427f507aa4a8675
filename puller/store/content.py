"""Content-addressed blobs: `<root>/blobs/<alg>/<hex>`; partial downloads under `<root>/ingest/`.

A blob only ever appears under its digest name after its bytes were hashed and checked, so a
reader never sees a partial or corrupt blob. A partial download (`ingest/<alg>-<hex>.partial`)
survives the process: opening it again re-hashes the bytes already there (hashlib objects cannot
be saved) and continues from `offset`, which is what a pull sends as `Range: bytes=<offset>-`.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, BinaryIO

from ocispec.digest import Digest, DigestError, DigestMismatch, Verifier
from puller.store.errors import NotInStore, StoreError
from puller.store.files import fsync_dir
from puller.store.locks import HeldFile, lock_if_free

CHUNK = 1 << 20


class IngestBusy(StoreError):
    """Another open Ingest (in this or another process) is writing the same blob."""


class Ingest(HeldFile):
    """A resumable writer of one blob; the partial file survives process restarts.

    One writer per blob, enforced by a lock on the partial file: a second `ingest()` of the
    same digest (another pull in this or another process) waits up to `wait` seconds for the
    first to finish, then raises IngestBusy. When the blob is already stored (before or after
    waiting) the Ingest is complete at once: `offset == size`, `commit()` returns its path.
    """

    def __init__(
        self, store: ContentStore, digest: Digest, size: int | None, wait: float = 600.0
    ) -> None:
        self._store = store
        self.digest = digest
        self.size = size
        self.partial = store.root / "ingest" / f"{digest.algorithm}-{digest.hex}.partial"
        self._file: BinaryIO | None = None
        self._done: Path | None = None
        self._verifier = Verifier(digest, size)
        self.offset = 0
        if self._already_stored():
            return
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        fd = self._lock_partial(wait)
        if self._already_stored():  # finished by the writer we waited for
            os.unlink(self.partial)
            os.close(fd)
            return
        self._file = os.fdopen(fd, "r+b", buffering=0)
        self._rehash()

    def _already_stored(self) -> bool:
        path = self._store.blob_path(self.digest)
        if not path.is_file():
            return False
        self._done = path
        self.offset = path.stat().st_size
        return True

    def _lock_partial(self, wait: float) -> int:
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
            if not lock_if_free(fd):
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise IngestBusy(f"{self.digest} is already being written by another ingest")
                # polling, not a blocking flock: a waiter must never end up holding the
                # inode the other writer renamed into blobs/
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if _is_same_file(fd, self.partial):
                return fd
            os.close(fd)  # committed (renamed) or discarded meanwhile: open the path again

    def _rehash(self) -> None:
        f = self._require_open()
        f.seek(0)
        present = os.fstat(f.fileno()).st_size
        if self.size is not None and present > self.size:
            # Longer than the blob can be: the partial is garbage, start over.
            self.reset()
            return
        while chunk := f.read(CHUNK):
            self._verifier.update(chunk)
        self.offset = self._verifier.size

    def _require_open(self) -> BinaryIO:
        if self._file is None:
            raise StoreError(f"ingest of {self.digest} is closed")
        return self._file

    def write(self, chunk: bytes) -> None:
        if self._done is not None:
            raise StoreError(f"{self.digest} is already stored; nothing to write")
        f = self._require_open()
        try:
            self._verifier.update(chunk)
        except DigestMismatch:
            self._discard()
            raise
        view = memoryview(chunk)
        while view:  # an unbuffered write may be short
            written = f.write(view)
            view = view[written or 0 :]
        self.offset += len(chunk)

    def commit(self) -> Path:
        """Check digest and size, fsync, and publish under the digest name; return its path."""
        if self._done is not None:
            return self._done
        f = self._require_open()
        try:
            self._verifier.verify()
        except DigestMismatch:
            self._discard()
            raise
        os.fsync(f.fileno())
        target = self._store.blob_path(self.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial, target)
        fsync_dir(target.parent)
        self._release()
        return target

    def reset(self) -> None:
        """Discard the partial bytes and start again from 0 (e.g. the server ignored Range)."""
        if self._done is not None:
            raise StoreError(f"{self.digest} is already stored; nothing to reset")
        f = self._require_open()
        f.seek(0)
        f.truncate(0)
        self._verifier = Verifier(self.digest, self.size)
        self.offset = 0

    def close(self) -> None:
        """Keep the partial for a later resume and release the lock."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()
            self._release()

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)
        self._release()

    def _release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _is_same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"

    def blob_path(self, digest: Digest) -> Path:
        """Where the blob lives (or would live); no existence check."""
        return self.blobs / digest.algorithm / digest.hex

    def has(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def path(self, digest: Digest) -> Path:
        p = self.blob_path(digest)
        if not p.is_file():
            raise NotInStore(f"blob {digest} is not in the local store")
        return p

    def size(self, digest: Digest) -> int:
        return self.path(digest).stat().st_size

    def read_bytes(self, digest: Digest) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotInStore(f"blob {digest} is not in the local store") from None

    def write_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        if expected is not None and self.has(expected):
            return expected  # content-addressed: the same name is the same bytes
        return self.write_stream([data], expected, len(data) if expected else None)

    def write_stream(
        self,
        chunks: Iterable[bytes],
        expected: Digest | None = None,
        size: int | None = None,
        algorithm: str = "sha256",
    ) -> Digest:
        """Store a stream whose digest may be unknown in advance; verify it if given."""
        verifier = Verifier(expected, size, algorithm)
        tmpdir = self.root / "ingest"
        tmpdir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmpdir, prefix="stream-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    verifier.update(chunk)
                    f.write(chunk)
                digest = verifier.verify()
                f.flush()
                os.fsync(f.fileno())
            target = self.blob_path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(target.parent)
        return digest

    def write_file(
        self, src: IO[bytes], expected: Digest | None = None, size: int | None = None
    ) -> Digest:
        return self.write_stream(iter(lambda: src.read(CHUNK), b""), expected, size)

    def ingest(self, digest: Digest, size: int | None, wait: float = 600.0) -> Ingest:
        """A resumable writer of `digest` (see Ingest); waits up to `wait` s for another one."""
        return Ingest(self, digest, size, wait)

    def delete(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.blob_path(digest))

    def list(self) -> list[Digest]:
        out: list[Digest] = []
        if not self.blobs.is_dir():
            return out
        for alg_dir in sorted(self.blobs.iterdir()):
            if not alg_dir.is_dir():
                continue
            for entry in sorted(alg_dir.iterdir()):
                try:
                    out.append(Digest.parse(f"{alg_dir.name}:{entry.name}"))
                except DigestError:
                    continue
        return out

    def partials(self) -> builtins.list[Path]:
        d = self.root / "ingest"
        return sorted(d.iterdir()) if d.is_dir() else []
