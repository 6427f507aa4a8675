"""Image names (`name:tag` or `name@digest`) -> manifest digest, in `<root>/images.json`."""

from __future__ import annotations

from pathlib import Path

from ocispec.digest import Digest


class ImageIndex:
    def __init__(self, path: Path) -> None:
        self.file = path

    def set(self, name: str, digest: Digest) -> None:
        raise NotImplementedError

    def get(self, name: str) -> Digest | None:
        raise NotImplementedError

    def remove(self, name: str) -> bool:
        raise NotImplementedError

    def list(self) -> dict[str, Digest]:
        raise NotImplementedError
