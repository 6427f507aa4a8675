"""Base URLs (HTTPS first, loopback included) and retries of idempotent requests."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest

from regclient import tls
from regclient.tls import TLSOptions
from regclient.transport import (
    InsecureFallbackTransport,
    LazyTLSTransport,
    RetryPolicy,
    RetryTransport,
    base_url,
    make_client,
)
from tests.support.docker_registry import DockerRegistry


@pytest.mark.parametrize(
    ("registry", "insecure", "url"),
    [
        ("localhost:5000", False, "https://localhost:5000"),
        ("127.0.0.5:80", False, "https://127.0.0.5:80"),
        ("[::1]:5000", False, "https://[::1]:5000"),
        ("registry.example", False, "https://registry.example"),
        ("registry.example:8443", True, "https://registry.example:8443"),
        ("docker.io", False, "https://registry-1.docker.io"),
    ],
)
def test_base_url(registry: str, insecure: bool, url: str) -> None:
    assert base_url(registry, insecure) == url


def _counting(statuses: list[int]) -> tuple[httpx.MockTransport, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        status = statuses[min(len(seen) - 1, len(statuses) - 1)]
        return httpx.Response(status)

    return httpx.MockTransport(handler), seen


FAST = RetryPolicy(attempts=4, backoff=0.001)


async def test_get_is_retried_on_5xx_and_429_until_success() -> None:
    inner, seen = _counting([503, 429, 200])
    async with make_client("localhost:1", transport=inner, retry=FAST) as client:
        response = await client.get("/v2/")
    assert response.status_code == 200
    assert seen == ["GET", "GET", "GET"]


async def test_retries_stop_after_the_policy_attempts() -> None:
    inner, seen = _counting([502])
    async with make_client("localhost:1", transport=inner, retry=FAST) as client:
        response = await client.head("/v2/a/blobs/sha256:x")
    assert response.status_code == 502
    assert len(seen) == 4


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_non_idempotent_requests_are_not_retried(method: str) -> None:
    inner, seen = _counting([503, 200])
    async with make_client("localhost:1", transport=inner, retry=FAST) as client:
        response = await client.request(method, "/v2/a/blobs/uploads/")
    assert response.status_code == 503
    assert seen == [method]


async def test_connection_errors_are_retried() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    transport = RetryTransport(httpx.MockTransport(handler), FAST)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://x/v2/")).status_code == 200
    assert calls["n"] == 3


async def test_connection_refused_by_a_real_port_is_raised_after_retries() -> None:
    from tests.support.docker_registry import free_port

    port = free_port()
    async with make_client(f"127.0.0.1:{port}", retry=FAST) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/v2/")


@pytest.mark.interop
async def test_insecure_falls_back_to_http_when_the_registry_speaks_no_tls(
    docker_registry: DockerRegistry,
) -> None:
    port = int(docker_registry.host.rsplit(":", 1)[1])
    inner = httpx.AsyncHTTPTransport(verify=False)
    transport = InsecureFallbackTransport(inner, "127.0.0.1")
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"https://127.0.0.1:{port}/v2/")
        assert response.status_code == 200
        assert transport.plain is True
        assert str(response.request.url).startswith("http://")
        # another host keeps https (and fails here: nothing listens)
        with pytest.raises(httpx.ConnectError):
            await client.get(f"https://localhost:{port}/v2/")


async def test_insecure_https_does_not_check_certificates_but_keeps_tls() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.scheme)
        return httpx.Response(200)

    transport = InsecureFallbackTransport(httpx.MockTransport(handler), "registry.example")
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("https://registry.example/v2/")
    assert seen == ["https"] and transport.plain is False


def test_make_client_falls_back_to_http_only_where_certificates_are_not_checked() -> None:
    def falls_back(client: httpx.AsyncClient) -> bool:
        return isinstance(client._transport.inner, InsecureFallbackTransport)  # type: ignore[attr-defined]

    assert falls_back(make_client("registry.example", insecure=True))
    assert falls_back(make_client("localhost:5000"))  # loopback: insecure by default (docker)
    assert not falls_back(make_client("registry.example"))
    assert not falls_back(make_client("localhost:5000", tls=TLSOptions(verify=True)))


async def _plain_http_server() -> asyncio.Server:
    """A real HTTP/1.1 server on loopback that answers every request 200, empty."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # a TLS ClientHello (0x16) is no HTTP: hang up, as uvicorn, nginx and Go answer it
            first = await reader.readexactly(1)
            if first == b"\x16":
                return
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_plain_http_registry_builds_no_verified_tls_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[object] = []
    real = tls.system_context

    def counting() -> ssl.SSLContext:
        built.append(1)
        return real()

    monkeypatch.setattr(tls, "system_context", counting)
    server = await _plain_http_server()
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_client(f"127.0.0.1:{port}", retry=FAST) as client:
            assert (await client.get("/v2/")).status_code == 200
            assert (await client.get("/v2/")).status_code == 200
            # the CA bundle is never loaded for a loopback registry: its TLS try is unchecked
            assert built == []
            # an https:// URL on another host (a redirect, a token realm) gets a verified
            # context, built now (nothing listens there, so the connection is refused)
            from tests.support.docker_registry import free_port

            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://localhost:{free_port()}/v2/")
            assert len(built) == 1
    finally:
        server.close()
        await server.wait_closed()


def test_lazy_tls_transport_keeps_the_verify_setting() -> None:
    assert LazyTLSTransport().verify is True
    assert LazyTLSTransport(verify=False).verify is False
    assert not LazyTLSTransport().tls_built


def test_responses_are_read_up_to_1_mib_at_a_time() -> None:
    """httpcore's default is 64 KiB per read; each read costs a cancel scope, a timeout and
    h11 events, ~30 % of a download's CPU (docs/performance.md)."""
    import httpcore

    from regclient.transport import RECEIVE_SIZE, _http_transport

    _http_transport(False)  # what the clients' lazily built pools are made with
    assert RECEIVE_SIZE == 1 << 20
    assert httpcore.AsyncHTTP11Connection.READ_NUM_BYTES >= 1 << 20
