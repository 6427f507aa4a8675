"""The features' plain counters reach Prometheus: each flush adds what grew since the last."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import REGISTRY

from registry.events.stats import STATS
from registry.observe.bridge import StatsBridge
from registry.proxy.stats import ProxyStats


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_counters_grow_by_what_the_features_counted() -> None:
    proxy = ProxyStats()
    guard = SimpleNamespace(failures=0)
    bridge = StatsBridge(SimpleNamespace(proxy=SimpleNamespace(stats=proxy), redis=guard))
    hits = value("pyreg_proxy_cache_total", outcome="hits")
    stale = value("pyreg_proxy_cache_total", outcome="stale_serves")
    upstream = value("pyreg_proxy_upstream_received_bytes_total")
    redis = value("pyreg_redis_failures_total")
    delivered = value("pyreg_events_delivered_total", endpoint="bridge-test")
    proxy.hits, proxy.stale_serves, proxy.upstream_bytes = 3, 1, 1000
    guard.failures = 2
    STATS.endpoint("bridge-test").delivered += 4
    bridge.flush()
    bridge.flush()  # nothing grew: nothing added twice
    assert value("pyreg_proxy_cache_total", outcome="hits") == hits + 3
    assert value("pyreg_proxy_cache_total", outcome="stale_serves") == stale + 1
    assert value("pyreg_proxy_upstream_received_bytes_total") == upstream + 1000
    assert value("pyreg_redis_failures_total") == redis + 2
    assert value("pyreg_events_delivered_total", endpoint="bridge-test") == delivered + 4
    proxy.hits += 2
    bridge.flush()
    assert value("pyreg_proxy_cache_total", outcome="hits") == hits + 5
