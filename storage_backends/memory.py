"""An in-memory backend for tests and `memory://`; same semantics as the others."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TypeVar

from storage_backends.base import (
    CHUNK_SIZE,
    Keep,
    NotFound,
    Op,
    Part,
    Plan,
    Result,
    Stat,
    StorageError,
    check_path,
    check_prefix,
    run_each,
    run_rounds,
)

_T = TypeVar("_T")


class MemoryBackend:
    def __init__(self, min_part_size: int = 0, max_part_size: int = 5 * 1024**3) -> None:
        self.min_part_size = min_part_size
        self.max_part_size = max_part_size
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._multipart: dict[str, tuple[str, dict[int, bytes]]] = {}
        self._multipart_touched: dict[str, float] = {}  # upload id -> last create/part time

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, path: str) -> bytes:
        try:
            return self._objects[check_path(path)][0]
        except KeyError:
            raise NotFound(path) from None

    async def put(self, path: str, data: bytes) -> None:
        self._objects[check_path(path)] = (bytes(data), time.time())

    async def stream(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        data = await self.get(path)
        end = len(data) if length is None else min(len(data), offset + length)
        view = memoryview(data)
        for start in range(offset, end, CHUNK_SIZE):
            yield bytes(view[start : min(end, start + CHUNK_SIZE)])

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        check_path(path)
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
        await self.put(path, bytes(buf))
        return len(buf)

    async def stat(self, path: str) -> Stat:
        try:
            data, modified = self._objects[check_path(path)]
        except KeyError:
            raise NotFound(path) from None
        return Stat(len(data), modified)

    async def exists(self, path: str) -> bool:
        return check_path(path) in self._objects

    async def batch(self, ops: Sequence[Op]) -> list[Result]:
        return await run_each(self, ops)

    async def rounds(self, plan: Plan[_T]) -> _T:
        return await run_rounds(self.batch, plan)

    async def list_dir(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        base = check_prefix(prefix)
        start = f"{base}/" if base else ""
        names = {k[len(start) :].split("/", 1)[0] for k in self._objects if k.startswith(start)}
        if start_after is not None or limit is not None:
            after = sorted(n for n in names if start_after is None or n > start_after)
            return after if limit is None else after[:limit]
        if not names and base:
            raise NotFound(prefix)
        return sorted(names)

    async def walk(self, prefix: str) -> AsyncIterator[str]:
        base = check_prefix(prefix)
        start = f"{base}/" if base else ""
        for key in sorted(k for k in self._objects if k.startswith(start)):
            yield key

    async def delete(self, path: str) -> None:
        self._objects.pop(check_path(path), None)

    async def delete_prefix(self, prefix: str) -> None:
        base = check_prefix(prefix)
        start = f"{base}/" if base else ""
        for key in [k for k in self._objects if k.startswith(start)]:
            del self._objects[key]

    async def move(self, src: str, dst: str) -> None:
        data = await self.get(src)
        check_path(dst)
        if src == dst:
            return
        await self.put(dst, data)
        await self.delete(src)

    async def multipart_create(self, path: str) -> str:
        upload_id = uuid.uuid4().hex
        self._multipart[upload_id] = (check_path(path), {})
        self._multipart_touched[upload_id] = time.time()
        return upload_id

    def _session(self, path: str, upload_id: str) -> dict[int, bytes]:
        entry = self._multipart.get(upload_id)
        if entry is None or entry[0] != path:
            raise NotFound(f"{path} (multipart {upload_id})")
        return entry[1]

    async def multipart_upload_part(
        self,
        path: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        size: int | None = None,
    ) -> Part:
        parts = self._session(path, upload_id)
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
        if size is not None and len(buf) != size:
            raise StorageError(f"part {number}: expected {size} bytes, got {len(buf)}")
        parts[number] = bytes(buf)
        self._multipart_touched[upload_id] = time.time()
        return Part(number, len(buf), _etag(bytes(buf)))

    async def multipart_list_parts(self, path: str, upload_id: str) -> list[Part]:
        parts = self._session(path, upload_id)
        return [Part(n, len(d), _etag(d)) for n, d in sorted(parts.items())]

    async def multipart_complete(self, path: str, upload_id: str, parts: list[Part]) -> None:
        stored = self._session(path, upload_id)
        numbers = [p.number for p in parts]
        if not numbers or numbers != sorted(set(numbers)) or any(n not in stored for n in numbers):
            raise StorageError("multipart complete: unknown or unordered parts")
        for p in parts:
            # as S3: a part rewritten since it was listed (a racing request) is refused
            if p.etag and _etag(stored[p.number]) != p.etag:
                raise StorageError(f"multipart complete: part {p.number} changed")
        for p in parts[:-1]:
            if len(stored[p.number]) < self.min_part_size:
                raise StorageError(f"part {p.number} is smaller than {self.min_part_size} bytes")
        await self.put(path, b"".join(stored[n] for n in numbers))
        del self._multipart[upload_id]

    async def multipart_abort(self, path: str, upload_id: str) -> None:
        self._multipart.pop(upload_id, None)

    async def sweep_leftovers(
        self, prefix: str, older_than: float, keep: Keep | None = None
    ) -> int:
        # No temp objects here (puts are atomic in memory); only abandoned multipart uploads.
        base = check_prefix(prefix)
        cutoff = time.time() - older_than
        stale = [
            upload_id
            for upload_id, (target, _) in self._multipart.items()
            if (not base or target == base or target.startswith(base + "/"))
            and self._multipart_touched.get(upload_id, 0.0) < cutoff
        ]
        swept = 0
        for upload_id in stale:
            entry = self._multipart.get(upload_id)
            if entry is None or (keep is not None and await keep(entry[0])):
                continue
            self._multipart.pop(upload_id, None)
            self._multipart_touched.pop(upload_id, None)
            swept += 1
        return swept

    async def redirect_url(self, path: str, expires_in: int = 1200) -> str | None:
        check_path(path)
        return None


def _etag(data: bytes) -> str:
    # S3's ETag of a part is the MD5 of its bytes; any content hash serves here
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
