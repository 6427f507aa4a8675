"""Login lockout shared by replicas, in Redis (the `LockoutState` of registry.auth.lockout).

Without it every replica counts failures on its own, and N replicas give an attacker N times
the guesses. Each operation is one Lua script, so check-and-reserve is atomic across replicas;
time is Redis's own clock, so replicas' clocks need not agree. Keys, per client key (IPv6 by
/64, as in-process):

    PREFIX lk:KEY:f   sorted set of failures, member "USER\\0NONCE", score = time (ms)
    PREFIX lk:KEY:p   reserved checks still running (expires: a replica that died mid-check
                      gives its slot back after PENDING_TTL)
    PREFIX lk:KEY:l   present while the address is locked out (expires at the end)

When Redis fails, `FallbackLockout` answers from the in-process state of this replica (logged
and counted by the guard), so logins keep working.
"""

from __future__ import annotations

import math
import secrets

from registry.auth.lockout import BUSY_RETRY_AFTER, InProcessLockout, client_key
from registry.shared import RedisGuard

PENDING_TTL_MS = 60_000

_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS: f p l; ARGV: window_ms max_failures -> 0 reserved, else ms to wait (-1: busy)
_RESERVE = (
    _NOW
    + """
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return locked end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local used = redis.call('ZCARD', KEYS[1]) + tonumber(redis.call('GET', KEYS[2]) or '0')
if used >= tonumber(ARGV[2]) then return -1 end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return 0
"""
)

# KEYS: f p l; ARGV: window_ms max_failures lock_ms member
_FAILED = (
    _NOW
    + """
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[3], '1', 'PX', tonumber(ARGV[3]))
  redis.call('DEL', KEYS[1])
end
return 0
"""
)

# KEYS: f p; ARGV: user prefix ("USER\0")
_SUCCEEDED = """
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
local n = string.len(ARGV[1])
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, n) == ARGV[1] then redis.call('ZREM', KEYS[1], member) end
end
return 0
"""


class RedisLockout:
    """`LockoutState` in Redis; raises when Redis fails (wrap it in `FallbackLockout`)."""

    def __init__(
        self, guard: RedisGuard, max_failures: int, window: float, lock_for: float,
        prefix: str = "pyreg:",
    ) -> None:  # fmt: skip
        self.guard = guard
        self.max_failures = max_failures
        self.window_ms = int(window * 1000)
        self.lock_ms = int(lock_for * 1000)
        self.prefix = prefix

    def _keys(self, client: str) -> list[str]:
        base = f"{self.prefix}lk:{client_key(client)}"
        return [f"{base}:f", f"{base}:p", f"{base}:l"]


class FallbackLockout:
    """Redis first; this replica's own counts while Redis is unavailable."""

    def __init__(self, shared: RedisLockout, local: InProcessLockout) -> None:
        self.shared = shared
        self.local = local

    async def retry_after(self, client: str) -> int | None:
        keys = self.shared._keys(client)
        ok, ttl = await self.shared.guard.call(lambda r: r.pttl(keys[2]))
        if not ok:
            return await self.local.retry_after(client)
        ms = int(ttl or 0)
        return max(1, math.ceil(ms / 1000)) if ms > 0 else None

    async def reserve(self, client: str, user: str) -> int | None:
        s = self.shared
        keys = s._keys(client)
        ok, result = await s.guard.call(
            lambda r: r.eval(_RESERVE, 3, *keys, s.window_ms, s.max_failures, PENDING_TTL_MS)
        )
        if not ok:
            return await self.local.reserve(client, user)
        code = int(result or 0)
        if code == 0:
            return None
        return BUSY_RETRY_AFTER if code < 0 else max(1, math.ceil(code / 1000))

    async def failed(self, client: str, user: str) -> None:
        s = self.shared
        keys = s._keys(client)
        member = f"{user}\0{secrets.token_hex(8)}"
        ok, _ = await s.guard.call(
            lambda r: r.eval(_FAILED, 3, *keys, s.window_ms, s.max_failures, s.lock_ms, member)
        )
        if not ok:
            await self.local.failed(client, user)

    async def succeeded(self, client: str, user: str) -> None:
        s = self.shared
        keys = s._keys(client)
        ok, _ = await s.guard.call(lambda r: r.eval(_SUCCEEDED, 2, keys[0], keys[1], f"{user}\0"))
        if not ok:
            await self.local.succeeded(client, user)
