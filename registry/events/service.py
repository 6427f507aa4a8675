"""Wires the recorder and the deliverer to one app: started and stopped by its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid

from registry.events.config import parse_notifications
from registry.events.queue import EventQueue, Lease
from registry.events.recorder import EventRecorder
from registry.events.worker import Deliverer
from registry.settings import Settings
from storage_backends.base import StorageBackend

INSTANCE_ID = str(uuid.uuid4())  # this process, as distribution's source.instanceID


class EventService:
    def __init__(self, settings: Settings, backend: StorageBackend) -> None:
        notifications = parse_notifications(settings.notifications)
        queue = EventQueue(backend)
        lease = Lease(
            backend, owner=f"{socket.gethostname()}/{INSTANCE_ID}", ttl=notifications.lease
        )
        self.deliverer = Deliverer(
            queue, lease, notifications.endpoints, notifications.poll_interval
        )
        source = {"addr": f"{socket.gethostname()}:{settings.port}", "instanceID": INSTANCE_ID}
        self.recorder = EventRecorder(queue, notifications, source, self.deliverer.wake.set)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def open(cls, settings: Settings, backend: StorageBackend) -> EventService | None:
        """None without endpoints, or in read-only mode (which writes nothing, events
        included; the queue waits in storage for the next writable start)."""
        if settings.readonly or not parse_notifications(settings.notifications).endpoints:
            return None
        service = cls(settings, backend)
        service._tasks = [
            asyncio.create_task(service.deliverer.run_forever()),
            asyncio.create_task(service.recorder.flush_forever()),
        ]
        return service

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.recorder.flush_pulls()
        with contextlib.suppress(Exception):
            await self.deliverer.lease.release()
        await self.deliverer.close()
