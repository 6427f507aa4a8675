"""The durable event queue in storage, and the lease that picks one deliverer at a time.

Queue: one object per record under `paths.EVENTS_QUEUE`, named `<time_ns>-<random>.json` so a
listing is oldest first. A record holds its events and, per endpoint still to be served, the
failed attempts so far and when to try next. The deliverer rewrites a record when an
endpoint's state changes and deletes it when no endpoint is left; an endpoint that failed
`maxattempts` times gets a copy under `paths.event_dead(endpoint, name)` (the dead letter).

Lease: storage offers no compare-and-swap, so the lease is "write, wait a moment, read back":
two processes taking an expired lease at the same instant may both deliver for a moment
(duplicates, which at-least-once allows) until the next renewal shows one of them it lost.
Nothing is deleted from the queue except after a delivery or a dead letter, so no event is
lost whoever delivers. A process that stops cleanly releases the lease; one that is killed
holds it until it expires (`notifications.lease`).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.stores import paths
from storage_backends.base import NotFound, StorageBackend


@dataclass
class Pending:
    attempts: int = 0
    next: float = 0.0  # epoch seconds; 0: now
    last_error: str = ""


@dataclass
class Record:
    events: list[dict[str, Any]]
    pending: dict[str, Pending] = field(default_factory=dict)

    def to_json(self) -> bytes:
        pending = {k: vars(v) for k, v in self.pending.items()}
        return json.dumps({"events": self.events, "pending": pending}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Record:
        raw = json.loads(data)
        pending = {k: Pending(**v) for k, v in raw.get("pending", {}).items()}
        return cls(events=list(raw["events"]), pending=pending)


def record_name(now_ns: int | None = None) -> str:
    return f"{now_ns or time.time_ns():020d}-{secrets.token_hex(6)}.json"


class EventQueue:
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    async def put(self, events: Sequence[Mapping[str, Any]], endpoints: Sequence[str]) -> str:
        """One write: the events, owed to `endpoints`."""
        name = record_name()
        record = Record([dict(e) for e in events], {e: Pending() for e in endpoints})
        await self._backend.put(paths.event_record(name), record.to_json())
        return name

    async def oldest(self, limit: int) -> list[str]:
        return await self._backend.list_dir(paths.EVENTS_QUEUE, limit=limit)

    async def read(self, name: str) -> Record | None:
        """None when it is gone (another deliverer finished it) or unreadable."""
        try:
            return Record.from_json(await self._backend.get(paths.event_record(name)))
        except NotFound:
            return None
        except (ValueError, KeyError, TypeError):
            return None

    async def save(self, name: str, record: Record) -> None:
        await self._backend.put(paths.event_record(name), record.to_json())

    async def done(self, name: str) -> None:
        await self._backend.delete(paths.event_record(name))

    async def dead_letter(self, endpoint: str, name: str, record: Record) -> None:
        dead = Record(record.events, {endpoint: record.pending[endpoint]})
        await self._backend.put(paths.event_dead(endpoint, name), dead.to_json())

    async def dead_letters(self, endpoint: str) -> list[str]:
        return await self._backend.list_dir(paths.event_dead_dir(endpoint), limit=10_000)


class Lease:
    def __init__(self, backend: StorageBackend, owner: str, ttl: float) -> None:
        self._backend = backend
        self.owner = owner
        self.ttl = ttl
        self._held_until = 0.0

    async def _read(self) -> tuple[str, float] | None:
        try:
            raw = json.loads(await self._backend.get(paths.events_lease()))
            return str(raw["owner"]), float(raw["expires"])
        except NotFound:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: treat as free

    async def hold(self) -> bool:
        """Take or renew the lease; False while another process holds it."""
        now = time.time()
        if self._held_until - now > self.ttl / 2:
            return True
        current = await self._read()
        if current is not None and current[0] != self.owner and current[1] > now:
            self._held_until = 0.0
            return False
        expires = now + self.ttl
        body = json.dumps({"owner": self.owner, "expires": expires}).encode()
        await self._backend.put(paths.events_lease(), body)
        if current is None or current[0] != self.owner:
            # Taking over: let a concurrent taker's write land, then see whose stayed.
            await asyncio.sleep(random.uniform(0.05, 0.25))
            again = await self._read()
            if again is None or again[0] != self.owner:
                return False
        self._held_until = expires
        return True

    async def release(self) -> None:
        if self._held_until > time.time():
            current = await self._read()
            if current is not None and current[0] == self.owner:
                await self._backend.delete(paths.events_lease())
        self._held_until = 0.0
