"""Copies the features' own plain counters (pull-through cache, events, Redis) into Prometheus
metrics, every few seconds and once at shutdown.

Those modules keep plain attributes (cheap, testable, no Prometheus import on their hot
paths); in multiprocess mode only values written through prometheus_client reach a scrape, so
this task adds each counter's growth since its last look.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from registry.observe import metrics

INTERVAL = 5.0


class StatsBridge:
    def __init__(self, state: Any) -> None:
        self._state = state  # the app's state: proxy, events, redis, store
        self._seen: dict[tuple[str, ...], int] = {}

    def _add(self, key: tuple[str, ...], value: int, inc: Callable[[float], None]) -> None:
        grown = value - self._seen.get(key, 0)
        if grown > 0:
            inc(grown)
        self._seen[key] = value

    def _counter(self, counter: Counter, key: tuple[str, ...], value: int) -> None:
        labelled = counter.labels(*key[1:]) if len(key) > 1 else counter
        self._add(key, value, labelled.inc)

    def flush(self) -> None:
        from registry.events.stats import STATS

        proxy = getattr(self._state, "proxy", None)
        if proxy is not None:
            stats = proxy.stats
            for outcome in ("hits", "misses", "upstream_requests", "upstream_errors"):
                self._counter(metrics.PROXY_EVENTS, ("proxy", outcome), getattr(stats, outcome))
            self._counter(metrics.PROXY_EVENTS, ("proxy", "stale_serves"), stats.stale_serves)
            self._counter(metrics.PROXY_UPSTREAM_BYTES, ("proxy_bytes",), stats.upstream_bytes)
        self._counter(metrics.EVENTS_RECORDED, ("events_recorded",), STATS.recorded)
        self._counter(metrics.EVENTS_PULLS_DROPPED, ("pulls_dropped",), STATS.pulls_dropped)
        metrics.EVENTS_PENDING.set(STATS.pending_records)
        for name, endpoint in STATS.endpoints.items():
            self._counter(metrics.EVENTS_DELIVERED, ("delivered", name), endpoint.delivered)
            self._counter(metrics.EVENTS_FAILURES, ("failures", name), endpoint.failures)
            self._counter(metrics.EVENTS_DEAD, ("dead", name), endpoint.dead_lettered)
        redis = getattr(self._state, "redis", None)
        if redis is not None:
            self._counter(metrics.REDIS_FAILURES, ("redis_failures",), redis.failures)
        store = getattr(self._state, "store", None)
        cache = getattr(getattr(store, "blobs", None), "cache", None)
        for result in ("hits", "misses"):
            if hasattr(cache, result):
                self._counter(metrics.BLOB_CACHE, ("blob_cache", result), getattr(cache, result))

    async def run_forever(self, interval: float = INTERVAL) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                self.flush()
        finally:
            with contextlib.suppress(Exception):  # shutting down: best effort
                self.flush()
