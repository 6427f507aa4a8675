"""The Authenticator under concurrent logins: lockout slots reserved before bcrypt, bcrypt
bounded, identical attempts sharing one check. bcrypt itself is real; a wrapper only counts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import bcrypt
import pytest

from registry.auth import htpasswd
from registry.auth.base import Principal
from registry.auth.credentials import Authenticator, LockedOut, LoginFailed
from registry.auth.htpasswd import Htpasswd
from registry.auth.lockout import InProcessLockout
from tests.support.auth import write_htpasswd


class CheckCounter:
    """Wraps the real bcrypt.checkpw: how many checks ran, and how many at most at once."""

    def __init__(self, real: Callable[[bytes, bytes], bool]) -> None:
        self.real = real
        self.calls = 0
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return self.real(password, hashed)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> CheckCounter:
    counting = CheckCounter(bcrypt.checkpw)
    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return counting


def authenticator(tmp_path: Path, max_failures: int = 5) -> Authenticator:
    users = Htpasswd(write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw", "bob": "b"}))
    return Authenticator(users, InProcessLockout(max_failures, window=60, lock_for=60))


async def attempt(auth: Authenticator, user: str, password: str) -> str:
    try:
        await auth.login("203.0.113.7", user, password)
    except LoginFailed:
        return "failed"
    except LockedOut:
        return "locked"
    return "ok"


async def burst(auth: Authenticator, logins: list[tuple[str, str]]) -> list[str]:
    results = [""] * len(logins)

    async def one(index: int, user: str, password: str) -> None:
        results[index] = await attempt(auth, user, password)

    async with anyio.create_task_group() as group:
        for index, (user, password) in enumerate(logins):
            group.start_soon(one, index, user, password)
    return results


async def test_a_concurrent_burst_gets_only_max_failures_checks(
    tmp_path: Path, counter: CheckCounter
) -> None:
    """299 of 300 concurrent guesses were checked, and a right password among them accepted:
    the lockout was read before bcrypt and the failure counted after it."""
    auth = authenticator(tmp_path, max_failures=5)
    guesses = [("alice", f"guess-{i}") for i in range(150)]
    guesses += [("alice", "alice-pw")] + [("alice", f"guess-b{i}") for i in range(149)]
    results = await burst(auth, guesses)
    assert counter.calls == 5
    assert results.count("failed") == 5
    assert results.count("locked") == 295
    assert "ok" not in results
    assert await attempt(auth, "alice", "alice-pw") == "locked"


async def test_bcrypt_runs_in_a_bounded_number_of_threads(
    tmp_path: Path, counter: CheckCounter
) -> None:
    users = Htpasswd(write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"}))
    auth = Authenticator(users, InProcessLockout(1000, window=60, lock_for=60))

    async def login(client: str) -> None:
        with pytest.raises(LoginFailed):
            await auth.login(client, "alice", "wrong")

    async with anyio.create_task_group() as group:
        for i in range(40):  # from 40 addresses: the lockout does not limit them
            group.start_soon(login, f"198.51.100.{i}")
    assert counter.calls == 40
    assert counter.peak <= htpasswd.BCRYPT_THREADS


async def test_identical_concurrent_logins_share_one_check(
    tmp_path: Path, counter: CheckCounter
) -> None:
    """A client opening many connections at once with the same Basic credentials takes one
    lockout slot and one bcrypt, so it is neither locked out nor a CPU drain."""
    auth = authenticator(tmp_path, max_failures=2)
    assert await burst(auth, [("alice", "alice-pw")] * 20) == ["ok"] * 20
    assert counter.calls == 1
    assert await burst(auth, [("bob", "wrong")] * 20) == ["failed"] * 20
    assert counter.calls == 2
    assert await attempt(auth, "bob", "b") == "ok"  # one failure only


async def test_a_good_login_does_not_reset_failures_for_other_users(
    tmp_path: Path, counter: CheckCounter
) -> None:
    auth = authenticator(tmp_path, max_failures=5)
    results = []
    for i in range(12):
        results.append(await attempt(auth, "alice", f"guess-{i}"))
        results.append(await attempt(auth, "bob", "b"))  # the attacker's own account
    assert results[:10:2] == ["failed"] * 5
    assert set(results[10:]) == {"locked"}
    assert counter.calls == 5 + 1  # bob once (then cached); nothing once locked


async def test_a_cached_success_needs_no_slot(tmp_path: Path, counter: CheckCounter) -> None:
    auth = authenticator(tmp_path, max_failures=1)
    assert await auth.login("c", "alice", "alice-pw") == Principal("alice")
    for _ in range(5):
        assert await auth.login("c", "alice", "alice-pw") == Principal("alice")
    assert counter.calls == 1
