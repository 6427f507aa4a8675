"""Counters of the pull-through cache, plain attributes (the metrics endpoint reads them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ProxyStats:
    hits: int = 0  # answered from the cache (tag within its TTL or revalidated, digest, blob)
    misses: int = 0  # fetched from an upstream
    upstream_bytes: int = 0  # blob and manifest bytes read from upstreams
    upstream_errors: int = 0  # upstream requests that failed (unreachable, 5xx, 429, auth)
    stale_serves: int = 0  # a tag served past its TTL because its upstream failed
    upstream_requests: int = 0  # manifest and blob requests sent upstream

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
