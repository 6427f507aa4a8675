"""Which repositories of which registry are known to hold a blob (for cross-repository mount)."""

from __future__ import annotations

from pathlib import Path

from ocispec.digest import Digest


class BlobSources:
    def __init__(self, path: Path) -> None:
        self.file = path

    def record(self, registry: str, repository: str, digest: Digest) -> None:
        raise NotImplementedError

    def repositories(self, registry: str, digest: Digest) -> list[str]:
        raise NotImplementedError
