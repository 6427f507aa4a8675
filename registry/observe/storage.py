"""`InstrumentedBackend`: any StorageBackend, counted and timed per operation.

It lives here rather than in storage_backends/, which imports nothing above it. Each call
counts `pyreg_storage_operations_total{backend, operation}`, observes its duration and, when
it raises anything but `NotFound` (a missing object is an answer, not a failure), counts
`pyreg_storage_errors_total`. Streams (`stream`, `walk`) are timed until their last piece.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from registry.observe import metrics
from storage_backends.base import (
    DeletePrefix,
    Exists,
    Get,
    NotFound,
    Op,
    Part,
    Plan,
    PutIfAbsent,
    Result,
    Stat,
    StorageBackend,
)

_T = TypeVar("_T")


def backend_name(backend: StorageBackend) -> str:
    """`FilesystemBackend` -> `filesystem`, `S3Backend` -> `s3`."""
    name = type(backend).__name__
    return (name.removesuffix("Backend") or name).lower()


class InstrumentedBackend:
    def __init__(self, inner: StorageBackend, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or backend_name(inner)
        self.min_part_size = inner.min_part_size
        self.max_part_size = inner.max_part_size
        self._series: dict[str, tuple[Any, Any, Any]] = {}

    def __getattr__(self, attribute: str) -> Any:
        # backend-specific extras (a filesystem's root, ...) stay reachable
        return getattr(self.inner, attribute)

    def _metrics(self, operation: str) -> tuple[Any, Any, Any]:
        series = self._series.get(operation)
        if series is None:
            labels = (self.name, operation)
            series = (
                metrics.STORAGE_OPS.labels(*labels),
                metrics.STORAGE_LATENCY.labels(*labels),
                metrics.STORAGE_ERRORS.labels(*labels),
            )
            self._series[operation] = series
        return series

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        count, latency, failures = self._metrics(operation)
        count.inc()
        started = time.perf_counter()
        try:
            return await call()
        except NotFound:
            raise
        except Exception:
            failures.inc()
            raise
        finally:
            latency.observe(time.perf_counter() - started)

    async def _iterate(self, operation: str, items: AsyncIterator[_T]) -> AsyncIterator[_T]:
        count, latency, failures = self._metrics(operation)
        count.inc()
        started = time.perf_counter()
        try:
            async for item in items:
                yield item
        except NotFound:
            raise
        except Exception:
            failures.inc()
            raise
        finally:
            latency.observe(time.perf_counter() - started)
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    async def open(self) -> None:
        await self._call("open", self.inner.open)

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, path: str) -> bytes:
        return await self._call("get", lambda: self.inner.get(path))

    async def put(self, path: str, data: bytes) -> None:
        await self._call("put", lambda: self.inner.put(path, data))

    def stream(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self._iterate("stream", self.inner.stream(path, offset, length))

    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        return await self._call("put_stream", lambda: self.inner.put_stream(path, chunks))

    async def stat(self, path: str) -> Stat:
        return await self._call("stat", lambda: self.inner.stat(path))

    async def exists(self, path: str) -> bool:
        return await self._call("exists", lambda: self.inner.exists(path))

    async def list_dir(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        return await self._call("list_dir", lambda: self.inner.list_dir(prefix, start_after, limit))

    def walk(self, prefix: str) -> AsyncIterator[str]:
        return self._iterate("walk", self.inner.walk(prefix))

    async def batch(self, ops: Sequence[Op]) -> list[Result]:
        """Counted per operation inside (exists, get, put), timed once as `batch`: a batch
        costs the metrics of one call, not of each operation."""
        self._count_ops(ops)
        return await self._call("batch", lambda: self.inner.batch(ops))

    async def rounds(self, plan: Plan[_T]) -> _T:
        """Counted per operation of every round, timed once as `rounds`. The counting runs
        where the plan runs (on the filesystem, in its worker thread, off the event loop)."""
        return await self._call("rounds", lambda: self.inner.rounds(self._counted(plan)))

    def _counted(self, plan: Plan[_T]) -> Plan[_T]:
        try:
            ops = next(plan)
            while True:
                self._count_ops(ops)
                ops = plan.send((yield ops))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    def _count_ops(self, ops: Sequence[Op]) -> None:
        kinds = {"exists": 0, "get": 0, "put": 0, "delete_prefix": 0}
        for op in ops:
            if isinstance(op, Exists):
                kinds["exists"] += 1
            elif isinstance(op, Get):
                kinds["get"] += 1
            elif isinstance(op, DeletePrefix):
                kinds["delete_prefix"] += 1
            else:  # a `PutIfAbsent` as the look-up and the write it may be
                kinds["put"] += 1
                kinds["exists"] += isinstance(op, PutIfAbsent)
        for kind, n in kinds.items():
            if n:
                self._metrics(kind)[0].inc(n)

    async def delete(self, path: str) -> None:
        await self._call("delete", lambda: self.inner.delete(path))

    async def delete_prefix(self, prefix: str) -> None:
        await self._call("delete_prefix", lambda: self.inner.delete_prefix(prefix))

    async def move(self, src: str, dst: str) -> None:
        await self._call("move", lambda: self.inner.move(src, dst))

    async def multipart_create(self, path: str) -> str:
        return await self._call("multipart_create", lambda: self.inner.multipart_create(path))

    async def multipart_upload_part(
        self,
        path: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        size: int | None = None,
    ) -> Part:
        return await self._call(
            "multipart_upload_part",
            lambda: self.inner.multipart_upload_part(path, upload_id, number, chunks, size),
        )

    async def multipart_list_parts(self, path: str, upload_id: str) -> list[Part]:
        return await self._call(
            "multipart_list_parts", lambda: self.inner.multipart_list_parts(path, upload_id)
        )

    async def multipart_complete(self, path: str, upload_id: str, parts: list[Part]) -> None:
        await self._call(
            "multipart_complete", lambda: self.inner.multipart_complete(path, upload_id, parts)
        )

    async def multipart_abort(self, path: str, upload_id: str) -> None:
        await self._call("multipart_abort", lambda: self.inner.multipart_abort(path, upload_id))

    async def redirect_url(self, path: str, expires_in: int = 1200) -> str | None:
        return await self._call("redirect_url", lambda: self.inner.redirect_url(path, expires_in))
