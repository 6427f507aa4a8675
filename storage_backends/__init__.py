"""Storage backends: one narrow async interface (`StorageBackend`) and its implementations."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from storage_backends.base import (
    CHUNK_SIZE,
    InvalidPath,
    NotFound,
    Part,
    Stat,
    StorageBackend,
    StorageError,
)

__all__ = [
    "CHUNK_SIZE",
    "InvalidPath",
    "NotFound",
    "Part",
    "Stat",
    "StorageBackend",
    "StorageError",
    "open_backend",
]


def open_backend(url: str, *, fsync: bool = True, **options: object) -> StorageBackend:
    """Build a backend from a URL: `file:///abs/path` or `file://./rel`, `memory://`,
    `s3://BUCKET/PREFIX`. Extra `options` go to the backend (S3 endpoint, credentials, ...);
    `fsync` is the filesystem's durability switch (docs/storage.md).
    The caller awaits `open()` before use and `close()` after."""
    parsed = urlparse(url)
    if parsed.scheme == "memory":
        from storage_backends.memory import MemoryBackend

        return MemoryBackend()
    if parsed.scheme == "file":
        from storage_backends.filesystem import FilesystemBackend

        # file://./var/registry keeps a relative path; file:///abs/path an absolute one.
        root = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        fs: StorageBackend = FilesystemBackend(root, fsync=fsync)
        return fs
    if parsed.scheme == "s3":
        from storage_backends.s3 import S3Backend

        # Query-string options (strings) first, keyword options (typed, from YAML) override.
        query: dict[str, object] = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        backend: StorageBackend = S3Backend.from_options(
            parsed.netloc, parsed.path.strip("/"), {**query, **options}
        )
        return backend
    raise ValueError(f"unsupported storage URL {url!r}: use file://, s3:// or memory://")
