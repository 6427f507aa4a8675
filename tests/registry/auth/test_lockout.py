from __future__ import annotations

from registry.auth.lockout import Lockout, client_key


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


def test_an_ipv6_host_cannot_rotate_addresses_within_its_64() -> None:
    clock = Clock()
    lock = Lockout(max_failures=3, window=60, lock_for=30, clock=clock)
    for suffix in ("1", "2", "3"):  # three addresses of one /64: one client
        lock.failed(f"2001:db8:1:2::{suffix}")
    assert lock.retry_after("2001:db8:1:2::ffff") == 30
    assert lock.retry_after("2001:db8:1:3::1") is None  # the next /64 is someone else


def test_ipv4_mapped_ipv6_is_the_ipv4_client() -> None:
    lock = Lockout(max_failures=2, window=60, lock_for=30, clock=Clock())
    lock.failed("::ffff:10.0.0.1")
    lock.failed("10.0.0.1")
    assert lock.retry_after("10.0.0.1") == 30


def test_client_key() -> None:
    assert client_key("2001:db8::1") == "2001:db8::/64"
    assert client_key("10.1.2.3") == "10.1.2.3"
    assert client_key("unknown") == "unknown"
