"""The HTTP layer of the client: base URLs, an httpx.AsyncClient factory, retries.

Every registry is reached over HTTPS first; certificates are checked as tls.py says. Where
they are not (`--insecure`, `--tls-verify=false`, loopback registries unless
`--tls-verify=true`), plain HTTP is used when the registry does not speak TLS (docker's
insecure-registries, which include 127.0.0.0/8), so a TLS registry reached through an SSH
tunnel on localhost works as well as a plain one.

Idempotent requests (GET, HEAD) are retried with exponential backoff on connection errors
and on 5xx/429 answers; other methods carry upload state and are retried by the caller that
knows how to resume them.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ocispec.reference import Reference
from regclient import tls as tls_trust
from regclient.tls import TLSOptions, client_context

# docker.io is an alias: the API lives on registry-1.docker.io
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
IDEMPOTENT = frozenset({"GET", "HEAD"})
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "pyreg-client/0.1"
# httpcore reads a response body 64 KiB per receive; each read costs an anyio cancel scope, a
# timeout and h11 events: with up to 1 MiB per read (as much as the socket has), a blob
# download spends ~30 % less CPU (docs/performance.md). Memory stays bounded per connection.
RECEIVE_SIZE = 1 << 20


def _read_more_per_receive() -> None:
    # set where a transport is made: httpx imports httpcore only then (a command that makes
    # no request does not pay for the import)
    import httpcore

    connection = httpcore.AsyncHTTP11Connection
    connection.READ_NUM_BYTES = max(connection.READ_NUM_BYTES, RECEIVE_SIZE)


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


def base_url(registry: str, insecure: bool = False, tls: TLSOptions | None = None) -> str:
    """https:// (where certificates are not checked, http:// is the fallback), or http:// when
    the configuration says so."""
    scheme = "http" if tls is not None and tls.plain_http else "https"
    return f"{scheme}://{_API_HOSTS.get(registry, registry)}"


def _http_transport(verify: bool | ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    _read_more_per_receive()
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

    def __init__(
        self,
        verify: bool = True,
        context: Callable[[], ssl.SSLContext] | None = None,
        host: str | None = None,
    ) -> None:
        self.verify = verify
        self.context = context  # builds the registry's SSL context (tls.py) on first use
        # `context` is for this host only; any other https:// host (a redirect to object
        # storage, a token realm) is checked against the system store
        self.host = host
        # verify=False: a bare SSLContext, cheap; never used for http:// anyway
        self.plain = _http_transport(verify=False)
        self._tls: httpx.AsyncHTTPTransport | None = None
        self._others: httpx.AsyncHTTPTransport | None = None

    @property
    def tls_built(self) -> bool:
        return self._tls is not None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return await self.plain.handle_async_request(request)
        if self.host is not None and request.url.host != self.host:
            if self._others is None:
                self._others = _http_transport(tls_trust.system_context())
            return await self._others.handle_async_request(request)
        if self._tls is None:
            self._tls = _http_transport(self.context() if self.context else self.verify)
        return await self._tls.handle_async_request(request)

    async def aclose(self) -> None:
        await self.plain.aclose()
        for transport in (self._tls, self._others):
            if transport is not None:
                await transport.aclose()


class InsecureFallbackTransport(httpx.AsyncBaseTransport):
    """A registry whose certificate is not checked, as docker's insecure-registries:
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
    tls: TLSOptions | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient bound to one registry's base URL.

    `transport` is the seam for tests (e.g. httpx.ASGITransport on an app); retries wrap it.
    """
    tls = tls or TLSOptions()
    verify = tls.verifies(registry, insecure)
    url = base_url(registry, insecure, tls)
    inner = transport or LazyTLSTransport(
        verify=verify,
        context=lambda: client_context(registry, verify=verify, cert_dir=tls.cert_dir),
        host=httpx.URL(url).host,
    )
    if tls.falls_back(registry, insecure):
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
