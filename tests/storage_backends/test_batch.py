"""`StorageBackend.batch`: independent Exists/Get/Put operations, results in order, on every
backend; on the filesystem one worker-thread hop for the whole batch. `rounds`: dependent
batches chosen by a plan from the results before, its answer returned, its errors raised; on
the filesystem one hop for the whole plan."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage_backends.base import Exists, Get, Plan, Put
from storage_backends.filesystem import FilesystemBackend
from tests.storage_backends.conftest import Harness


async def test_a_batch_answers_each_operation_in_order(harness: Harness) -> None:
    backend = harness.backend
    await backend.put("a/one", b"1")
    results = await backend.batch(
        [
            Exists("a/one"),
            Exists("a/missing"),
            Get("a/one"),
            Get("a/missing"),
            Put("b/new", b"new"),
            Put("b/mark", b""),
        ]
    )
    assert results == [True, False, b"1", None, None, None]
    assert await backend.get("b/new") == b"new"
    assert await backend.get("b/mark") == b""
    assert await backend.batch([]) == []
    # a put of empty data replaces content too (a mark over an object that had some)
    await backend.batch([Put("b/new", b"")])
    assert await backend.get("b/new") == b""
    # seen by another instance on the same storage (a restart, another replica)
    other = await harness.reopen()
    assert await other.batch([Exists("b/new"), Get("b/mark")]) == [True, b""]


def _copy_plan(source: str, target: str) -> Plan[str]:
    """Reads `source`, writes its bytes to `target` only if it is absent, reads it back."""
    [data, there] = yield [Get(source), Exists(target)]
    assert isinstance(data, bytes)
    if not there:
        yield [Put(target, data + b"!")]
    [back] = yield [Get(target)]
    assert isinstance(back, bytes)
    return back.decode()


class _Refused(Exception):
    pass


def _refusing_plan() -> Plan[None]:
    yield [Put("r/first", b"1")]
    raise _Refused("the second round is never asked for")


async def test_rounds_see_the_rounds_before_them(harness: Harness) -> None:
    backend = harness.backend
    await backend.put("c/source", b"bytes")
    assert await backend.rounds(_copy_plan("c/source", "c/target")) == "bytes!"
    await backend.put("c/target", b"kept")
    assert await backend.rounds(_copy_plan("c/source", "c/target")) == "kept"
    with pytest.raises(_Refused):
        await backend.rounds(_refusing_plan())
    assert await backend.get("r/first") == b"1"  # rounds before the error stay done


class Hops(FilesystemBackend):
    """Counts the calls handed to the backend's worker threads."""

    hops = 0

    def _run(self, call: Callable[..., Any], *args: Any) -> Any:
        self.hops += 1
        return super()._run(call, *args)


async def test_a_filesystem_batch_is_one_thread_hop(tmp_path: Path) -> None:
    backend = Hops(tmp_path / "root")
    await backend.open()
    ops = [Put(f"d{i}/k", b"x") for i in range(5)] + [Exists(f"d{i}/k") for i in range(5)]
    assert await backend.batch(ops) == [None] * 5 + [True] * 5
    assert backend.hops == 1
    await backend.close()


async def test_filesystem_rounds_are_one_thread_hop(tmp_path: Path) -> None:
    backend = Hops(tmp_path / "root")
    await backend.open()
    await backend.put("c/source", b"x")
    backend.hops = 0
    assert await backend.rounds(_copy_plan("c/source", "c/target")) == "x!"
    assert backend.hops == 1
    await backend.close()


async def test_a_cancelled_call_leaves_the_pool_working(tmp_path: Path) -> None:
    """The backend's own thread hand-off: a caller cancelled while its call runs in a worker
    thread gets CancelledError, the late answer is dropped quietly, the pool goes on."""
    backend = FilesystemBackend(tmp_path / "root")
    await backend.open()
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: problems.append(context))
    started = threading.Event()

    def slow() -> bool:
        started.set()
        time.sleep(0.2)
        return True

    task = asyncio.ensure_future(backend._run(slow))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.4)  # the worker answers after the cancel
    await backend.put("a/b", b"x")
    assert await backend.batch([Get("a/b"), Exists("a/c")]) == [b"x", False]
    with pytest.raises(ZeroDivisionError):  # errors reach the caller as raised
        await backend._run(lambda: 1 // 0)
    assert problems == []
    await backend.close()
