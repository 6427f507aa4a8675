"""Docker-style layer graph keyed by chainID: `<root>/layers/<alg>/<hex>/{meta.json, rootfs/}`.

Each layer is unpacked once, into its own `rootfs/` directory, and shared by every image that
uses it (two images with the same first layers share the same chainIDs). `meta.json` records
the parent chainID, the diffID, the compressed blob's digest, size and media type, plus what
the unpacked tree cannot show: directories that exist only as parents of entries
(`implicit_dirs`) and hardlinks to files of lower layers (`hardlinks`), both needed to
assemble a rootfs exactly, and, when registered by a non-root user, the true modes of entries
kept readable on disk (`modes`). Whiteouts stay in `rootfs/` as empty `.wh.*` marker files.

A layer is unpacked into `layers/.tmp-*` and renamed into place after its diffID checked, so a
chainID directory is always complete; a per-chainID lock keeps two concurrent pulls from
unpacking the same layer twice.
"""

from __future__ import annotations

import builtins
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from ocispec.digest import Digest, DigestError
from ocispec.models import chain_ids
from puller.store.content import ContentStore
from puller.store.errors import LayerError
from puller.store.files import force_rmtree, fsync_dir
from puller.store.follow import Abandoned, GrowingFile
from puller.store.limits import UnpackBudget
from puller.store.locks import file_lock, try_lock


@dataclass(frozen=True, slots=True)
class LayerRecord:
    chain_id: Digest
    parent: Digest | None
    diff_id: Digest
    compressed_digest: Digest
    compressed_size: int
    media_type: str
    unpacked_dir: Path
    implicit_dirs: tuple[str, ...] = field(default=(), compare=False)
    hardlinks: dict[str, str] = field(default_factory=dict, compare=False)
    # Registered as non-root: permission bits of entries whose on-disk mode was widened to
    # keep them readable (see tarsafe.Applier.keep_access); the rootfs gets these.
    modes: dict[str, int] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": str(self.chain_id),
            "parent": str(self.parent) if self.parent else None,
            "diff_id": str(self.diff_id),
            "compressed_digest": str(self.compressed_digest),
            "compressed_size": self.compressed_size,
            "media_type": self.media_type,
            "implicit_dirs": list(self.implicit_dirs),
            "hardlinks": dict(self.hardlinks),
            "modes": {path: oct(mode) for path, mode in sorted(self.modes.items())},
        }


def chain_id_of(parent: Digest | None, diff_id: Digest) -> Digest:
    if parent is None:
        return diff_id
    return chain_ids([parent, diff_id])[1]


