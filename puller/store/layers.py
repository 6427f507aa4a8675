"""Docker-style layer graph keyed by chainID: `<root>/layers/<alg>/<hex>/{meta.json, rootfs/}`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocispec.digest import Digest
from puller.store.content import ContentStore


@dataclass(frozen=True, slots=True)
class LayerRecord:
    chain_id: Digest
    parent: Digest | None
    diff_id: Digest
    compressed_digest: Digest
    compressed_size: int
    media_type: str
    unpacked_dir: Path


class LayerGraph:
    def __init__(self, root: Path, content: ContentStore) -> None:
        self.root = root
        self.content = content

    def get(self, chain_id: Digest) -> LayerRecord | None:
        raise NotImplementedError

    def register(
        self, parent: Digest | None, diff_id: Digest, blob: Digest, media_type: str
    ) -> LayerRecord:
        raise NotImplementedError

    def list(self) -> list[LayerRecord]:
        raise NotImplementedError

    def delete(self, chain_id: Digest) -> None:
        raise NotImplementedError
