"""Which repositories exist: one marker per repository, so listing never walks the bucket."""

from __future__ import annotations

from registry.stores import paths
from storage_backends.base import NotFound, StorageBackend


class CatalogStore:
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    async def mark(self, name: str) -> None:
        """Record `name` (idempotent; called whenever a repository gains content)."""
        marker = paths.catalog_marker(name)
        if not await self._backend.exists(marker):
            await self._backend.put(marker, b"")

    async def exists(self, name: str) -> bool:
        return await self._backend.exists(paths.catalog_marker(name))

    async def names(self) -> list[str]:
        """Every repository name, sorted as the spec wants (byte order of the real names)."""
        try:
            markers = await self._backend.list_dir(paths.CATALOG)
        except NotFound:
            return []
        return sorted(paths.catalog_name(m) for m in markers)
