"""What running pulls hold, so that a concurrent `prune` keeps it.

A pull opens a lease, `<root>/leases/<random>.json`, flock'ed by the pull for as long as it
runs, and adds to it the blobs and layer chainIDs it uses, each *before* it looks for them in
the store or fetches them. `prune` marks and sweeps under an exclusive lock on `<root>/gc.lock`;
opening and adding to a lease take that lock shared. So an addition is either seen by a
prune's mark, or made after its sweep (then the pull finds the blob gone and fetches it).
A lease file nobody holds locked belongs to a process that died: prune removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ocispec.digest import Digest, DigestError
from puller.store.locks import HeldFile, file_lock, lock_if_free


class Lease(HeldFile):
    """One pull's hold on blobs and layers; `close()` (or the `with` block's end) drops it."""

    def __init__(self, leases: Leases) -> None:
        self._leases = leases
        self.blobs: set[Digest] = set()
        self.layers: set[Digest] = set()
        with leases.shared():
            leases.dir.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(dir=leases.dir, suffix=".json")
            fcntl.flock(fd, fcntl.LOCK_EX)  # a prune that can take it knows the holder died
        self.path = Path(path)
        self._fd: int | None = fd

    def add(self, blobs: Iterable[Digest] = (), layers: Iterable[Digest] = ()) -> None:
        """Hold these too; returns once no prune can miss them (may wait for one to end)."""
        if self._fd is None:
            raise ValueError("the lease is closed")
        with self._leases.shared():
            self.blobs.update(blobs)
            self.layers.update(layers)
            data = json.dumps(
                {"blobs": sorted(map(str, self.blobs)), "layers": sorted(map(str, self.layers))}
            ).encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


class Leases:
    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "leases"
        self.gc_lock = Path(root) / "gc.lock"

    def open(self) -> Lease:
        return Lease(self)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with file_lock(self.gc_lock, shared=True):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by prune from mark to sweep: no lease changes meanwhile."""
        with file_lock(self.gc_lock):
            yield

    def held(self) -> tuple[set[Digest], set[Digest]]:
        """(blobs, chainIDs) held by running pulls; removes the leases of dead ones. Call it
        inside `exclusive()`."""
        blobs: set[Digest] = set()
        layers: set[Digest] = set()
        if not self.dir.is_dir():
            return blobs, layers
        for path in self.dir.iterdir():
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                if lock_if_free(fd):  # its pull ended
                    path.unlink(missing_ok=True)
                    continue
                raw = _read_all(fd)
            finally:
                os.close(fd)
            blobs.update(_digests(raw, "blobs"))
            layers.update(_digests(raw, "layers"))
        return blobs, layers


def _read_all(fd: int) -> object:
    data = bytearray()
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def _digests(raw: object, key: str) -> set[Digest]:
    values = raw.get(key) if isinstance(raw, dict) else None
    out: set[Digest] = set()
    for value in values if isinstance(values, list) else []:
        with contextlib.suppress(DigestError, TypeError, AttributeError):
            out.add(Digest.parse(value))
    return out
