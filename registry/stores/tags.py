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
        # `last` comes from the client and need not be a tag: the listing starts after its
        # longest tag-character prefix (a safe lower bound S3 accepts), the rest is filtered.
        want, out = n + 1, list[str]()
        cursor = _tag_bound(last) if last is not None else None
        while len(out) < want:
            batch = want - len(out)
            found = await self._backend.list_dir(
                paths.tags_dir(name), start_after=cursor, limit=batch
            )
            out += [t for t in found if last is None or t > last]
            if len(found) < batch:
                break
            cursor = found[-1]
        items = out[:n]
        # n == 0 must return an empty list and no Link (spec, "Listing Tags").
        return Page(items, items[-1] if len(out) > n and items else None)

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


_TAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_MAX_TAG = 128


def _tag_bound(last: str) -> str | None:
    """The longest prefix of `last` made of tag characters, at most a tag long: every tag
    greater than `last` is greater than it too."""
    end = next((i for i, c in enumerate(last) if c not in _TAG_CHARS), len(last))
    return last[: min(end, _MAX_TAG)] or None
