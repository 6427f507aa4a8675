"""The referrers index: per subject digest, one small descriptor object per referring manifest.

Maintained when a manifest with `subject` is pushed or deleted, so listing never scans
manifests. One object per referrer (not one shared list) means concurrent pushes never lose
each other's entries.
"""

from __future__ import annotations

import json
from typing import Any

from ocispec.digest import Digest
from registry.stores import paths
from registry.stores.batch import Batch
from storage_backends.base import NotFound, StorageBackend


class ReferrerStore:
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    async def add(
        self, name: str, subject: Digest, referrer: Digest, descriptor: dict[str, Any]
    ) -> None:
        batch = Batch()
        self.stage_add(batch, name, subject, referrer, descriptor)
        await batch.run(self._backend)

    @staticmethod
    def stage_add(
        batch: Batch, name: str, subject: Digest, referrer: Digest, descriptor: dict[str, Any]
    ) -> None:
        """`add` as one write of a batch (a manifest PUT's, with its tags)."""
        entry = paths.referrer_entry(name, subject, referrer)
        batch.put(entry, json.dumps(descriptor, sort_keys=True).encode())

    async def remove(self, name: str, subject: Digest, referrer: Digest) -> None:
        await self._backend.delete(paths.referrer_entry(name, subject, referrer))

    async def list(
        self, name: str, subject: Digest, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Descriptors of the manifests referring to `subject`, optionally filtered."""
        base = paths.referrers_dir(name, subject)
        out: list[dict[str, Any]] = []
        try:
            keys = [key async for key in self._backend.walk(base)]
        except NotFound:
            return out
        for key in keys:
            try:
                descriptor = json.loads(await self._backend.get(key))
            except (NotFound, ValueError):
                continue
            if artifact_type is None or descriptor.get("artifactType", "") == artifact_type:
                out.append(descriptor)
        return out
