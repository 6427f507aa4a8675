from __future__ import annotations

from registry.auth.lockout import BUSY_RETRY_AFTER, InProcessLockout, LockoutState, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fail(lock: LockoutState, client: str, user: str = "u") -> None:
    assert await lock.reserve(client, user) is None
    await lock.failed(client, user)


async def succeed(lock: LockoutState, client: str, user: str = "u") -> None:
    assert await lock.reserve(client, user) is None
    await lock.succeeded(client, user)


async def test_locks_after_max_failures_and_unlocks_later() -> None:
    clock = Clock()
    lock = InProcessLockout(max_failures=3, window=60, lock_for=30, clock=clock)
    for _ in range(2):
        await fail(lock, "1.2.3.4")
    assert await lock.retry_after("1.2.3.4") is None
    await fail(lock, "1.2.3.4")
    assert await lock.retry_after("1.2.3.4") == 30
    assert await lock.reserve("1.2.3.4", "u") == 30
    assert await lock.retry_after("5.6.7.8") is None  # other clients are not affected
    clock.now += 29.5
    assert await lock.retry_after("1.2.3.4") == 1
    clock.now += 1
    assert await lock.retry_after("1.2.3.4") is None
    assert await lock.reserve("1.2.3.4", "u") is None


async def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    lock = InProcessLockout(max_failures=3, window=10, lock_for=30, clock=clock)
    await fail(lock, "c")
    await fail(lock, "c")
    clock.now += 11
    await fail(lock, "c")
    assert await lock.retry_after("c") is None


async def test_slots_are_reserved_before_the_check_runs() -> None:
    """300 concurrent wrong guesses were all checked (the lockout was looked at before bcrypt
    and the failure counted after): now each check takes its slot first, so only
    `max_failures` checks can be under way, or done, per window."""
    lock = InProcessLockout(max_failures=5, window=60, lock_for=30, clock=Clock())
    answers = [await lock.reserve("c", "victim") for _ in range(300)]
    assert answers[:5] == [None] * 5
    assert set(answers[5:]) == {BUSY_RETRY_AFTER}
    for _ in range(5):
        await lock.failed("c", "victim")
    assert await lock.reserve("c", "victim") == 30
    assert await lock.reserve("other", "victim") is None


async def test_a_success_gives_its_slot_back() -> None:
    lock = InProcessLockout(max_failures=2, window=60, lock_for=30, clock=Clock())
    for _ in range(10):
        await succeed(lock, "c")
    assert await lock.retry_after("c") is None


async def test_success_clears_only_that_users_failures() -> None:
    """12 wrong guesses passed with max_failures 5 by interleaving a good login: a success
    reset the whole address's count."""
    lock = InProcessLockout(max_failures=5, window=60, lock_for=30, clock=Clock())
    for _ in range(4):
        await fail(lock, "c", "victim")
    await succeed(lock, "c", "mallory")  # her own account
    await fail(lock, "c", "victim")
    assert await lock.retry_after("c") == 30


async def test_success_clears_the_users_own_failures_but_not_a_lock() -> None:
    clock = Clock()
    lock = InProcessLockout(max_failures=2, window=60, lock_for=30, clock=clock)
    await fail(lock, "c", "alice")
    await succeed(lock, "c", "alice")  # a typo, then the right password
    await fail(lock, "c", "alice")
    assert await lock.retry_after("c") is None
    await fail(lock, "c", "alice")
    assert await lock.retry_after("c") == 30


async def test_an_ipv6_host_cannot_rotate_addresses_within_its_64() -> None:
    lock = InProcessLockout(max_failures=3, window=60, lock_for=30, clock=Clock())
    for suffix in ("1", "2", "3"):  # three addresses of one /64: one client
        await fail(lock, f"2001:db8:1:2::{suffix}")
    assert await lock.retry_after("2001:db8:1:2::ffff") == 30
    assert await lock.retry_after("2001:db8:1:3::1") is None  # the next /64 is someone else


async def test_ipv4_mapped_ipv6_is_the_ipv4_client() -> None:
    lock = InProcessLockout(max_failures=2, window=60, lock_for=30, clock=Clock())
    await fail(lock, "::ffff:10.0.0.1")
    await fail(lock, "10.0.0.1")
    assert await lock.retry_after("10.0.0.1") == 30


def test_client_key() -> None:
    assert client_key("2001:db8::1") == "2001:db8::/64"
    assert client_key("10.1.2.3") == "10.1.2.3"
    assert client_key("unknown") == "unknown"
