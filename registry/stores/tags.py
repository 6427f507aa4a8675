"""Tags: `tag -> manifest digest` links inside a repository.

One flat object per tag (`paths.tag_link`), so the storage's key order is the spec's tag order
and a page of `n` tags after `last` is one bounded listing, however many tags there are.
"""

from __future__ import annotations

from ocispec.digest import Digest, DigestError
from registry import errors
from registry.stores import paths
from registry.stores.pagination import Page
from storage_backends.base import NotFound, StorageBackend


class TagStore:
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    async def resolve(self, name: str, tag: str) -> Digest:
        try:
            raw = await self._backend.get(paths.tag_link(name, tag))
            return Digest.parse(raw.decode())
        except (NotFound, DigestError, UnicodeDecodeError):
            raise errors.MANIFEST_UNKNOWN(detail={"tag": tag}) from None

    async def set(self, name: str, tag: str, digest: Digest) -> None:
        await self._backend.put(paths.tag_link(name, tag), str(digest).encode())

    async def delete(self, name: str, tag: str) -> None:
        if not await self._backend.exists(paths.tag_link(name, tag)):
            raise errors.MANIFEST_UNKNOWN(detail={"tag": tag})
        await self._backend.delete(paths.tag_link(name, tag))

    async def names(self, name: str) -> list[str]:
        """All tags of `name`, sorted (byte order, as Go's sort.Strings)."""
        try:
            return sorted(await self._backend.list_dir(paths.tags_dir(name)))
        except NotFound:
            return []

    async def page(self, name: str, n: int | None, last: str | None) -> Page:
        """At most `n` tags after `last` (None: all), from one bounded listing."""
        if n is None:
            return Page([t for t in await self.names(name) if last is None or t > last], None)
        found = await self._backend.list_dir(paths.tags_dir(name), start_after=last, limit=n + 1)
        items = found[:n]
        # n == 0 must return an empty list and no Link (spec, "Listing Tags").
        return Page(items, items[-1] if len(found) > n and items else None)

    async def pointing_to(self, name: str, digest: Digest) -> list[str]:
        found = []
        for tag in await self.names(name):
            try:
                raw = await self._backend.get(paths.tag_link(name, tag))
            except NotFound:
                continue
            if raw.decode(errors="replace") == str(digest):
                found.append(tag)
        return found
