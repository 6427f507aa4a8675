"""Tags: `tag -> manifest digest` links inside a repository."""

from __future__ import annotations

from ocispec.digest import Digest, DigestError
from registry import errors
from registry.stores import paths
from storage_backends.base import NotFound, StorageBackend


class TagStore:
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    async def resolve(self, name: str, tag: str) -> Digest:
        try:
            raw = await self._backend.get(paths.tag_current_link(name, tag))
            return Digest.parse(raw.decode())
        except (NotFound, DigestError, UnicodeDecodeError):
            raise errors.MANIFEST_UNKNOWN(detail={"tag": tag}) from None

    async def set(self, name: str, tag: str, digest: Digest) -> None:
        await self._backend.put(paths.tag_current_link(name, tag), str(digest).encode())

    async def delete(self, name: str, tag: str) -> None:
        if not await self._backend.exists(paths.tag_current_link(name, tag)):
            raise errors.MANIFEST_UNKNOWN(detail={"tag": tag})
        await self._backend.delete_prefix(paths.tag_dir(name, tag))

    async def names(self, name: str) -> list[str]:
        """All tags of `name`, sorted (byte order, as Go's sort.Strings)."""
        try:
            return sorted(await self._backend.list_dir(paths.tags_dir(name)))
        except NotFound:
            return []

    async def pointing_to(self, name: str, digest: Digest) -> list[str]:
        found = []
        for tag in await self.names(name):
            try:
                raw = await self._backend.get(paths.tag_current_link(name, tag))
            except NotFound:
                continue
            if raw.decode(errors="replace") == str(digest):
                found.append(tag)
        return found
