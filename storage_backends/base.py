"""The storage interface: paths and bytes, nothing about OCI.

Paths are `/`-separated relative keys (`blobs/sha256/ab/abcd.../data`); no leading slash, no `..`.
Every implementation passes the one behavioural suite in `tests/storage_backends/`.

Semantics every backend keeps:
- `put` and `put_stream` publish atomically: a reader sees the old object or the whole new one,
  never a partial one (filesystem: temp file, fsync, rename; S3: one PUT or multipart complete).
- `stream` yields pieces of at most `CHUNK_SIZE` bytes; it raises `NotFound` before yielding
  anything when the object does not exist.
- `list_dir(prefix)` returns the sorted names of the direct children of a "directory" prefix
  (objects and sub-prefixes alike, without a trailing slash). `list_dir(prefix, start_after=s,
  limit=n)` returns one page: the first `n` names greater than `s`, costing O(n) on every
  backend (S3: ListObjectsV2 with StartAfter and MaxKeys), so indexes kept as flat directories
  of small objects page without walking; a paged listing of an absent directory is `[]`.
  `walk(prefix)` yields every object key below a prefix, sorted.
- Failures of the storage itself raise `StorageUnavailable` (or `StorageFull`), never a raw
  OSError or client-library exception, so the registry answers 503/507 for them in one place.
- `sweep_leftovers(prefix, older_than)` removes what a crash mid-write left behind (temp
  files, multipart uploads never completed or aborted), by age.
- `batch(ops)` runs independent small operations (`Exists`, `Get`, `Put`, `PutIfAbsent`,
  `DeletePrefix`) and returns their
  results in order: a backend may run them in any order and side by side (memory, S3: at most
  `BATCH_CONCURRENCY` requests at once, one request each) or one after another in one worker
  thread hop (filesystem). Callers put only operations into one batch that need no order
  among themselves; each `Put` publishes atomically, the batch as a whole is not atomic.
- `rounds(plan)` runs dependent batches: `plan` is a generator that yields one batch, is sent
  its results, yields the next (chosen from them) and returns its answer. Memory and S3 run
  each round as a `batch`; the filesystem runs the whole plan in **one** worker-thread hop, so
  a plan's own code must be plain computation (it may raise; it must not touch the event
  loop). A request whose storage work is a fixed sequence of rounds pays one hand-off.
- Multipart: `multipart_create` then parts numbered from 1 (each at least `min_part_size` bytes
  but the last), `multipart_list_parts` recovers what was uploaded (so any replica can continue),
  `multipart_complete` publishes the concatenation atomically at `path`.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Sequence,
)
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

CHUNK_SIZE = 1024 * 1024
#: operations of one `batch` a backend keeps in flight at once when it runs them side by side
BATCH_CONCURRENCY = 8
#: sweep_leftovers' question "is the multipart upload to this key still wanted?"
Keep = Callable[[str], Awaitable[bool]]


class StorageError(Exception):
    """A backend failure that is not a missing object."""


class NotFound(StorageError):
    """The object (or prefix) does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"not found: {path}")
        self.path = path


class InvalidPath(StorageError):
    """A key that escapes the storage root or is otherwise malformed."""


class StorageUnavailable(StorageError):
    """The storage could not do it now (connection refused or timed out, S3 5xx, EIO):
    nobody's fault but the storage's; worth retrying later. `storage` names the backend."""

    def __init__(self, storage: str, message: str) -> None:
        super().__init__(f"{storage}: {message}")
        self.storage = storage


class StorageFull(StorageUnavailable):
    """No space left (ENOSPC/EDQUOT; S3-compatible stores: quota exceeded, storage full)."""


@dataclass(frozen=True, slots=True)
class Stat:
    size: int
    modified: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class Exists:
    """Whether the object exists; result `bool`."""

    path: str


@dataclass(frozen=True, slots=True)
class Get:
    """The whole (small) object; result `bytes`, or `None` when it does not exist."""

    path: str


@dataclass(frozen=True, slots=True)
class Put:
    """Write the object atomically; result `None`."""

    path: str
    data: bytes
    #: False: the write need not survive a power cut before the call returns (it is never
    #: torn, and a killed process loses nothing): state whose loss only makes a client redo
    #: a request, such as an upload session that holds no bytes yet. The filesystem then
    #: skips its fsyncs; backends that are always durable (S3) ignore it.
    durable: bool = True


@dataclass(frozen=True, slots=True)
class PutIfAbsent:
    """Write the object unless one is there (content-addressed data: the same key holds the
    same bytes); result `True` when written, `False` when it was there."""

    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class DeletePrefix:
    """Delete everything below a prefix (as `delete_prefix`); result `None`."""

    path: str


Op = Exists | Get | Put | PutIfAbsent | DeletePrefix
Result = bool | bytes | None
_T = TypeVar("_T")
#: dependent batches (`StorageBackend.rounds`): yields a batch, is sent its results, returns
Plan = Generator[Sequence[Op], list[Result], _T]


