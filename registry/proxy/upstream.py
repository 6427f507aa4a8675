"""One regclient `RegistryClient` per upstream, and upstream failures as client-facing errors.

The Docker token flow (anonymous or with the configured credentials), retries of idempotent
requests and verify-on-read of manifests are regclient's, shared with the `pyreg` client.
"""

from __future__ import annotations

import httpx

from regclient.api import NotFound, RegistryClient, RegistryError
from regclient.auth import AuthError
from regclient.tls import TLSOptions
from regclient.transport import RetryPolicy
from registry import errors
from registry.proxy.config import Upstream

#: two tries: an unreachable upstream must not hold a client long before a stale answer
RETRY = RetryPolicy(attempts=2, backoff=0.2, max_backoff=1.0)

#: what an upstream can fail with, besides an HTTP error answer
FAILURES = (RegistryError, httpx.HTTPError, AuthError, OSError)


def open_client(upstream: Upstream) -> RegistryClient:
    return RegistryClient(
        upstream.registry,
        credentials=upstream.credentials,
        insecure=upstream.insecure,
        retry=RETRY,
        # an http:// upstream URL means plain HTTP: no TLS try first
        tls=TLSOptions(plain_http=upstream.insecure),
    )


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, NotFound) and exc.status == 404


def as_client_error(upstream: Upstream, exc: BaseException) -> errors.RegistryError:
    """What the client sees when the upstream failed and nothing cached can answer:
    503 when it is unreachable or rate-limits us, 502 when it answered with an error."""
    where = f"upstream {upstream.name} ({upstream.url})"
    detail = {"upstream": upstream.name, "url": upstream.url, "error": str(exc)[:500]}
    if isinstance(exc, httpx.TransportError | OSError):
        return errors.UPSTREAM_UNAVAILABLE(f"{where} is unreachable", detail=detail)
    if isinstance(exc, RegistryError) and exc.status == 429:
        return errors.UPSTREAM_UNAVAILABLE(f"{where} is rate-limiting this mirror", detail=detail)
    if isinstance(exc, RegistryError | AuthError) and getattr(exc, "status", 0) in (401, 403):
        return errors.UPSTREAM_ERROR(f"{where} refused this mirror's credentials", detail=detail)
    if isinstance(exc, AuthError):
        return errors.UPSTREAM_ERROR(f"{where}: authentication failed", detail=detail)
    return errors.UPSTREAM_ERROR(f"{where} failed", detail=detail)
