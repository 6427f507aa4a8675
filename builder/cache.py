"""The build cache: a step's key → the layer it made, in `$PYREG_HOME/build-cache/`.

Like BuildKit's cache keys: the key hashes the parent (the chainID below the step), what the
step sees of the image config (env, user, working directory, shell), the instruction with its
arguments after substitution, and for COPY/ADD a digest of the files' names, modes and
contents. An entry is used only while its layer is still in the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocispec.digest import Digest, DigestError
from puller.store import GraphStore
from puller.store.files import atomic_write
from puller.store.layers import chain_id_of


@dataclass(frozen=True)
class CachedLayer:
    diff_id: Digest
    digest: Digest
    size: int
    media_type: str


@dataclass(frozen=True)
class CachedStep:
    layer: CachedLayer | None  # None: the step changed nothing (e.g. WORKDIR that existed)
    created: str


def cache_key(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class BuildCache:
    def __init__(self, store: GraphStore) -> None:
        self.store = store
        self.dir = store.root / "build-cache"

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str, parent: Digest | None) -> CachedStep | None:
        try:
            raw = json.loads(self._path(key).read_bytes())
            created = str(raw["created"])
            layer_raw = raw["layer"]
            if layer_raw is None:
                return CachedStep(None, created)
            layer = CachedLayer(
                Digest.parse(layer_raw["diff_id"]),
                Digest.parse(layer_raw["digest"]),
                int(layer_raw["size"]),
                str(layer_raw["media_type"]),
            )
        except (OSError, ValueError, KeyError, TypeError, DigestError):
            return None
        chain = chain_id_of(parent, layer.diff_id)
        if not self.store.content.has(layer.digest) or self.store.layers.get(chain) is None:
            return None  # pruned since
        return CachedStep(layer, created)

    def put(self, key: str, step: CachedStep) -> None:
        layer = step.layer
        entry: dict[str, Any] = {"created": step.created, "layer": None}
        if layer is not None:
            entry["layer"] = {
                "diff_id": str(layer.diff_id),
                "digest": str(layer.digest),
                "size": layer.size,
                "media_type": layer.media_type,
            }
        with contextlib.suppress(OSError):
            atomic_write(self._path(key), json.dumps(entry).encode())
