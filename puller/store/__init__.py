"""The client's local graph store under `$PYREG_HOME` (default `~/.local/share/pyreg`).

See docs/client-store.md for the on-disk layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from ocispec.digest import Digest
from puller.store.content import ContentStore, Ingest
from puller.store.errors import LayerError, NotInStore, StoreError
from puller.store.gc import PruneReport, prune
from puller.store.holds import Holds
from puller.store.images import ImageIndex
from puller.store.layers import LayerGraph, LayerRecord
from puller.store.leases import Lease, Leases
from puller.store.sources import BlobSources


def default_root() -> Path:
    home = os.environ.get("PYREG_HOME")
    if home:
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "pyreg"


class GraphStore:
    content: ContentStore
    layers: LayerGraph
    images: ImageIndex
    sources: BlobSources
    leases: Leases
    holds: Holds

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.content = ContentStore(self.root)
        self.layers = LayerGraph(self.root, self.content)
        self.images = ImageIndex(self.root / "images.json")
        self.sources = BlobSources(self.root / "sources.json")
        self.leases = Leases(self.root)
        self.holds = Holds(self.root)

    @classmethod
    def default(cls) -> GraphStore:
        return cls(default_root())


def assemble_rootfs(store: GraphStore, chain_ids: list[Digest], target: Path) -> None:
    """rootfs.py's, imported when called: opening the store needs no tar handling."""
    from puller.store.rootfs import assemble_rootfs as assemble

    assemble(store, chain_ids, target)


__all__ = [
    "BlobSources",
    "ContentStore",
    "GraphStore",
    "Holds",
    "ImageIndex",
    "Ingest",
    "LayerError",
    "LayerGraph",
    "LayerRecord",
    "Lease",
    "Leases",
    "NotInStore",
    "PruneReport",
    "StoreError",
    "assemble_rootfs",
    "default_root",
    "prune",
]
