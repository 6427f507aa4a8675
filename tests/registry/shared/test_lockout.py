"""The login lockout shared by replicas in Redis, against a real redis-server: two
`FallbackLockout`s on one Redis stand for two replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from registry.auth.lockout import BUSY_RETRY_AFTER, InProcessLockout
from registry.shared import open_redis
from registry.shared.lockout import FallbackLockout, RedisLockout
from tests.registry.auth.test_lockout import fail, succeed
from tests.support.redis_server import RedisServer, redis_server  # noqa: F401

MAX = 4


@pytest.fixture
async def replicas(
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[tuple[FallbackLockout, FallbackLockout]]:
    made = []
    for _ in range(2):
        guard = open_redis(redis_server.url, timeout=30)  # a busy machine is not "Redis down"
        shared = RedisLockout(guard, MAX, window=60, lock_for=30)
        made.append(FallbackLockout(shared, InProcessLockout(MAX, window=60, lock_for=30)))
    yield made[0], made[1]
    for lockout in made:
        await lockout.shared.guard.close()


async def test_failures_on_one_replica_count_on_the_other(
    replicas: tuple[FallbackLockout, FallbackLockout],
) -> None:
    a, b = replicas
    for i in range(MAX - 1):
        await fail(a if i % 2 else b, "10.0.0.9")
    assert await a.retry_after("10.0.0.9") is None
    await fail(a, "10.0.0.9")
    # Locked on both, though neither saw MAX failures itself.
    for replica in (a, b):
        wait = await replica.retry_after("10.0.0.9")
        assert wait is not None and 25 <= wait <= 30
        assert await replica.reserve("10.0.0.9", "u") is not None
    assert await b.retry_after("10.0.0.10") is None  # other addresses are not affected


async def test_concurrent_checks_are_limited_across_replicas(
    replicas: tuple[FallbackLockout, FallbackLockout],
) -> None:
    a, b = replicas
    answers = await asyncio.gather(*(r.reserve("c", "victim") for r in (a, b) * 50))
    assert answers.count(None) == MAX
    assert set(answers) == {None, BUSY_RETRY_AFTER}


async def test_a_success_clears_only_that_users_failures(
    replicas: tuple[FallbackLockout, FallbackLockout],
) -> None:
    a, b = replicas
    for _ in range(MAX - 1):
        await fail(a, "c", "victim")
    await succeed(b, "c", "attacker")  # interleaving one's own good login resets nothing
    await fail(b, "c", "victim")
    assert await a.retry_after("c") is not None
    # ... while a user's own success clears that user's failures
    await fail(a, "d", "alice")
    await succeed(b, "d", "alice")
    for _ in range(MAX - 1):
        await fail(a, "d", "alice")
    assert await a.retry_after("d") is None


async def test_redis_down_falls_back_to_this_replicas_counts(
    replicas: tuple[FallbackLockout, FallbackLockout],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    a, _ = replicas
    redis_server.stop()
    for _ in range(MAX):
        await fail(a, "c")
    assert await a.retry_after("c") is not None  # still enforced, per process
    assert a.shared.guard.failures >= 1
