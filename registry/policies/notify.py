"""Delete events for what `pyreg gc` deletes (retention tags, untagged manifests).

The command has no request: the event's actor is the OS user running it and its source the
host. Events go to the same durable queue in storage the servers deliver from
(registry.events.queue), so a running server posts them to the webhooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ocispec.digest import Digest
from registry.events.config import parse_notifications
from registry.events.envelope import make_event
from registry.events.queue import EventQueue
from registry.events.recorder import EventRecorder
from registry.observe import audit
from storage_backends.base import StorageBackend

OnDelete = Callable[[str, Digest | str], Awaitable[None]]


def delete_notifier(
    notifications: Mapping[str, Any] | None, backend: StorageBackend
) -> OnDelete | None:
    """None without endpoints; else a callback recording one delete event per call."""
    parsed = parse_notifications(notifications)
    if not parsed.endpoints:
        return None
    user, host = audit.operator()
    source = {"addr": host}
    recorder = EventRecorder(EventQueue(backend), parsed, source)

    async def on_delete(repository: str, reference: Digest | str) -> None:
        if isinstance(reference, Digest):
            target = {"digest": str(reference), "repository": repository}
        else:
            target = {"repository": repository, "tag": reference}
        request = {"method": "DELETE", "useragent": "pyreg gc"}
        await recorder.record([make_event("delete", target, request, user, source)])

    return on_delete
