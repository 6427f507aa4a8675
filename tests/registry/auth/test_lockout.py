from __future__ import annotations

from registry.auth.lockout import Lockout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_locks_after_max_failures_and_unlocks_later() -> None:
    clock = Clock()
    lock = Lockout(max_failures=3, window=60, lock_for=30, clock=clock)
    for _ in range(2):
        lock.failed("1.2.3.4")
    assert lock.retry_after("1.2.3.4") is None
    lock.failed("1.2.3.4")
    assert lock.retry_after("1.2.3.4") == 30
    assert lock.retry_after("5.6.7.8") is None  # other clients are not affected
    clock.now += 29.5
    assert lock.retry_after("1.2.3.4") == 1
    clock.now += 1
    assert lock.retry_after("1.2.3.4") is None


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    lock = Lockout(max_failures=3, window=10, lock_for=30, clock=clock)
    lock.failed("c")
    lock.failed("c")
    clock.now += 11
    lock.failed("c")
    assert lock.retry_after("c") is None


def test_success_resets_the_count_but_not_a_lock() -> None:
    clock = Clock()
    lock = Lockout(max_failures=2, window=60, lock_for=30, clock=clock)
    lock.failed("c")
    lock.succeeded("c")
    lock.failed("c")
    assert lock.retry_after("c") is None
    lock.failed("c")
    lock.succeeded("c")
    assert lock.retry_after("c") == 30
