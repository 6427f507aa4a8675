"""`prune`: delete blobs and unpacked layers that no named image references (mark and sweep).

Marks, from every manifest the image index names: the manifest, an index's children that are
present, the config, the layer blobs, and the chainIDs of the config's diffIDs (so shared lower
layers stay), and what running pulls hold (leases.py: their blobs are not named yet). Sweeps
the rest, plus abandoned partial downloads, interrupted unpacks and its own interrupted
deletes (`layers/.del-*`, removed without recursion however deep the tree).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ocispec.digest import Digest
from ocispec.models import ImageConfig, Index, ManifestError, chain_ids, parse_manifest
from puller.store.errors import StoreError
from puller.store.locks import lock_if_free

if TYPE_CHECKING:
    from puller.store import GraphStore


@dataclass
class PruneReport:
    blobs: list[Digest] = field(default_factory=list)
    layers: list[Digest] = field(default_factory=list)
    partials: int = 0
    bytes_freed: int = 0


def referenced(store: GraphStore) -> tuple[set[Digest], set[Digest]]:
    """(blob digests, layer chainIDs) reachable from the image index and the holds."""
    blobs: set[Digest] = set()
    layers: set[Digest] = set()
    pending = list(set(store.images.list().values()) | set(store.holds.held()))
    while pending:
        digest = pending.pop()
        if digest in blobs:
            continue
        blobs.add(digest)
        try:
            parsed = parse_manifest(store.content.read_bytes(digest))
        except (StoreError, ManifestError):
            continue
        if isinstance(parsed, Index):
            pending.extend(d.digest for d in parsed.manifests)
            continue
        blobs.update(d.digest for d in parsed.references())
        with contextlib.suppress(StoreError, ManifestError):
            config = ImageConfig.parse(store.content.read_bytes(parsed.config.digest))
            layers.update(chain_ids(config.diff_ids))
    return blobs, layers


def prune(store: GraphStore) -> PruneReport:
    """Mark and sweep under the store's exclusive GC lock, keeping what running pulls hold
    (their leases, see leases.py) as well as what image names reach."""
    with store.leases.exclusive():
        return _prune(store)


def _prune(store: GraphStore) -> PruneReport:
    report = PruneReport()
    keep_blobs, keep_layers = referenced(store)
    held_blobs, held_layers = store.leases.held()
    keep_blobs |= held_blobs
    keep_layers |= held_layers
    for record in store.layers.list():
        if record.chain_id not in keep_layers:
            store.layers.delete(record.chain_id)
            report.layers.append(record.chain_id)
    store.layers.cleanup()
    for digest in store.content.list():
        if digest not in keep_blobs:
            with contextlib.suppress(OSError):
                report.bytes_freed += store.content.blob_path(digest).stat().st_size
            store.content.delete(digest)
            report.blobs.append(digest)
    for partial in store.content.partials():
        if _remove_if_unlocked(partial):
            report.partials += 1
    if report.blobs:
        store.sources.forget(set(report.blobs))
    return report


def _remove_if_unlocked(path: os.PathLike[str]) -> bool:
    """Delete a partial download unless an Ingest holds it open right now."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    if not lock_if_free(fd):
        os.close(fd)
        return False
    try:
        os.unlink(path)
        return True
    finally:
        os.close(fd)
