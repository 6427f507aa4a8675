"""The shared metrics directory of one `pyreg serve` (prometheus_client's multiprocess mode).

`pyreg serve` creates a fresh private directory, exports it as PROMETHEUS_MULTIPROC_DIR before
anything creates a metric (workers inherit it), and removes it when the server exits. Each
worker marks its files dead when it stops (`mark_dead`), so live gauges drop its share while
counters keep what it counted. An operator's own PROMETHEUS_MULTIPROC_DIR is used as given
(and not removed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when it is imported


@contextmanager
def metrics_directory() -> Iterator[str]:
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    path = tempfile.mkdtemp(prefix="pyreg-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def mark_dead(pid: int | None = None) -> None:
    """Called by a worker as it stops (a no-op outside multiprocess mode)."""
    if not os.environ.get(MULTIPROC_ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid() if pid is None else pid)  # type: ignore[no-untyped-call]
