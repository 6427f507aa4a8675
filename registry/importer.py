"""Import a CNCF distribution (registry:2) filesystem storage tree into pyreg's storage.

distribution's layout, below its `rootdirectory`:

```
docker/registry/v2/
├── blobs/sha256/<hh>/<hex>/data                       content (layers, configs, manifests)
└── repositories/<name>/                               <name> may contain slashes
    ├── _layers/sha256/<hex>/link                      blob visible in <name> ("sha256:<hex>")
    ├── _manifests/revisions/sha256/<hex>/link         manifest in <name>
    ├── _manifests/tags/<tag>/current/link             tag -> manifest digest
    └── _uploads/                                      unfinished uploads (not imported)
```

Everything goes in through pyreg's own stores, as a push would: every blob is re-hashed
while it streams (a corrupt source blob is refused, not copied), every manifest is parsed and
stored with its links, referrers index and tags, so the result is exactly what pushing the same
images would have left. Blobs present on disk but linked by no repository are garbage there
and are not imported. Re-running is safe: content already imported is only re-linked.

The source must not change while it is read: stop the source registry or put it in
`maintenance: readonly` mode first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiofiles

from ocispec.digest import Digest
from ocispec.reference import valid_repository_name, valid_tag
from registry import errors
from registry.stores.repository import RegistryStore

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


class SourceError(Exception):
    """The source is not a distribution storage tree."""


@dataclass(slots=True)
class SourceRepository:
    name: str
    blobs: list[Digest]
    manifests: list[Digest]
    tags: dict[str, Digest]


@dataclass(slots=True)
class ImportReport:
    repositories: int = 0
    blobs: int = 0  # blob links made (layers and configs)
    bytes_copied: int = 0  # content written (blobs already present are not copied again)
    manifests: int = 0
    tags: int = 0
    skipped: list[str] = field(default_factory=list)  # what could not be imported, and why

    def summary(self) -> str:
        return (
            f"imported {self.repositories} repositories: {self.manifests} manifest(s), "
            f"{self.tags} tag(s), {self.blobs} blob link(s), {self.bytes_copied} bytes copied; "
            f"{len(self.skipped)} skipped"
        )


def find_root(path: Path) -> Path:
    """The `docker/registry/v2` directory at or below `path` (the registry's rootdirectory,
    or that directory itself)."""
    for candidate in (path / "docker" / "registry" / "v2", path):
        if (candidate / "repositories").is_dir() or (candidate / "blobs").is_dir():
            return candidate
    raise SourceError(
        f"{path} is not a distribution storage root (no docker/registry/v2/repositories in it)"
    )


def _read_link(path: Path) -> Digest | None:
    try:
        return Digest.parse(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _links(directory: Path) -> list[Digest]:
    """Digests of `<directory>/<alg>/<hex>/link` files whose content matches their path."""
    out: list[Digest] = []
    if not directory.is_dir():
        return out
    for link in sorted(directory.glob("*/*/link")):
        digest = _read_link(link)
        if digest is not None and f"{digest.algorithm}/{digest.hex}" == (
            f"{link.parent.parent.name}/{link.parent.name}"
        ):
            out.append(digest)
    return out


def read_repositories(root: Path) -> list[SourceRepository]:
    """Every repository under `root/repositories`, names in sorted order."""
    base = root / "repositories"
    found: list[SourceRepository] = []
    if not base.is_dir():
        return found
    pending = [base]
    while pending:
        directory = pending.pop()
        children = sorted(p for p in directory.iterdir() if p.is_dir())
        if any(c.name in ("_manifests", "_layers") for c in children):
            tags: dict[str, Digest] = {}
            tags_dir = directory / "_manifests" / "tags"
            if tags_dir.is_dir():
                for tag_dir in sorted(tags_dir.iterdir()):
                    digest = _read_link(tag_dir / "current" / "link")
                    if digest is not None:
                        tags[tag_dir.name] = digest
            found.append(
                SourceRepository(
                    name=directory.relative_to(base).as_posix(),
                    blobs=_links(directory / "_layers"),
                    manifests=_links(directory / "_manifests" / "revisions"),
                    tags=tags,
                )
            )
        # Names nest (`a` and `a/b` may both be repositories); `_`-dirs are never names.
        pending.extend(c for c in children if not c.name.startswith("_"))
    return sorted(found, key=lambda r: r.name)


class Importer:
    def __init__(
        self, store: RegistryStore, source: Path, log: Callable[[str], None] | None = None
    ) -> None:
        self._store = store
        self._root = find_root(source)
        self._log = log or (lambda message: logger.info("%s", message))

    def _blob_path(self, digest: Digest) -> Path:
        return self._root / "blobs" / digest.algorithm / digest.hex[:2] / digest.hex / "data"

    async def _chunks(self, path: Path) -> AsyncIterator[bytes]:
        async with aiofiles.open(path, "rb") as f:
            while chunk := await f.read(_CHUNK):
                yield chunk

    async def run(self) -> ImportReport:
        report = ImportReport()
        for repo in read_repositories(self._root):
            # distribution validated names and tags on push; a hand-edited tree may not have.
            if not valid_repository_name(repo.name):
                report.skipped.append(f"{repo.name}: not a valid repository name")
                continue
            for tag in [t for t in repo.tags if not valid_tag(t)]:
                report.skipped.append(f"{repo.name}:{tag}: not a valid tag")
                del repo.tags[tag]
            report.repositories += 1
            for digest in repo.blobs:
                await self._import_blob(repo.name, digest, report)
            await self._import_manifests(repo, report)
        return report

    async def _import_blob(self, name: str, digest: Digest, report: ImportReport) -> None:
        blobs = self._store.blobs
        path = self._blob_path(digest)
        if await blobs.exists(digest):
            await blobs.touch(digest)  # online GC: in use from now on
            await blobs.link(name, digest)
        else:
            try:
                size = path.stat().st_size
            except OSError:
                report.skipped.append(f"{name}: blob {digest}: its data is missing in the source")
                return
            try:
                await self._store.uploads.put_monolithic(name, digest, self._chunks(path), size)
            except errors.RegistryError as exc:
                report.skipped.append(f"{name}: blob {digest}: {_describe(exc)}")
                return
            report.bytes_copied += size
        report.blobs += 1

    async def _import_manifests(self, repo: SourceRepository, report: ImportReport) -> None:
        tags_of: dict[Digest, list[str]] = {}
        for tag, digest in repo.tags.items():
            tags_of.setdefault(digest, []).append(tag)
        pending: dict[Digest, bytes] = {}
        for digest in repo.manifests:
            try:
                pending[digest] = self._blob_path(digest).read_bytes()
            except OSError:
                report.skipped.append(f"{repo.name}@{digest}: manifest data missing in the source")
        # An index needs its children stored first (as a push does): retry what waits for a
        # child until a pass makes no progress.
        failures: dict[Digest, str] = {}
        while pending:
            progress = False
            for digest, data in list(pending.items()):
                try:
                    await self._store.manifests.put(
                        repo.name, digest, data, None, extra_tags=tags_of.get(digest, [])
                    )
                except errors.RegistryError as exc:
                    failures[digest] = _describe(exc)
                    continue
                del pending[digest]
                failures.pop(digest, None)
                progress = True
                report.manifests += 1
                report.tags += len(tags_of.get(digest, []))
                self._log(f"imported {repo.name}@{digest}")
            if not progress:
                break
        for digest in pending:
            tags = ", ".join(tags_of.get(digest, [])) or "untagged"
            report.skipped.append(f"{repo.name}@{digest} ({tags}): {failures[digest]}")
        dangling = [t for t, d in repo.tags.items() if d not in set(repo.manifests)]
        for tag in dangling:
            report.skipped.append(f"{repo.name}:{tag}: its manifest is not in the repository")


def _describe(exc: errors.RegistryError) -> str:
    return f"{exc.code}: {exc.message}" + (f" {exc.detail}" if exc.detail else "")
