"""One flight per key inside a process: the first caller starts the work, every caller awaits it.

The work runs as its own task, so a client that goes away (its request cancelled) does not
cancel a fetch other clients are waiting for, nor leave half of it behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        task = self._flights.get(key)
        if task is None:
            task = asyncio.create_task(self._run(key, work))
            self._flights[key] = task
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        finally:
            self._flights.pop(key, None)
