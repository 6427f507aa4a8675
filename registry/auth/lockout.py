"""Brute-force protection: too many failed logins from one client address lock it out.

After `max_failures` failures within `window` seconds, every login attempt from that address
(right or wrong) is refused for `lock_for` seconds with 429 TOOMANYREQUESTS and Retry-After.
Keyed by address, not by user name, so that an attacker cannot lock a real user out from
elsewhere.

A password check *reserves* its failure slot before bcrypt runs (`reserve`) and settles it
afterwards (`failed` keeps it, `succeeded` gives it back): so at most `max_failures` checks
per window run for one address, however many requests arrive at once. A burst beyond the free
slots is refused at once (429, Retry-After: 1), without a bcrypt.

A successful login clears only *that user's* failures from the address: interleaving a good
login of one's own account must not reset the count of guesses at someone else's.

An IPv6 client is keyed by its /64: one host commonly owns a whole /64 and could otherwise
take a fresh address for every few guesses (and flush the bounded table doing so).

`LockoutState` is the interface; `InProcessLockout` keeps the state in this process (bounded,
oldest entries go first). Replicas each count on their own until a shared implementation (e.g.
Redis) exists: the interface is async so that one can be added without touching callers.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

MAX_TRACKED = 10_000
IPV6_PREFIX = 64
#: Retry-After when all slots are taken by checks still running (they finish within seconds)
BUSY_RETRY_AFTER = 1


def client_key(client: str) -> str:
    """The lockout key of a client address: IPv4 as is, IPv6 as its /64 network."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client  # not an address (a Unix socket, "unknown"): as given
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


class LockoutState(Protocol):
    async def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it is not locked out."""
        ...

    async def reserve(self, client: str, user: str) -> int | None:
        """Take a failure slot for one password check of `user` from `client`: None when
        taken, else the seconds to wait (locked out, or every slot in use). Every successful
        reserve is followed by exactly one `failed` or `succeeded`."""
        ...

    async def failed(self, client: str, user: str) -> None:
        """The reserved check failed: the slot stays counted; may lock the address."""
        ...

    async def succeeded(self, client: str, user: str) -> None:
        """The reserved check succeeded: give the slot back and clear `user`'s failures
        from this address (not other users')."""
        ...


@dataclass(slots=True)
class _Entry:
    failures: list[tuple[float, str]] = field(default_factory=list)  # (time, user)
    pending: int = 0  # reserved slots whose check is still running
    locked_until: float = 0.0


class InProcessLockout:
    """`LockoutState` in this process's memory. Every method runs without awaiting, so the
    check-and-reserve is atomic on the event loop."""

    def __init__(
        self,
        max_failures: int,
        window: float,
        lock_for: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lock_for = lock_for
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _entry(self, client: str, now: float) -> _Entry:
        key = client_key(client)
        entry = self._entries.pop(key, None) or _Entry()
        entry.failures = [(t, u) for t, u in entry.failures if now - t < self.window]
        self._entries[key] = entry  # most recently used last
        while len(self._entries) > MAX_TRACKED:
            self._entries.popitem(last=False)
        return entry

    def _forget_if_idle(self, client: str, entry: _Entry, now: float) -> None:
        if not entry.failures and not entry.pending and entry.locked_until <= now:
            self._entries.pop(client_key(client), None)

    async def retry_after(self, client: str) -> int | None:
        entry = self._entries.get(client_key(client))
        if entry is None:
            return None
        remaining = entry.locked_until - self._clock()
        return max(1, math.ceil(remaining)) if remaining > 0 else None

    async def reserve(self, client: str, user: str) -> int | None:
        now = self._clock()
        entry = self._entry(client, now)
        if entry.locked_until > now:
            return max(1, math.ceil(entry.locked_until - now))
        if len(entry.failures) + entry.pending >= self.max_failures:
            return BUSY_RETRY_AFTER
        entry.pending += 1
        return None

    async def failed(self, client: str, user: str) -> None:
        now = self._clock()
        entry = self._entry(client, now)
        entry.pending = max(0, entry.pending - 1)
        entry.failures.append((now, user))
        if len(entry.failures) >= self.max_failures:
            entry.locked_until = now + self.lock_for
            entry.failures.clear()

    async def succeeded(self, client: str, user: str) -> None:
        now = self._clock()
        entry = self._entry(client, now)
        entry.pending = max(0, entry.pending - 1)
        entry.failures = [(t, u) for t, u in entry.failures if u != user]
        self._forget_if_idle(client, entry, now)
