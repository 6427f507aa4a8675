"""Checking a user name and password: htpasswd, lockout, and a short cache of recent successes.

The cache keeps a keyed hash of (user, password, stored hash) for a minute after a good bcrypt
check, so clients sending Basic credentials on every request (each blob, each chunk) do not pay
bcrypt each time. Changing the password changes the stored hash and so misses the cache.

A check reserves its lockout slot before bcrypt runs (see `lockout`). Identical credentials
from the same address arriving while their check runs wait for that one check instead of
starting their own: a client opening several connections at once with the same Basic
credentials takes one slot and one bcrypt, not one each.
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
from dataclasses import dataclass, field

import anyio

from registry.auth.base import Principal
from registry.auth.htpasswd import Htpasswd
from registry.auth.lockout import LockoutState, client_key
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


@dataclass(slots=True)
class _Flight:
    """One running password check that identical concurrent attempts wait for."""

    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: BaseException | None = None  # None: success


class Authenticator:
    def __init__(
        self,
        users: Htpasswd,
        lockout: LockoutState,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        self.lockout = lockout
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._recent: OrderedDict[bytes, float] = OrderedDict()
        self._flights: dict[bytes, _Flight] = {}

    def _cache_key(self, user: str, password: str) -> bytes | None:
        stored = self.users.users().get(user)
        if stored is None:
            return None
        message = "\0".join((user, password, stored)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def _flight_key(self, client: str, user: str, password: str) -> bytes:
        message = "\0".join((client_key(client), user, password)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    async def login(self, client: str, user: str, password: str) -> Principal:
        """The principal for these credentials; raises LockedOut or LoginFailed."""
        retry_after = await self.lockout.retry_after(client)
        if retry_after is not None:
            audit.login_while_locked(client, user)
            raise LockedOut(retry_after)
        key = self._cache_key(user, password)
        if key is not None and self._recent.get(key, 0.0) > self._clock():
            return Principal(user)
        flight_key = self._flight_key(client, user, password)
        running = self._flights.get(flight_key)
        if running is not None:
            await running.done.wait()
            if isinstance(running.outcome, LockedOut):
                raise LockedOut(running.outcome.retry_after)
            if running.outcome is not None:
                raise LoginFailed(user)
            return Principal(user)
        flight = self._flights[flight_key] = _Flight()
        try:
            await self._check(client, user, password, key)
        except BaseException as exc:
            flight.outcome = exc
            raise
        finally:
            del self._flights[flight_key]
            flight.done.set()
        return Principal(user)

    async def _check(self, client: str, user: str, password: str, key: bytes | None) -> None:
        retry_after = await self.lockout.reserve(client, user)
        if retry_after is not None:
            raise LockedOut(retry_after)
        ok = False
        try:
            ok = await self.users.verify(user, password)
        finally:
            # Anything but a verified password (a cancelled request too) counts as a failure;
            # shielded, so that a cancelled request still settles its slot.
            with anyio.CancelScope(shield=True):
                if ok:
                    await self.lockout.succeeded(client, user)
                else:
                    await self.lockout.failed(client, user)
        if not ok:
            audit.login_failed(client, user)
            locked = await self.lockout.retry_after(client)
            if locked is not None:
                audit.locked_out(client, user, locked)
            raise LoginFailed(user)
        if key is not None:
            self._recent[key] = self._clock() + CACHE_SECONDS
            self._recent.move_to_end(key)
            while len(self._recent) > CACHE_SIZE:
                self._recent.popitem(last=False)
