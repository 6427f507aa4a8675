"""What `pyreg serve` sets up around uvicorn for observability: the shared metrics directory
and the metrics listener. Both live as long as the process; `start` registers their cleanup
with atexit, so the command's flow around `uvicorn.run` stays as it is.

The shared directory (prometheus_client's multiprocess mode) only with several workers: one
worker serves in the `pyreg serve` process itself, where the listener reads its metrics
directly, and a plain in-process update is a lock and an add where a multiprocess one also
packs into an mmap (~8 % of the event loop on a manifest PUT, docs/performance.md)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
from types import FrameType

from registry.observe import listener
from registry.observe.multiproc import MULTIPROC_ENV, metrics_directory
from registry.settings import Settings


class ServingError(Exception):
    """A problem to report in one line (exit code 2)."""


def check(settings: Settings) -> None:
    if settings.metrics_addr:
        try:
            listener.parse_addr(settings.metrics_addr)
        except listener.AddressError as exc:
            raise ServingError(str(exc)) from None


def _terminated(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the SIGTERM it handled once it has shut down; by default that kills
    # the process before atexit could remove the metrics directory. Exit normally instead.
    raise SystemExit(0)


def start(settings: Settings) -> None:
    """Create the metrics directory (several workers) and start the listener. Call before
    importing the app, which creates the metrics (they choose multiprocess mode when created).
    An operator's own PROMETHEUS_MULTIPROC_DIR is used whatever the number of workers."""
    check(settings)
    if settings.workers > 1 or os.environ.get(MULTIPROC_ENV):
        directory = contextlib.ExitStack()
        directory.enter_context(metrics_directory())
        atexit.register(directory.close)
    signal.signal(signal.SIGTERM, _terminated)
    if settings.metrics_addr:
        try:
            server = listener.start(settings.metrics_addr)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ServingError(f"metrics address {settings.metrics_addr}: {reason}") from None
        atexit.register(server.shutdown)
