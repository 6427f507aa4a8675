"""Image names -> manifest digest, in `<root>/images.json`.

Names are what the caller passes, typically a normalised reference such as
`localhost:5000/a/b:tag` or `localhost:5000/a/b@sha256:...`. Every write is a read-modify-write
under `images.json.lock`, published by an atomic rename, so concurrent processes do not lose
each other's tags and a reader never sees a torn file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocispec.digest import Digest, DigestError
from ocispec.reference import Reference
from puller.store.files import read_json, update_json


def image_name(ref: Reference) -> str:
    """How the index names an image: `registry/repository:tag` (default latest) or `...@digest`."""
    if ref.digest is not None:
        return f"{ref.name}@{ref.digest}"
    return f"{ref.name}:{ref.tag or 'latest'}"


def _parse(raw: Any) -> dict[str, Digest]:
    out: dict[str, Digest] = {}
    if not isinstance(raw, dict):
        return out
    for name, value in raw.items():
        if isinstance(name, str) and isinstance(value, str):
            try:
                out[name] = Digest.parse(value)
            except DigestError:
                continue
    return out


class ImageIndex:
    def __init__(self, path: Path) -> None:
        self.file = Path(path)

    def set(self, name: str, digest: Digest) -> None:
        if not name:
            raise ValueError("an image name must not be empty")

        def change(raw: Any) -> dict[str, str]:
            current = {k: str(v) for k, v in _parse(raw).items()}
            current[name] = str(digest)
            return current

        update_json(self.file, {}, change)

    def get(self, name: str) -> Digest | None:
        return self.list().get(name)

    def remove(self, name: str) -> bool:
        removed = False

        def change(raw: Any) -> dict[str, str]:
            nonlocal removed
            current = {k: str(v) for k, v in _parse(raw).items()}
            removed = current.pop(name, None) is not None
            return current

        update_json(self.file, {}, change)
        return removed

    def list(self) -> dict[str, Digest]:
        return _parse(read_json(self.file, {}))
