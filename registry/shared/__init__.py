"""State shared by replicas: one small interface per concern, an in-process implementation
(one replica, or Redis down) and a Redis one (`redis: redis://...` in the settings).

Correctness never depends on Redis. Every Redis call goes through `RedisGuard`, which turns a
failure (down, timeout, refused) into "not available": callers then fall back to their
in-process state or to storage, and the failure is logged (once per outage) and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

logger = logging.getLogger("registry.shared")

T = TypeVar("T")

#: how long a failed Redis is left alone before it is tried again (seconds)
RETRY_AFTER = 5.0


class RedisGuard:
    """Runs Redis calls; after a failure, skips Redis for `RETRY_AFTER` seconds so a dead
    server costs one timeout per interval, not one per request."""

    def __init__(self, client: Any, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.url = url
        self.failures = 0  # calls that failed (a counter for metrics)
        self._down_until = 0.0
        self._clock = clock

    @property
    def available(self) -> bool:
        return self._clock() >= self._down_until

    async def call(self, operation: Callable[[Any], Awaitable[T]]) -> tuple[bool, T | None]:
        """(True, result), or (False, None) when Redis is down or failed."""
        if not self.available:
            return False, None
        try:
            return True, await operation(self.client)
        except Exception as e:  # redis-py raises ConnectionError, TimeoutError, ResponseError...
            self.failures += 1
            if self._down_until == 0.0 or self._clock() >= self._down_until:
                logger.warning("redis at %s failed (%s); using in-process state", self.url, e)
            self._down_until = self._clock() + RETRY_AFTER
            return False, None

    async def close(self) -> None:
        await self.client.aclose()


def open_redis(url: str, timeout: float = 1.0) -> RedisGuard:
    """A guard around a redis-py asyncio client for `url` (redis://, rediss://, unix://).
    Short timeouts: a slow Redis must not slow every login or blob HEAD with it."""
    import redis.asyncio

    # A bounded pool: a burst of requests shares connections instead of opening one each.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=32,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return RedisGuard(redis.asyncio.Redis(connection_pool=pool), url)
