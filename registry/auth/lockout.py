"""Brute-force protection: too many failed logins from one client address lock it out.

After `max_failures` failures within `window` seconds, every login attempt from that address
(right or wrong) is refused for `lock_for` seconds with 429 TOOMANYREQUESTS and Retry-After.
Keyed by address, not by user name, so that an attacker cannot lock a real user out from
elsewhere. State is per process, bounded in size (the oldest entries go first).

An IPv6 client is keyed by its /64: one host commonly owns a whole /64 and could otherwise
take a fresh address for every few guesses (and flush the bounded table doing so).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRACKED = 10_000
IPV6_PREFIX = 64


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
        entry = self._entries.get(client_key(client))
        if entry is None:
            return None
        remaining = entry.locked_until - self._clock()
        return max(1, math.ceil(remaining)) if remaining > 0 else None

    def failed(self, client: str) -> bool:
        """Count a failure; True when this one locked the client out."""
        client = client_key(client)
        now = self._clock()
        entry = self._entries.pop(client, None) or _Entry()
        entry.failures = [t for t in entry.failures if now - t < self.window]
        entry.failures.append(now)
        locked = len(entry.failures) >= self.max_failures
        if locked:
            entry.locked_until = now + self.lock_for
            entry.failures.clear()
        self._entries[client] = entry
        while len(self._entries) > MAX_TRACKED:
            self._entries.popitem(last=False)
        return locked

    def succeeded(self, client: str) -> None:
        client = client_key(client)
        entry = self._entries.get(client)
        if entry is not None and entry.locked_until <= self._clock():
            del self._entries[client]
