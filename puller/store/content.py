"""Content-addressed blobs: `<root>/blobs/<alg>/<hex>`, partial downloads under `<root>/ingest/`."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from ocispec.digest import Digest


class Ingest:
    """A resumable writer of one blob; the partial file survives process restarts."""

    offset: int

    def write(self, chunk: bytes) -> None:
        raise NotImplementedError

    def commit(self) -> Path:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Ingest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def has(self, digest: Digest) -> bool:
        raise NotImplementedError

    def path(self, digest: Digest) -> Path:
        raise NotImplementedError

    def read_bytes(self, digest: Digest) -> bytes:
        raise NotImplementedError

    def write_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        raise NotImplementedError

    def ingest(self, digest: Digest, size: int | None) -> Ingest:
        raise NotImplementedError

    def delete(self, digest: Digest) -> None:
        raise NotImplementedError

    def list(self) -> list[Digest]:
        raise NotImplementedError
