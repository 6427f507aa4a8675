"""A best-effort lease in shared storage: which replica is fetching a blob from an upstream.

Storage offers no compare-and-swap, so two replicas can both believe they hold a lease if they
write it at the same moment; the write is read back after a short pause, and the last writer
wins, which narrows that window to the storage's write latency. The worst case is two upstream
requests for one blob, never a wrong blob (each fetch is verified before it is published).
A lease expires after `ttl` seconds unless renewed, so a replica that died releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

from storage_backends.base import StorageBackend, StorageError

SETTLE = 0.05  # seconds between writing the lease and reading it back


class Lease:
    def __init__(self, backend: StorageBackend, key: str, ttl: float, owner: str) -> None:
        self._backend = backend
        self._key = key
        self._ttl = ttl
        self._owner = owner
        self._token = uuid.uuid4().hex  # this holding, distinct from other flights of the owner

    async def _holder(self) -> tuple[str, float] | None:
        try:
            raw = json.loads(await self._backend.get(self._key))
            return str(raw["token"]), float(raw["expires"])
        except (StorageError, ValueError, KeyError, TypeError):
            return None

    async def _write(self) -> None:
        body = {"owner": self._owner, "token": self._token, "expires": time.time() + self._ttl}
        await self._backend.put(self._key, json.dumps(body).encode())

    async def acquire(self) -> bool:
        """True when this flight holds the lease; False while another holds a live one."""
        holder = await self._holder()
        if holder is not None and holder[0] != self._token and holder[1] > time.time():
            return False
        await self._write()
        await asyncio.sleep(SETTLE)
        holder = await self._holder()
        return holder is not None and holder[0] == self._token

    async def keep(self) -> None:
        """Renew until cancelled (run as a task while fetching)."""
        while True:
            await asyncio.sleep(max(self._ttl / 3, 0.1))
            with contextlib.suppress(StorageError):
                await self._write()

    async def release(self) -> None:
        holder = await self._holder()
        if holder is not None and holder[0] == self._token:
            with contextlib.suppress(StorageError):
                await self._backend.delete(self._key)
