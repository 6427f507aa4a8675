"""The recording side: what handlers call after a store changed or served something.

Pushes, mounts and deletes are written to the queue before the handler answers (one small
storage write per request, and none when no endpoint wants the event), so an acknowledged
change always has its event in storage. Pulls are the hot path: they are buffered in memory
and written as one record per `pull_flush_interval` (and at shutdown), so a pull costs no
storage write; a process killed with pulls in its buffer loses those pull events (best
effort, counted in `STATS.pulls_dropped` when the buffer overflows or a flush fails).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from registry.events.config import Notifications
from registry.events.queue import EventQueue
from registry.events.stats import STATS, DeliveryStats

logger = logging.getLogger("registry.events")

MAX_BUFFERED_PULLS = 10_000


class EventRecorder:
    def __init__(
        self,
        queue: EventQueue,
        notifications: Notifications,
        source: Mapping[str, str],
        on_record: Callable[[], None] = lambda: None,
        stats: DeliveryStats = STATS,
    ) -> None:
        self.queue = queue
        self.notifications = notifications
        self.source = dict(source)
        self._on_record = on_record
        self.stats = stats
        self._pulls: list[dict[str, Any]] = []

    def _owed_to(self, events: list[dict[str, Any]]) -> list[str]:
        return [e.name for e in self.notifications.endpoints if any(e.wants(ev) for ev in events)]

    async def record(self, events: list[dict[str, Any]]) -> None:
        """Durable: returns once the events are in storage (or nobody wants them)."""
        endpoints = self._owed_to(events)
        if not endpoints:
            return
        await self.queue.put(events, endpoints)
        self.stats.recorded += len(events)
        self._on_record()

    def record_pull(self, event: dict[str, Any]) -> None:
        """Best effort: buffered, written by `flush_pulls`."""
        if not self.notifications.pulls or not self._owed_to([event]):
            return
        if len(self._pulls) >= MAX_BUFFERED_PULLS:
            self.stats.pulls_dropped += 1
            return
        self._pulls.append(event)

    async def flush_pulls(self) -> None:
        events, self._pulls = self._pulls, []
        if not events:
            return
        try:
            await self.record(events)
        except Exception:
            logger.exception("could not queue %d pull event(s); dropped", len(events))
            self.stats.pulls_dropped += len(events)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.notifications.pull_flush_interval)
            await self.flush_pulls()
