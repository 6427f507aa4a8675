"""The client address behind trusted proxies: the rightmost X-Forwarded-For entry that a
trusted proxy did not add, never the client-written leftmost one."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from registry.client_address import (
    ClientAddress,
    ClientAddressMiddleware,
    TrustedProxiesError,
    parse_trusted,
)
from tests.support.auth import auth_section, basic
from tests.support.nginx import Nginx
from tests.support.server import (
    REPO_ROOT,
    RegistryServer,
    registry_server,  # noqa: F401
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


@pytest.mark.parametrize(
    "value", ["*", "10.0.0.1, *", "0.0.0.0/0", "::/0", "proxy.local", "10.0.0.0/40"]
)
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


async def test_the_scope_is_rewritten_in_place_for_the_access_log() -> None:
    """uvicorn's access log reads the scope it handed to the app: the resolved address must
    land there, so logs show the real client rather than the proxy (or a forged one)."""
    seen: list[Scope] = []
    app = ClientAddressMiddleware(Starlette(routes=[Route("/", _whoami)]), trusted=PROXIES)

    async def server(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)  # what the server keeps for its log line
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=server, client=("10.0.0.5", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        await client.get("/", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"})
    assert seen[0]["client"] == ("198.51.100.7", 0)


# -- through the shipped nginx ---------------------------------------------------------------

VICTIM, ATTACKER, ROAMER = "127.0.0.2", "127.0.0.3", "127.0.0.4"  # loopback source addresses


@pytest.fixture
def nginx_in_front(
    tmp_path: Path,
    registry_server: Callable[..., RegistryServer],  # noqa: F811
) -> Iterator[tuple[str, Path]]:
    """A real `pyreg serve` with access control (3 failures lock an address out), trusting
    nginx's address only, behind the shipped nginx config. Yields nginx's URL."""
    config = {
        "trusted_proxies": "127.0.0.1",
        "auth": auth_section(
            tmp_path,
            {"alice": "alice-pw"},
            [{"repository": "**", "pull": ["alice"], "push": ["alice"]}],
            lockout={"max_failures": 3, "window": 300, "lock_for": 300},
        ),
    }
    server = registry_server(f"file://{tmp_path / 'storage'}", config=config)
    with Nginx(tmp_path / "nginx", [f"127.0.0.1:{server.port}"]) as lb:
        yield lb.url, lb.prefix


def login_from(source: str, url: str, password: str, forged: str | None = None) -> int:
    """`GET /v2/` with alice's Basic credentials, sent from the loopback address `source`
    (optionally with a forged X-Forwarded-For); the status."""
    headers = basic("alice", password)
    if forged is not None:
        headers["X-Forwarded-For"] = forged
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.get(f"{url}/v2/", headers=headers).status_code


def test_a_forged_x_forwarded_for_neither_locks_out_another_address_nor_escapes(
    nginx_in_front: tuple[str, Path],
) -> None:
    """Behind the shipped proxy a client chose the address its failures counted against: it
    could lock out any victim address and guess without limit. Through the real nginx and a
    real server: failures count against the address nginx saw."""
    url, _ = nginx_in_front
    # The attacker aims its failures at the victim's address ...
    for _ in range(3):
        assert login_from(ATTACKER, url, "wrong", forged=VICTIM) == 401
    # ... and locks out only itself, even with the right password or another forged address.
    assert login_from(ATTACKER, url, "alice-pw", forged=VICTIM) == 429
    assert login_from(ATTACKER, url, "alice-pw", forged="198.51.100.1") == 429
    assert login_from(VICTIM, url, "alice-pw") == 200
    # A fresh forged address on every guess does not reset the count either.
    statuses = [login_from(ROAMER, url, "wrong", forged=f"10.9.9.{i}") for i in range(6)]
    assert statuses == [401] * 3 + [429] * 3
    assert login_from(VICTIM, url, "alice-pw", forged=ROAMER) == 200


@pytest.mark.parametrize(
    "path",
    [REPO_ROOT / "deploy" / "compose" / "config.s3.yaml", REPO_ROOT / "deploy" / "k8s"],
    ids=["compose", "k8s"],
)
def test_shipped_configs_name_their_proxies(path: Path) -> None:
    """The shipped configs trusted `*`: every peer was a proxy whose header was believed."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    values = re.findall(
        r"^\s*trusted_proxies:\s*(.+)$", "".join(f.read_text() for f in files), re.M
    )
    assert values, "no trusted_proxies in the shipped config"
    for value in values:
        assert parse_trusted(yaml.safe_load(value))  # no "*", and not empty
