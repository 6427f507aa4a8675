"""Which repositories of which registry are known to hold a blob, in `<root>/sources.json`.

Recorded at pull and push time; push uses it to try a cross-repository mount
(`POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`) instead of uploading.
Shape: `{registry: {digest: [repository, ...]}}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocispec.digest import Digest
from puller.store.files import read_json, update_json


class BlobSources:
    def __init__(self, path: Path) -> None:
        self.file = Path(path)

    def record(self, registry: str, repository: str, *digests: Digest) -> None:
        """One locked write for all `digests` (each write is fsync'd: a push records its
        blobs together)."""

        def change(raw: Any) -> dict[str, Any]:
            data: dict[str, Any] = raw if isinstance(raw, dict) else {}
            per_registry = data.setdefault(registry, {})
            if not isinstance(per_registry, dict):
                per_registry = data[registry] = {}
            for digest in digests:
                repos = per_registry.get(str(digest))
                if not isinstance(repos, list):
                    repos = per_registry[str(digest)] = []
                if repository not in repos:
                    repos.append(repository)
            return data

        update_json(self.file, {}, change)

    def repositories(self, registry: str, digest: Digest) -> list[str]:
        data = read_json(self.file, {})
        per_registry = data.get(registry) if isinstance(data, dict) else None
        repos = per_registry.get(str(digest)) if isinstance(per_registry, dict) else None
        if not isinstance(repos, list):
            return []
        return [r for r in repos if isinstance(r, str)]

    def forget(self, digests: set[Digest]) -> None:
        """Drop entries of blobs no longer stored (called by prune)."""
        gone = {str(d) for d in digests}

        def change(raw: Any) -> dict[str, Any]:
            data: dict[str, Any] = raw if isinstance(raw, dict) else {}
            for registry in list(data):
                per_registry = data[registry]
                if isinstance(per_registry, dict):
                    for key in gone & set(per_registry):
                        del per_registry[key]
                if not per_registry:
                    del data[registry]
            return data

        update_json(self.file, {}, change)
