"""What the last `pyreg gc` did, kept in storage so every server can export it.

GC runs as its own command (from cron, on any machine that sees the storage), so its numbers
cannot go into a server's metrics directly. `pyreg gc` writes `paths.GC_LAST_RUN` (JSON) after
a real run; each server reads it at start and every `WATCH_INTERVAL` seconds and sets the
`pyreg_gc_*` gauges. `record_run` also writes the `gc.sweep`/`gc.run` audit lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from registry.gc import GcReport
from registry.observe import audit
from registry.stores import paths
from storage_backends.base import NotFound, StorageBackend

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 60.0


async def record_run(
    backend: StorageBackend, report: GcReport, started: float, finished: float
) -> None:
    """Audit lines for a finished run; for a real run also the stored record."""
    user, host = audit.operator()
    mode = "dry_run" if report.dry_run else "run"
    if not report.dry_run:
        for digest in report.deleted:
            audit.record("gc.sweep", digest=str(digest), user=user, client=host)
    audit.record(
        "gc.run",
        mode=mode,
        blobs=report.blobs_deleted,
        bytes=report.bytes_freed,
        manifests=report.manifests_deleted,
        duration_s=round(finished - started, 3),
        user=user,
        client=host,
    )
    if report.dry_run:
        return
    runs = 0
    previous = await read_record(backend)
    if previous is not None:
        runs = int(previous.get("runs", 0))
    record = {
        "runs": runs + 1,
        "finished": finished,
        "duration": finished - started,
        "blobs_deleted": report.blobs_deleted,
        "bytes_freed": report.bytes_freed,
        "manifests_deleted": report.manifests_deleted,
    }
    await backend.put(paths.GC_LAST_RUN, json.dumps(record).encode())


async def read_record(backend: StorageBackend) -> dict[str, Any] | None:
    try:
        raw = json.loads(await backend.get(paths.GC_LAST_RUN))
    except NotFound:
        return None
    except ValueError:
        logger.warning("ignoring an unreadable %s", paths.GC_LAST_RUN)
        return None
    return raw if isinstance(raw, dict) else None


async def export_record(backend: StorageBackend) -> None:
    from registry.observe import metrics

    record = await read_record(backend)
    if record is None:
        return
    try:
        metrics.GC_RUNS.set(float(record["runs"]))
        metrics.GC_LAST_RUN.set(float(record["finished"]))
        metrics.GC_LAST_DURATION.set(float(record["duration"]))
        metrics.GC_LAST_BLOBS.set(float(record["blobs_deleted"]))
        metrics.GC_LAST_BYTES.set(float(record["bytes_freed"]))
        metrics.GC_LAST_MANIFESTS.set(float(record["manifests_deleted"]))
    except (KeyError, TypeError, ValueError):
        logger.warning("ignoring an unreadable %s", paths.GC_LAST_RUN)


async def watch(backend: StorageBackend, interval: float = WATCH_INTERVAL) -> None:
    """Export the record now and every `interval` seconds (the lifespan cancels it)."""
    while True:
        try:
            await export_record(backend)
        except Exception as exc:  # storage trouble: readiness reports it; try again later
            logger.debug("reading the GC record failed: %s", exc)
        await asyncio.sleep(interval)
