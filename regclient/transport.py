"""The HTTP layer of the client: base URLs, an httpx.AsyncClient factory, retries.

Plain HTTP is chosen for loopback registries (`localhost`, 127.0.0.0/8, ::1), HTTPS
otherwise; with `--insecure`, HTTPS without certificate checks, falling back to plain HTTP
when the registry does not speak TLS (docker's insecure-registries).

Idempotent requests (GET, HEAD) are retried with exponential backoff on connection errors
and on 5xx/429 answers; other methods carry upload state and are retried by the caller that
knows how to resume them.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import httpx

from ocispec.reference import Reference

# docker.io is an alias: the API lives on registry-1.docker.io
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
IDEMPOTENT = frozenset({"GET", "HEAD"})
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "pyreg-client/0.1"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # total tries, the first included
    backoff: float = 0.2  # seconds before the second try; doubles each time
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        base: float = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + random.random() / 2)  # jitter: concurrent retries spread out


def is_loopback(registry: str) -> bool:
    return Reference(registry, "x").is_loopback


def base_url(registry: str, insecure: bool = False) -> str:
    """http:// for loopback registries, else https:// (`--insecure` may fall back to http)."""
    scheme = "http" if is_loopback(registry) else "https"
    return f"{scheme}://{_API_HOSTS.get(registry, registry)}"


def _http_transport(verify: bool) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(
        http1=True,
        http2=False,
        verify=verify,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )


class LazyTLSTransport(httpx.AsyncBaseTransport):
    """Plain-HTTP requests on a pool without certificate loading; the TLS pool is built on
    the first https:// request. httpx builds a verified SSL context (the CA bundle, ~50 ms of
    CPU) for every transport, which a loopback registry over plain HTTP never uses; a
    redirect or token realm on https:// still gets the verified one."""

    def __init__(self, verify: bool = True) -> None:
        self.verify = verify
        # verify=False: a bare SSLContext, cheap; never used for http:// anyway
        self.plain = _http_transport(verify=False)
        self._tls: httpx.AsyncHTTPTransport | None = None

    @property
    def tls_built(self) -> bool:
        return self._tls is not None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return await self.plain.handle_async_request(request)
        if self._tls is None:
            self._tls = _http_transport(self.verify)
        return await self._tls.handle_async_request(request)

    async def aclose(self) -> None:
        await self.plain.aclose()
        if self._tls is not None:
            await self._tls.aclose()


class InsecureFallbackTransport(httpx.AsyncBaseTransport):
    """`--insecure` for a registry that is not loopback, as docker's insecure-registries:
    HTTPS without certificate checks first; when TLS cannot be spoken at all, plain HTTP to
    that host from then on. Other hosts (token realms, redirects) are left alone."""

    def __init__(self, inner: httpx.AsyncBaseTransport, host: str) -> None:
        self.inner = inner
        self.host = host
        self.plain = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ours = request.url.scheme == "https" and request.url.host == self.host
        if ours and not self.plain:
            try:
                return await self.inner.handle_async_request(request)
            except httpx.ConnectError:
                self.plain = True  # e.g. "wrong version number": the server speaks HTTP
        if ours:
            request.url = request.url.copy_with(scheme="http")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class RetryTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; retries GET/HEAD on connection errors and 5xx/429."""

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy | None = None) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in IDEMPOTENT:
            return await self.inner.handle_async_request(request)
        attempt = 0
        while True:
            last = attempt + 1 >= self.policy.attempts
            try:
                response = await self.inner.handle_async_request(request)
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
                httpx.ReadTimeout,
                httpx.WriteError,
            ):
                if last:
                    raise
            else:
                if response.status_code not in RETRY_STATUS or last:
                    return response
                retry_after = _retry_after(response)
                await response.aclose()
                if retry_after is not None:
                    await asyncio.sleep(min(retry_after, self.policy.max_backoff))
                    attempt += 1
                    continue
            await asyncio.sleep(self.policy.delay(attempt))
            attempt += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def make_client(
    registry: str,
    *,
    insecure: bool = False,
    auth: httpx.Auth | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = 60.0,
) -> httpx.AsyncClient:
    """An AsyncClient bound to one registry's base URL.

    `transport` is the seam for tests (e.g. httpx.ASGITransport on an app); retries wrap it.
    """
    inner = transport or LazyTLSTransport(verify=not insecure)
    url = base_url(registry, insecure)
    if insecure and url.startswith("https://"):
        inner = InsecureFallbackTransport(inner, httpx.URL(url).host)
    return httpx.AsyncClient(
        base_url=url,
        transport=RetryTransport(inner, retry),
        auth=auth,
        # connect fails fast; reads may be slow on big blobs behind slow proxies
        timeout=httpx.Timeout(timeout, connect=10.0),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,  # blob GETs may redirect to object storage
    )
