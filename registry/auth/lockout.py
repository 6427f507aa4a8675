"""Brute-force protection: too many failed logins from one client address lock it out.

After `max_failures` failures within `window` seconds, every login attempt from that address
(right or wrong) is refused for `lock_for` seconds with 429 TOOMANYREQUESTS and Retry-After.
Keyed by address, not by user name, so that an attacker cannot lock a real user out from
elsewhere. State is per process, bounded in size (the oldest entries go first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRACKED = 10_000


@dataclass(slots=True)
class _Entry:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class Lockout:
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

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it is not locked out."""
        entry = self._entries.get(client)
        if entry is None:
            return None
        remaining = entry.locked_until - self._clock()
        return max(1, math.ceil(remaining)) if remaining > 0 else None

    def failed(self, client: str) -> None:
        now = self._clock()
        entry = self._entries.pop(client, None) or _Entry()
        entry.failures = [t for t in entry.failures if now - t < self.window]
        entry.failures.append(now)
        if len(entry.failures) >= self.max_failures:
            entry.locked_until = now + self.lock_for
            entry.failures.clear()
        self._entries[client] = entry
        while len(self._entries) > MAX_TRACKED:
            self._entries.popitem(last=False)

    def succeeded(self, client: str) -> None:
        entry = self._entries.get(client)
        if entry is not None and entry.locked_until <= self._clock():
            del self._entries[client]
