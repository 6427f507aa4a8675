"""The client's address behind trusted reverse proxies (`trusted_proxies`).

uvicorn's own proxy support (off: `pyreg serve` runs it with `proxy_headers=False`) believes
the *leftmost* `X-Forwarded-For` entry, which is whatever the client sent when a proxy appends
to the header. Here the address is the *rightmost entry not added by a trusted proxy*: walking
the header from the right, each hop is believed only while the hop that reported it (the peer,
then each trusted entry) is a trusted proxy. A forged entry on the left is never reached.

`X-Forwarded-Proto` is taken (rightmost value, http/https only) when the peer is trusted.

`trusted_proxies` holds addresses and networks (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`),
comma-separated. `*` (and `0.0.0.0/0`, `::/0`) is refused: trusting every peer lets any client
choose its address, and with it the address its failed logins count against.

The middleware rewrites `scope["client"]` (and `scope["scheme"]`) in place, so every later
reader, the lockout as well as uvicorn's access log, sees the same address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = {"http", "https"}


class TrustedProxiesError(ValueError):
    """A `trusted_proxies` value that cannot be used."""


def parse_trusted(value: str | Iterable[str]) -> tuple[Network, ...]:
    """The networks of a `trusted_proxies` setting ("" or [] for none)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    networks: list[Network] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item == "*":
            raise TrustedProxiesError(
                "trusted_proxies: '*' would let any client choose its address (and dodge or "
                "aim the login lockout); list the proxies' addresses or networks instead"
            )
        try:
            network = ipaddress.ip_network(item.strip("[]"), strict=False)
        except ValueError:
            raise TrustedProxiesError(
                f"trusted_proxies: {item!r} is not an IP address or network"
            ) from None
        if network.prefixlen == 0:
            raise TrustedProxiesError(f"trusted_proxies: {item!r} is every address, as '*'")
        networks.append(network)
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _header(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name]


class ClientAddress:
    """Which address a request comes from, given the trusted proxies."""

    def __init__(self, trusted: str | Iterable[str]) -> None:
        self.networks = parse_trusted(trusted)

    def trusts(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in net for net in self.networks)

    def resolve(self, peer: str, forwarded_for: list[str]) -> str:
        """The client address for a connection from `peer` carrying these X-Forwarded-For
        header values (in order)."""
        if not self.trusts(peer):
            return peer
        hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
        client = peer
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # garbage: the last good (trusted) hop is all we know
            client = str(address)
            if not self.trusts(client):
                break  # the first untrusted hop from the right: the client
        return client


class ClientAddressMiddleware:
    """Pure ASGI: sets `scope["client"]` and `scope["scheme"]` from the forwarded headers of
    trusted proxies; does nothing when none are configured."""

    def __init__(self, app: ASGIApp, trusted: str | Iterable[str] = "") -> None:
        self.app = app
        self.addresses = ClientAddress(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and self.addresses.networks and client:
            peer = str(client[0])
            if self.addresses.trusts(peer):
                resolved = self.addresses.resolve(peer, _header(scope, b"x-forwarded-for"))
                scope["client"] = (resolved, 0 if resolved != peer else client[1])
                protos = _header(scope, b"x-forwarded-proto")
                proto = protos[-1].split(",")[-1].strip().lower() if protos else ""
                if proto in _SCHEMES:
                    scope["scheme"] = proto
        await self.app(scope, receive, send)