class LayerGraph:
    def __init__(self, root: Path, content: ContentStore) -> None:
        self.root = Path(root) / "layers"
        self.content = content

    def _lock(self, chain_id: Digest) -> Path:
        return self.root / ".locks" / f"{chain_id.algorithm}-{chain_id.hex}.lock"

    def _dir(self, chain_id: Digest) -> Path:
        return self.root / chain_id.algorithm / chain_id.hex

    def get(self, chain_id: Digest) -> LayerRecord | None:
        d = self._dir(chain_id)
        try:
            raw = json.loads((d / "meta.json").read_bytes())
            return LayerRecord(
                chain_id=Digest.parse(raw["chain_id"]),
                parent=Digest.parse(raw["parent"]) if raw.get("parent") else None,
                diff_id=Digest.parse(raw["diff_id"]),
                compressed_digest=Digest.parse(raw["compressed_digest"]),
                compressed_size=int(raw["compressed_size"]),
                media_type=str(raw["media_type"]),
                unpacked_dir=d / "rootfs",
                implicit_dirs=tuple(raw.get("implicit_dirs", ())),
                hardlinks=dict(raw.get("hardlinks", {})),
                modes={p: int(m, 8) for p, m in raw.get("modes", {}).items()},
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, DigestError) as exc:
            raise LayerError(f"layer {chain_id}: unreadable meta.json: {exc}") from None

    def register(
        self,
        parent: Digest | None,
        diff_id: Digest,
        blob: Digest,
        media_type: str,
        budget: UnpackBudget | None = None,
        stream: GrowingFile | None = None,
    ) -> LayerRecord:
        """Unpack `blob` as the layer on top of `parent` (once); verify its diff_id.

        The blob must be in the content store (its digest was verified when it was written
        there). The parent need not be registered yet, so layers can be unpacked concurrently.
        `budget` caps the uncompressed size (a pull shares one across its layers); by default
        the caps of the environment (limits.py). `stream`: unpack from the blob's download as
        it arrives (follow.py) instead of the stored blob; it ends only once the blob is
        verified and stored, and raises `Abandoned` (nothing registered, nothing counted)
        when the download was interrupted.
        """
        # here, not at the top: a push or `pyreg images` opens the store but unpacks nothing
        # (tarfile, gzip, zstandard: tests/puller/test_cli.py)
        from puller.store.unpack import compression_of, unpack_layer

        if compression_of(media_type) is None:
            raise LayerError(f"not a layer media type: {media_type!r}")
        chain_id = chain_id_of(parent, diff_id)
        existing = self.get(chain_id)
        if existing is not None:
            return existing
        blob_path = self.content.path(blob) if stream is None else self.content.blob_path(blob)
        with file_lock(self._lock(chain_id)):
            existing = self.get(chain_id)  # another process may have done it meanwhile
            if existing is not None:
                return existing
            self.root.mkdir(parents=True, exist_ok=True)
            # mkdtemp makes it 0700, and so the layer directory stays: unpacked layers hold
            # setuid-root files and device nodes that other local users must not reach.
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{chain_id.hex}-"))
            try:
                (tmp / "rootfs").mkdir()
                os.chmod(tmp / "rootfs", 0o755)
                budget = budget or UnpackBudget()
                meter = budget.meter(str(blob))
                counted = 0

                def count(n: int) -> None:
                    nonlocal counted
                    counted += n
                    meter(n)

                try:
                    raw = cast(BinaryIO, stream)  # read() is all a decompressor asks of it
                    rootfs = tmp / "rootfs"
                    result = unpack_layer(blob_path, media_type, rootfs, diff_id, count, raw)
                except Abandoned:
                    budget.refund(counted)  # unpacked again from the stored blob
                    raise
                record = LayerRecord(
                    chain_id=chain_id,
                    parent=parent,
                    diff_id=diff_id,
                    compressed_digest=blob,
                    compressed_size=blob_path.stat().st_size if stream is None else stream.size,
                    media_type=media_type,
                    unpacked_dir=self._dir(chain_id) / "rootfs",
                    implicit_dirs=tuple(result.implicit_dirs),
                    hardlinks=result.hardlinks,
                    modes=result.modes,
                )
                (tmp / "meta.json").write_text(json.dumps(record.to_json(), indent=2))
                final = self._dir(chain_id)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, final)
                fsync_dir(final.parent)
            except BaseException:
                force_rmtree(tmp)
                raise
        return record

    def list(self) -> builtins.list[LayerRecord]:
        out: builtins.list[LayerRecord] = []
        if not self.root.is_dir():
            return out
        for alg in sorted(self.root.iterdir()):
            if alg.name.startswith(".") or not alg.is_dir():
                continue
            for d in sorted(alg.iterdir()):
                try:
                    record = self.get(Digest.parse(f"{alg.name}:{d.name}"))
                except (DigestError, LayerError):
                    continue
                if record is not None:
                    out.append(record)
        return out

    def delete(self, chain_id: Digest) -> None:
        d = self._dir(chain_id)
        if not d.exists():
            return
        # Rename first so that a half-deleted directory is never mistaken for a layer.
        doomed = Path(tempfile.mkdtemp(dir=self.root, prefix=".del-"))
        os.rename(d, doomed / "layer")
        force_rmtree(doomed)

    def cleanup(self) -> None:
        """Remove leftovers of interrupted unpacks (not running ones) and of deletes."""
        if not self.root.is_dir():
            return
        for d in self.root.iterdir():
            if d.name.startswith(".del-"):
                force_rmtree(d)
            elif d.name.startswith(".tmp-"):
                hexpart = d.name.split("-")[1]
                lock = self.root / ".locks" / f"sha256-{hexpart}.lock"
                if try_lock(lock):  # no unpack holds it: the process died
                    force_rmtree(d)
        locks = self.root / ".locks"
        if locks.is_dir():
            for lock in locks.iterdir():
                alg, _, hexpart = lock.stem.partition("-")
                if not (self.root / alg / hexpart).exists() and try_lock(lock):
                    lock.unlink(missing_ok=True)