async def run_rounds(
    batch: Callable[[Sequence[Op]], Awaitable[list[Result]]], plan: Plan[_T]
) -> _T:
    """`plan` driven with one `batch` call per round: the `rounds` of backends where each
    operation is a request anyway (memory, S3)."""
    try:
        ops = next(plan)
        while True:
            ops = plan.send(await batch(ops))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        plan.close()


class _Single(Protocol):
    async def exists(self, path: str) -> bool: ...
    async def get(self, path: str) -> bytes: ...
    async def put(self, path: str, data: bytes) -> None: ...
    async def delete_prefix(self, prefix: str) -> None: ...


async def run_each(
    backend: _Single, ops: Sequence[Op], concurrency: int = BATCH_CONCURRENCY
) -> list[Result]:
    """A batch as separate calls of `backend`'s own methods, at most `concurrency` at once:
    the `batch` of backends where each operation is a request anyway (memory, S3)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(op: Op) -> Result:
        async with gate:
            if isinstance(op, Exists):
                return await backend.exists(op.path)
            if isinstance(op, Put):
                await backend.put(op.path, op.data)
                return None
            if isinstance(op, PutIfAbsent):
                if await backend.exists(op.path):
                    return False
                await backend.put(op.path, op.data)
                return True
            if isinstance(op, DeletePrefix):
                await backend.delete_prefix(op.path)
                return None
            try:
                return await backend.get(op.path)
            except NotFound:
                return None

    if len(ops) == 1:
        return [await one(ops[0])]
    return list(await asyncio.gather(*(one(op) for op in ops)))


def check_path(path: str) -> str:
    """Refuse keys that could escape the root; every backend calls this first."""
    if not path or path.startswith("/") or path.endswith("/"):
        raise InvalidPath(f"invalid storage path: {path!r}")
    for segment in path.split("/"):
        if segment in ("", ".", "..") or "\x00" in segment or "\\" in segment:
            raise InvalidPath(f"invalid storage path: {path!r}")
    return path


def check_prefix(prefix: str) -> str:
    """A prefix may be empty (the root); otherwise it is a valid path."""
    return "" if prefix in ("", "/") else check_path(prefix.rstrip("/"))


@runtime_checkable
class StorageBackend(Protocol):
    #: smallest part multipart_upload_part accepts, except for the last part (S3: 5 MiB)
    min_part_size: int
    #: largest part (S3: 5 GiB); callers coalesce between the two
    max_part_size: int

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def get(self, path: str) -> bytes:
        """The whole object; only for small objects (links, JSON state, manifests)."""
        ...

    async def put(self, path: str, data: bytes) -> None: ...

    def stream(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Yield the object's bytes from `offset`, at most `length` of them."""
        ...

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Write a stream to `path` atomically; returns the number of bytes written."""
        ...

    async def stat(self, path: str) -> Stat: ...

    async def exists(self, path: str) -> bool: ...

    async def list_dir(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[str]: ...

    def walk(self, prefix: str) -> AsyncIterator[str]: ...

    async def batch(self, ops: Sequence[Op]) -> list[Result]:
        """Independent `Exists`/`Get`/`Put` operations, results in order (see above)."""
        ...

    async def rounds(self, plan: Plan[_T]) -> _T:
        """Dependent batches, as `plan` yields them; its return value (see above)."""
        ...

    async def delete(self, path: str) -> None:
        """Delete one object; no error when it is already gone."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Delete everything below a prefix."""
        ...

    async def move(self, src: str, dst: str) -> None:
        """Move an object, replacing `dst` atomically."""
        ...

    async def multipart_create(self, path: str) -> str: ...

    async def multipart_upload_part(
        self,
        path: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        size: int | None = None,
    ) -> Part:
        """Upload part `number` (re-uploading a number replaces it).

        `size` is the exact length when known; backends with `min_part_size > 0` (S3) require
        it, so callers coalesce into bounded buffers there. The filesystem streams any length.
        """
        ...

    async def multipart_list_parts(self, path: str, upload_id: str) -> list[Part]: ...

    async def multipart_complete(self, path: str, upload_id: str, parts: list[Part]) -> None: ...

    async def multipart_abort(self, path: str, upload_id: str) -> None: ...

    async def sweep_leftovers(
        self, prefix: str, older_than: float, keep: Keep | None = None
    ) -> int:
        """Remove what crashed writers left below `prefix` and nobody touched for `older_than`
        seconds: temp files of unfinished writes, multipart uploads to keys there (except
        those whose target key `keep` vouches for). Returns how many went. A write in
        progress keeps its leftovers fresh, so it is never swept."""
        ...

    async def redirect_url(self, path: str, expires_in: int = 1200) -> str | None:
        """A URL a client may fetch the object from directly, or None (not supported/enabled)."""
        ...
