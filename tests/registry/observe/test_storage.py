"""InstrumentedBackend: transparent, counts and times every operation, errors apart from
NotFound. (Every in-process registry test also runs through it: create_app wraps the backend.)"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from registry.observe.storage import InstrumentedBackend, backend_name
from storage_backends.base import NotFound, StorageBackend
from storage_backends.memory import MemoryBackend


def sample(name: str, operation: str, backend: str = "memory") -> float:
    labels = {"backend": backend, "operation": operation}
    return REGISTRY.get_sample_value(name, labels) or 0.0


class _Failing(MemoryBackend):
    async def put(self, path: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")


async def test_operations_are_counted_and_timed() -> None:
    backend = InstrumentedBackend(MemoryBackend())
    assert isinstance(backend, StorageBackend)
    ops = sample("pyreg_storage_operations_total", "put")
    timed = sample("pyreg_storage_operation_duration_seconds_count", "stream")
    await backend.open()
    await backend.put("a/b", b"hello")
    assert b"".join([c async for c in backend.stream("a/b", 1, 3)]) == b"ell"
    assert [k async for k in backend.walk("a")] == ["a/b"]
    assert sample("pyreg_storage_operations_total", "put") == ops + 1
    assert sample("pyreg_storage_operation_duration_seconds_count", "stream") == timed + 1


async def test_not_found_is_an_answer_other_failures_are_errors() -> None:
    errors_get = sample("pyreg_storage_errors_total", "get")
    backend = InstrumentedBackend(MemoryBackend())
    with pytest.raises(NotFound):
        await backend.get("missing")
    with pytest.raises(NotFound):
        async for _ in backend.stream("missing"):
            pass
    assert sample("pyreg_storage_errors_total", "get") == errors_get
    failing = InstrumentedBackend(_Failing())
    before = sample("pyreg_storage_errors_total", "put", "_failing")
    with pytest.raises(OSError):
        await failing.put("x", b"1")
    assert sample("pyreg_storage_errors_total", "put", "_failing") == before + 1


def test_backend_names() -> None:
    from storage_backends.filesystem import FilesystemBackend

    assert backend_name(MemoryBackend()) == "memory"
    assert backend_name(FilesystemBackend("/tmp/x")) == "filesystem"
    assert InstrumentedBackend(MemoryBackend(min_part_size=7)).min_part_size == 7
