"""Holds: images something outside the store still uses (a container, a build).

`<root>/holds/<holder>` holds one manifest digest. The store knows nothing about containers;
the runtime adds a hold when it creates one and releases it when it removes it. `prune` keeps
every held image's content and `rmi` refuses to drop the last name of a held image.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ocispec.digest import Digest, DigestError
from puller.store.files import atomic_write


class Holds:
    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "holds"

    def add(self, holder: str, digest: Digest) -> None:
        if not holder or "/" in holder or holder.startswith("."):
            raise ValueError(f"invalid holder name {holder!r}")
        atomic_write(self.dir / holder, str(digest).encode())

    def release(self, holder: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / holder)

    def held(self) -> dict[Digest, list[str]]:
        """Held manifest digest -> holders."""
        out: dict[Digest, list[str]] = {}
        if not self.dir.is_dir():
            return out
        for entry in sorted(self.dir.iterdir()):
            if entry.name.startswith("."):
                continue
            try:
                digest = Digest.parse(entry.read_text().strip())
            except (OSError, DigestError):
                continue
            out.setdefault(digest, []).append(entry.name)
        return out
