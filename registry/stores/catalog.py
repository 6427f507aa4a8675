"""Which repositories exist: one marker per repository, so listing never walks the bucket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from registry.stores import paths
from registry.stores.pagination import Page
from storage_backends.base import NotFound, StorageBackend

#: markers fetched per listing request when the caller filters (may not see every repository)
_BATCH = 100
#: repository names one process remembers as recorded
_MARKED_MAX = 100_000


class CatalogStore:
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend
        # Names whose marker this process has seen or written: nothing deletes a marker, so
        # a repository's every later push needs no storage call for it (bounded: cleared
        # when full, which only costs one existence check per name again).
        self._marked: set[str] = set()

    async def mark(self, name: str) -> None:
        """Record `name` (idempotent; called whenever a repository gains content)."""
        if name in self._marked:
            return
        marker = paths.catalog_marker(name)
        if not await self._backend.exists(marker):
            await self._backend.put(marker, b"")
        if len(self._marked) >= _MARKED_MAX:
            self._marked.clear()
        self._marked.add(name)

    async def exists(self, name: str) -> bool:
        return await self._backend.exists(paths.catalog_marker(name))

    async def names(self) -> list[str]:
        """Every repository name, sorted as the spec wants (byte order of the real names)."""
        try:
            markers = await self._backend.list_dir(paths.CATALOG)
        except NotFound:
            return []
        return sorted(paths.catalog_name(m) for m in markers)

    async def page(
        self,
        n: int | None,
        last: str | None,
        visible: Callable[[str], Awaitable[bool]] | None = None,
    ) -> Page:
        """At most `n` repositories after `last` that `visible` accepts. Markers sort as the
        names do, so this reads from `last` on and stops once the page is full: O(page) when
        the caller sees most repositories, not a walk of the whole catalog."""
        out: list[str] = []
        cursor = paths.catalog_start_after(last) if last is not None else None
        want = None if n is None else n + 1
        while want is None or len(out) < want:
            # Unfiltered, exactly what is missing; filtered, a batch (some may be invisible).
            batch = want - len(out) if want is not None and visible is None else _BATCH
            markers = await self._backend.list_dir(paths.CATALOG, start_after=cursor, limit=batch)
            for marker in markers:
                name = paths.catalog_name(marker)
                if (last is None or name > last) and (visible is None or await visible(name)):
                    out.append(name)
                    if want is not None and len(out) == want:
                        break
            if len(markers) < batch:
                break
            cursor = markers[-1]
        if n is None:
            return Page(out, None)
        items = out[:n]
        return Page(items, items[-1] if len(out) > n and items else None)
