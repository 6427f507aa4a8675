"""Decompress a layer blob and unpack its tar into a directory, verifying the diff_id.

gzip goes through `isal.igzip` (Intel ISA-L, several times faster than zlib at inflating)
when it is installed, else the standard `gzip` module; zstd through `zstandard`. The tar is
read as a stream (`tarfile` mode `r|`), so a layer is never held in memory; the uncompressed
bytes are hashed as they pass, including the tar's trailing padding, and compared with the
diff_id the image config announced.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import zstandard

from ocispec import mediatypes as mt
from ocispec.digest import Digest, DigestMismatch
from puller.store.errors import LayerError
from puller.store.tarsafe import OPAQUE_MARKER, Applier, Entry, UnsafeEntry, clean_name

try:
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib

    _GZIP_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _isal_zlib.error)  # type: ignore[assignment]
    _HAVE_ISAL = True
except ImportError:  # pragma: no cover - isal is a declared dependency
    _GZIP_ERRORS = (zlib.error,)
    _HAVE_ISAL = False


def _gzip_open(raw: BinaryIO) -> BinaryIO:
    if _HAVE_ISAL:
        return cast(BinaryIO, _igzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
    return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))


# What a corrupt or truncated stream raises (besides our own errors); disk errors are not here.
_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    gzip.BadGzipFile,
    EOFError,
    tarfile.TarError,
    zstandard.ZstdError,
    *_GZIP_ERRORS,
)

_CHUNK = 1 << 20
_XATTR = "SCHILY.xattr."  # how GNU tar, docker and umoci carry extended attributes in PAX

_TAR_KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.GNUTYPE_SPARSE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "chardev",
    tarfile.BLKTYPE: "blockdev",
}


class _HashingReader:
    """A read-only file object that hashes what passes through it; `meter` is told the size
    of every piece before it is handed on (and may refuse it: a size cap)."""

    def __init__(self, raw: BinaryIO, meter: Callable[[int], None] | None = None) -> None:
        self._raw = raw
        self._meter = meter
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if self._meter is not None:
            self._meter(len(data))
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def compression_of(media_type: str) -> str | None:
    """'gzip', 'zstd', '' (plain tar), 'sniff' (a tar media type outside the OCI/Docker set,
    such as Docker's uncompressed `...rootfs.diff.tar`: tell by magic bytes), or None."""
    known = mt.layer_compression(media_type)
    if known is not None:
        return known
    if ".tar" in media_type or media_type.endswith("tar"):
        return "sniff"
    return None


def decompressed(raw: BinaryIO, media_type: str) -> BinaryIO:
    """A stream of the uncompressed tar of a layer blob of the given media type."""
    compression = compression_of(media_type)
    if compression is None:
        raise LayerError(f"not a layer media type: {media_type!r}")
    if compression == "sniff":
        head = raw.read(4)
        raw.seek(0)
        compression = mt.layer_compression(sniff_media_type(head))
    if compression == "gzip":
        return _gzip_open(raw)
    if compression == "zstd":
        reader: Any = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader  # type: ignore[no-any-return]
    return raw


def sniff_media_type(head: bytes) -> str:
    """The OCI layer media type matching a blob's first bytes (for docker-archive layers)."""
    if head.startswith(b"\x1f\x8b"):
        return mt.OCI_LAYER_GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return mt.OCI_LAYER_ZSTD
    return mt.OCI_LAYER


@dataclass
class UnpackResult:
    diff_id: Digest
    implicit_dirs: list[str] = field(default_factory=list)
    hardlinks: dict[str, str] = field(default_factory=dict)  # to files of lower layers
    skipped: list[str] = field(default_factory=list)
    # as non-root: true modes of entries kept u+rwx (dirs) / u+r (files) on disk, by path
    modes: dict[str, int] = field(default_factory=dict)


def unpack_layer(
    blob: Path,
    media_type: str,
    target: Path,
    diff_id: Digest | None,
    meter: Callable[[int], None] | None = None,
    raw: BinaryIO | None = None,
) -> UnpackResult:
    """Unpack one layer blob into `target`, keeping whiteouts as empty marker files.

    `raw`: read the blob from this stream instead of opening `blob` (a download being
    followed, follow.py; not for media types whose compression is sniffed, which seeks).

    Raises LayerError (UnsafeEntry for escapes and sparse members, DigestMismatch-carrying
    LayerError when the diff_id differs, whatever `meter` raises when the uncompressed
    stream passes a size cap: see limits.py). On error `target` may hold a partial tree: the
    caller discards it.
    """
    applier = Applier(target)
    # A non-root user could not read back a directory or file the layer makes unreadable to
    # its owner, so the layer tree keeps owner access and the true modes are recorded.
    applier.keep_access = not applier.as_root
    hardlinks: dict[str, str] = {}
    try:
        with open(blob, "rb") if raw is None else contextlib.nullcontext(raw) as source:
            hashing = _HashingReader(decompressed(source, media_type), meter)
            # bufsize: tarfile reads 10 KiB records by default, which starves the decompressor
            with tarfile.open(fileobj=hashing, mode="r|", bufsize=_CHUNK) as tf:  # type: ignore[call-overload]
                for member in tf:
                    apply_tar_member(applier, tf, member, hardlinks)
            hashing.drain()
    except _STREAM_ERRORS as exc:
        raise LayerError(f"corrupt or truncated layer {blob.name}: {exc}") from exc
    applier.finish()
    actual = Digest("sha256", hashing.hash.hexdigest())
    if diff_id is not None and actual != diff_id:
        raise LayerDiffIdMismatch(diff_id, actual)
    return UnpackResult(
        actual, sorted(applier.implicit_dirs), hardlinks, applier.skipped, applier.modes
    )


class LayerDiffIdMismatch(LayerError):
    def __init__(self, expected: Digest, actual: Digest) -> None:
        super().__init__(
            f"layer content does not match its diff_id: expected {expected}, got {actual}"
        )
        self.mismatch = DigestMismatch(expected, actual)


def apply_tar_member(
    applier: Applier, tf: tarfile.TarFile, member: tarfile.TarInfo, hardlinks: dict[str, str]
) -> None:
    """Apply one member of the open tar `tf` through `applier`, so by every rule of tarsafe.py:
    nothing it writes lands outside the applier's root (UnsafeEntry otherwise).

    Whiteouts are kept as empty marker files (aufs bookkeeping such as `.wh..wh.plnk` is
    dropped); sparse members are refused (UnsafeEntry: their holes would be written out);
    kinds a layer cannot hold are listed in `applier.skipped`; PAX xattrs are kept. A hardlink
    to a file not in this tree (a lower layer's) is not made: `hardlinks[path] = target`
    records it. For layers (`unpack_layer`) and the builder's ADD of a local archive.
    """
    path = clean_name(member.name)
    if not path:
        return  # the root directory's own entry: the layer directory keeps its own mode
    base = posixpath.basename(path)
    hardlinks.pop(path, None)
    if base.startswith(".wh."):
        if base.startswith(".wh..wh.") and base != OPAQUE_MARKER:
            return  # aufs bookkeeping (.wh..wh.plnk and friends), meaningless here
        applier.apply(Entry(path, "file", 0o600, mtime=member.mtime))
        return
    if member.issparse():
        # GNU/PAX sparse members are refused: their holes would be written out as zeros, so
        # a few KiB of tar would fill the disk (a cap on the tar's size does not see them)
        raise UnsafeEntry(member.name, "sparse files are not supported")
    kind = _TAR_KINDS.get(member.type)
    if kind is None:
        applier.skipped.append(path)
        return
    entry = Entry(
        path,
        kind,
        member.mode,
        member.uid,
        member.gid,
        float(member.mtime),
        member.linkname,
        member.devmajor,
        member.devminor,
    )
    entry.xattrs = {
        key[len(_XATTR) :]: value.encode("utf-8", "surrogateescape")
        for key, value in member.pax_headers.items()
        if key.startswith(_XATTR)
    }
    if kind == "symlink" and not member.linkname:
        raise UnsafeEntry(member.name, "symlink with an empty target")
    if kind == "hardlink":
        entry.linkname = clean_name(member.linkname)
        if applier.link_target(entry.linkname) is None:
            # A link to a file of a lower layer: made when the rootfs is assembled.
            applier.ensure_dir(posixpath.dirname(path))
            hardlinks[path] = entry.linkname
            return
    content = tf.extractfile(member) if kind == "file" else None
    applier.apply(entry, content)
