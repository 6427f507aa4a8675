"""The client address behind trusted proxies: the rightmost X-Forwarded-For entry that a
trusted proxy did not add, never the client-written leftmost one."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from registry.client_address import (
    ClientAddress,
    ClientAddressMiddleware,
    TrustedProxiesError,
    parse_trusted,
)

PROXIES = "10.0.0.5, 172.16.0.0/12, fd00::/8"


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # Not from a trusted proxy: the header is the client's own, ignored.
        ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),
        # nginx with `$remote_addr`: one entry, the real client.
        ("10.0.0.5", ["198.51.100.7"], "198.51.100.7"),
        # nginx with `$proxy_add_x_forwarded_for`: the forged entry is on the left.
        ("10.0.0.5", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        ("10.0.0.5", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),  # two header lines
        # Two trusted proxies in a row, then the client; what lies left of it is not read.
        ("10.0.0.5", ["6.6.6.6, 198.51.100.7, 172.20.1.1"], "198.51.100.7"),
        # A client inside the trusted range itself: the leftmost trusted entry.
        ("10.0.0.5", ["172.20.1.2"], "172.20.1.2"),
        # Garbage right of the client: stop at the last trusted hop.
        ("10.0.0.5", ["198.51.100.7, not-an-ip"], "10.0.0.5"),
        ("10.0.0.5", [], "10.0.0.5"),
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:10.0.0.5", ["[2001:db8::8]:4711"], "2001:db8::8"),
        ("10.0.0.5", ["198.51.100.7:5555"], "198.51.100.7"),
    ],
)
def test_resolve(peer: str, forwarded: list[str], client: str) -> None:
    assert ClientAddress(PROXIES).resolve(peer, forwarded) == client


@pytest.mark.parametrize("value", ["*", "10.0.0.1, *", "proxy.local", "10.0.0.0/40"])
def test_star_and_names_are_refused(value: str) -> None:
    with pytest.raises(TrustedProxiesError):
        parse_trusted(value)


def test_empty_trusts_nobody() -> None:
    assert parse_trusted("") == () == parse_trusted([])
    assert ClientAddress("").resolve("10.0.0.5", ["1.2.3.4"]) == "10.0.0.5"


async def _whoami(request: Request) -> Response:
    assert request.client is not None
    return JSONResponse({"client": request.client.host, "scheme": request.url.scheme})


async def _ask(peer: str, headers: dict[str, str]) -> dict[str, str]:
    app = ClientAddressMiddleware(Starlette(routes=[Route("/", _whoami)]), trusted=PROXIES)
    transport = httpx.ASGITransport(app=app, client=(peer, 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        answer: dict[str, str] = (await client.get("/", headers=headers)).json()
        return answer


async def test_middleware_rewrites_client_and_scheme_for_trusted_peers() -> None:
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"}
    assert await _ask("10.0.0.5", forwarded) == {"client": "198.51.100.7", "scheme": "https"}
    assert await _ask("203.0.113.9", forwarded) == {"client": "203.0.113.9", "scheme": "http"}
    odd = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "gopher"}
    assert await _ask("10.0.0.5", odd) == {"client": "198.51.100.7", "scheme": "http"}
