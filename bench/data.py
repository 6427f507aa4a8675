"""Generated benchmark data: deterministic, random-ish but compressible, written once.

- `large_blob`: one file of N bytes and its sha256 digest.
- `small_blobs`: many distinct small blobs in memory.
- `oci_image`: a multi-layer image (gzip tar layers, config, manifest) as an OCI image layout
  that skopeo and pyreg read. Layers are streamed to disk, never held whole in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from isal import igzip

MIB = 1024 * 1024
PIECE = MIB
FILE_SIZE = 4 * MIB  # layer files; a few dozen per layer, as in a real base image
MTIME = 1_700_000_000
# 16 symbols: about 4 bits of entropy per byte, so gzip halves it (like binaries and text do)
_TABLE = bytes(b"abcdefghijklmnop"[i & 15] for i in range(256))


def pieces(size: int, seed: int, piece: int = PIECE) -> Iterator[bytes]:
    """`size` bytes of compressible pseudo-random data, in pieces of `piece` bytes."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(piece, left)
        yield rng.randbytes(n).translate(_TABLE)
        left -= n


@dataclass(frozen=True)
class Blob:
    path: Path
    size: int
    digest: str  # sha256:<hex>


def large_blob(directory: Path, size: int, seed: int = 1) -> Blob:
    path = directory / f"blob-{size}-{seed}"
    sha = hashlib.sha256()
    with path.open("wb") as out:
        for piece in pieces(size, seed):
            sha.update(piece)
            out.write(piece)
    return Blob(path, size, f"sha256:{sha.hexdigest()}")


def small_blobs(count: int, size: int, seed: int = 2) -> list[tuple[str, bytes]]:
    """`count` distinct blobs of `size` bytes: (digest, data)."""
    blobs = []
    for i in range(count):
        data = b"".join(pieces(size, seed * 1_000_003 + i))
        blobs.append((f"sha256:{hashlib.sha256(data).hexdigest()}", data))
    return blobs


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to `target`."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


class _PieceReader(io.RawIOBase):
    """A readable file over `pieces(...)`, so tarfile copies file bodies without a buffer."""

    def __init__(self, size: int, seed: int) -> None:
        self._pieces = pieces(size, seed)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._left:
            self._left = next(self._pieces, b"")
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    layout: Path  # OCI image layout directory
    tag: str
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def total_layer_bytes(self) -> int:
        return sum(layer.size for layer in self.layers)

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_ = digest.split(":", 1)
        return self.layout / "blobs" / algorithm / hex_


def _write_blob(layout: Path, data: bytes) -> str:
    hex_ = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / hex_).write_bytes(data)
    return f"sha256:{hex_}"


def _write_layer(layout: Path, index: int, size: int, seed: int) -> tuple[Descriptor, str]:
    """One gzip tar layer of about `size` bytes of file content: (descriptor, diffID)."""
    tmp = layout / "blobs" / "sha256" / f".layer-{index}.tmp"
    with tmp.open("wb") as raw:
        compressed = _HashingWriter(raw)
        # isal's level 1 is several times faster than zlib's default, at a similar ratio here.
        with igzip.IGzipFile(  # type: ignore[no-untyped-call]
            fileobj=compressed, mode="wb", compresslevel=1, mtime=0
        ) as gz:
            uncompressed = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                directory = tarfile.TarInfo(f"layer{index}")
                directory.type = tarfile.DIRTYPE
                directory.mode = 0o755
                directory.mtime = MTIME
                tar.addfile(directory)
                written = 0
                number = 0
                while written < size:
                    n = min(FILE_SIZE, size - written)
                    info = tarfile.TarInfo(f"layer{index}/file{number:04d}.bin")
                    info.size = n
                    info.mode = 0o644
                    info.mtime = MTIME
                    tar.addfile(info, _PieceReader(n, seed * 7919 + number))  # type: ignore[arg-type]
                    written += n
                    number += 1
    digest = f"sha256:{compressed.sha.hexdigest()}"
    tmp.rename(layout / "blobs" / "sha256" / digest.split(":", 1)[1])
    descriptor = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", digest, compressed.size)
    return descriptor, f"sha256:{uncompressed.sha.hexdigest()}"


def layer_sizes(total: int, layers: int) -> list[int]:
    """Split `total` over `layers` like a real image: big base, smaller layers on top."""
    weights = [2 ** (layers - i) for i in range(layers)]
    sizes = [total * w // sum(weights) for w in weights]
    sizes[0] += total - sum(sizes)
    return sizes


def oci_image(directory: Path, total_size: int, layers: int, seed: int = 3) -> Image:
    """An OCI image layout with `layers` gzip layers holding `total_size` bytes of files."""
    layout = directory / "image-layout"
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descriptors: list[Descriptor] = []
    diff_ids: list[str] = []
    for index, size in enumerate(layer_sizes(total_size, layers)):
        descriptor, diff_id = _write_layer(layout, index, size, seed * 31 + index)
        descriptors.append(descriptor)
        diff_ids.append(diff_id)
    config_bytes = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"bench layer {i}"} for i in range(layers)],
        },
        separators=(",", ":"),
    ).encode()
    config = Descriptor(
        "application/vnd.oci.image.config.v1+json",
        _write_blob(layout, config_bytes),
        len(config_bytes),
    )
    manifest_bytes = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.to_json(),
            "layers": [d.to_json() for d in descriptors],
        },
        separators=(",", ":"),
    ).encode()
    manifest = Descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        _write_blob(layout, manifest_bytes),
        len(manifest_bytes),
    )
    tag = "bench"
    layout_index: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {**manifest.to_json(), "annotations": {"org.opencontainers.image.ref.name": tag}}
        ],
    }
    (layout / "index.json").write_text(json.dumps(layout_index))
    return Image(layout, tag, manifest, config, tuple(descriptors))
