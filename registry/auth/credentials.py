"""Checking a user name and password: htpasswd, lockout, and a short cache of recent successes.

The cache keeps a keyed hash of (user, password, stored hash) for a minute after a good bcrypt
check, so clients sending Basic credentials on every request (each blob, each chunk) do not pay
bcrypt each time. Changing the password changes the stored hash and so misses the cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from registry.auth.base import Principal
from registry.auth.htpasswd import Htpasswd
from registry.auth.lockout import Lockout
from registry.observe import audit

CACHE_SECONDS = 60.0
CACHE_SIZE = 1024


class LoginFailed(Exception):
    """Unknown user or wrong password (deliberately not saying which)."""


class LockedOut(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after}s")
        self.retry_after = retry_after


class MalformedCredentials(ValueError):
    """An Authorization header that is not valid Basic credentials."""


def parse_basic(value: str) -> tuple[str, str]:
    """The (user, password) of a `Basic base64(user:password)` header value."""
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise MalformedCredentials("not Basic credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise MalformedCredentials("undecodable Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise MalformedCredentials("Basic credentials without user:password")
    return user, password


class Authenticator:
    def __init__(
        self,
        users: Htpasswd,
        lockout: Lockout,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        self.lockout = lockout
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._recent: OrderedDict[bytes, float] = OrderedDict()

    def _cache_key(self, user: str, password: str) -> bytes | None:
        stored = self.users.users().get(user)
        if stored is None:
            return None
        message = "\0".join((user, password, stored)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    async def login(self, client: str, user: str, password: str) -> Principal:
        """The principal for these credentials; raises LockedOut or LoginFailed."""
        retry_after = self.lockout.retry_after(client)
        if retry_after is not None:
            audit.login_while_locked(client, user)
            raise LockedOut(retry_after)
        key = self._cache_key(user, password)
        now = self._clock()
        if key is not None and self._recent.get(key, 0.0) > now:
            return Principal(user)
        if not await self.users.verify(user, password):
            audit.login_failed(client, user)
            if self.lockout.failed(client):
                audit.locked_out(client, user, self.lockout.lock_for)
            raise LoginFailed(user)
        self.lockout.succeeded(client)
        if key is not None:
            self._recent[key] = now + CACHE_SECONDS
            self._recent.move_to_end(key)
            while len(self._recent) > CACHE_SIZE:
                self._recent.popitem(last=False)
        return Principal(user)
