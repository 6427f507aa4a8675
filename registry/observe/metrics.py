"""Every Prometheus metric the registry exports, and the registry a scrape reads.

Under `pyreg serve` PROMETHEUS_MULTIPROC_DIR is set before this module is imported, so every
value lives in a per-process mmap file there and a scrape (`scrape_registry()`) merges the
files of all workers: `--workers N` reports one view. Without it (tests building the app in
process, `uvicorn` run by hand) values live in this process and the default registry is read.

Labels are bounded: `route` is the matched route's template (`/v2/{name:path}/manifests/
{reference}`), never the raw path; unknown methods collapse to `OTHER`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from pyreg import __version__
from registry.observe.multiproc import MULTIPROC_ENV

# In multiprocess mode every update asks os.getpid() (a system call, ~0.6 µs here, ~40 per
# manifest PUT on the event-loop thread) to notice a fork. The pid is cached instead and
# refreshed in a forked child, which is when it changes; every metric below is made after
# this, so they all share the one value class and its per-process files.
_pid = [os.getpid()]


def _refresh_pid() -> None:
    _pid[0] = os.getpid()


def current_pid() -> int:
    return _pid[0]


os.register_at_fork(after_in_child=_refresh_pid)
if os.environ.get(MULTIPROC_ENV):
    values.ValueClass = values.MultiProcessValue(current_pid)  # type: ignore[no-untyped-call]

# Request latencies span a cached manifest HEAD (ms) to a multi-GiB layer (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STORAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# -- HTTP ---------------------------------------------------------------------------------------
REQUESTS = Counter(
    "pyreg_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "pyreg_http_request_duration_seconds",
    "Time from the request's arrival to the last byte of the response",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
RECEIVED = Counter("pyreg_http_received_bytes", "Request body bytes received", ["method", "route"])
SENT = Counter("pyreg_http_sent_bytes", "Response body bytes sent", ["method", "route"])
IN_FLIGHT = Gauge(
    "pyreg_http_requests_in_progress",
    "Requests being served right now",
    multiprocess_mode="livesum",
)
UPLOADS_IN_PROGRESS = Gauge(
    "pyreg_uploads_in_progress",
    "Blob upload requests (POST/PATCH/PUT under /blobs/uploads) receiving data right now",
    multiprocess_mode="livesum",
)

# -- content ------------------------------------------------------------------------------------
BLOBS_PUSHED = Counter("pyreg_blobs_pushed", "Blob uploads committed (monolithic or chunked)")
BLOBS_MOUNTED = Counter("pyreg_blobs_mounted", "Blobs mounted from another repository")
BLOBS_PULLED = Counter("pyreg_blobs_pulled", "Blob GETs answered with content or a redirect")
BLOBS_DELETED = Counter("pyreg_blobs_deleted", "Blob links deleted through the API")
MANIFESTS_PUSHED = Counter("pyreg_manifests_pushed", "Manifests stored (PUT answered 201)")
MANIFESTS_PULLED = Counter("pyreg_manifests_pulled", "Manifest GETs answered with content")
MANIFESTS_DELETED = Counter("pyreg_manifests_deleted", "Manifests or tags deleted")

# -- storage ------------------------------------------------------------------------------------
STORAGE_OPS = Counter(
    "pyreg_storage_operations",
    "Storage backend calls, by backend and operation",
    ["backend", "operation"],
)
STORAGE_LATENCY = Histogram(
    "pyreg_storage_operation_duration_seconds",
    "Storage backend call duration (streams: until the last piece)",
    ["backend", "operation"],
    buckets=STORAGE_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "pyreg_storage_errors",
    "Storage backend calls that failed (a missing object is not a failure)",
    ["backend", "operation"],
)

# -- auth ---------------------------------------------------------------------------------------
AUTH_FAILURES = Counter(
    "pyreg_auth_failures",
    "Refused credentials: reason password (wrong user or password), token (invalid "
    "token) or locked (a login from a locked-out address)",
    ["reason"],
)
AUTH_LOCKOUTS = Counter("pyreg_auth_lockouts", "Client addresses locked out after failed logins")

# -- garbage collection (from the record `pyreg gc` leaves in storage; see registry.observe.gc) --
GC_RUNS = Gauge(
    "pyreg_gc_runs", "Completed garbage collections (not dry runs)", multiprocess_mode="max"
)
GC_LAST_RUN = Gauge(
    "pyreg_gc_last_run_timestamp_seconds",
    "When the last garbage collection finished",
    multiprocess_mode="max",
)
GC_LAST_DURATION = Gauge(
    "pyreg_gc_last_run_duration_seconds",
    "How long the last garbage collection took",
    multiprocess_mode="mostrecent",
)
GC_LAST_BLOBS = Gauge(
    "pyreg_gc_last_run_blobs_swept",
    "Blobs the last garbage collection deleted",
    multiprocess_mode="mostrecent",
)
GC_LAST_BYTES = Gauge(
    "pyreg_gc_last_run_bytes_swept",
    "Bytes the last garbage collection freed",
    multiprocess_mode="mostrecent",
)
GC_LAST_MANIFESTS = Gauge(
    "pyreg_gc_last_run_manifests_deleted",
    "Untagged manifests the last garbage collection deleted",
    multiprocess_mode="mostrecent",
)


class BuildInfo(Collector):
    """`pyreg_build_info{version, python}` 1: added to the scrape registry, not sampled."""

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "pyreg_build_info", "pyreg version and Python", labels=["version", "python"]
        )
        family.add_metric([__version__, platform.python_version()], 1)
        yield family


_BUILD_INFO = BuildInfo()


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: every worker's files in multiprocess mode, else this process."""
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(_BUILD_INFO)
        return registry
    return REGISTRY


if not multiprocess():
    REGISTRY.register(_BUILD_INFO)


def exposition() -> bytes:
    return generate_latest(scrape_registry())


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


# -- feature counters, copied from their own plain counters by registry/observe/bridge.py -------
PROXY_EVENTS = Counter(
    "pyreg_proxy_cache",
    "Pull-through cache: hits, misses (fetched upstream), upstream requests and errors, "
    "stale serves (past the tag TTL while the upstream failed)",
    ["outcome"],
)
PROXY_UPSTREAM_BYTES = Counter(
    "pyreg_proxy_upstream_received_bytes", "Blob and manifest bytes read from upstreams"
)
EVENTS_RECORDED = Counter("pyreg_events_recorded", "Events written to the durable queue")
EVENTS_PULLS_DROPPED = Counter(
    "pyreg_events_pulls_dropped", "Pull events lost (best effort: buffer full or flush failed)"
)
EVENTS_DELIVERED = Counter(
    "pyreg_events_delivered", "Events a webhook endpoint accepted", ["endpoint"]
)
EVENTS_FAILURES = Counter(
    "pyreg_events_delivery_failures", "Webhook POSTs that failed", ["endpoint"]
)
EVENTS_DEAD = Counter(
    "pyreg_events_dead_lettered", "Events given up on after maxattempts", ["endpoint"]
)
EVENTS_PENDING = Gauge(
    "pyreg_events_pending_records",
    "Queue records seen at the deliverer's last scan",
    multiprocess_mode="max",
)
REDIS_FAILURES = Counter(
    "pyreg_redis_failures", "Redis calls that failed (the replica fell back to its own state)"
)
BLOB_CACHE = Counter(
    "pyreg_blob_cache", "Blob-descriptor cache lookups (Redis), by result", ["result"]
)
