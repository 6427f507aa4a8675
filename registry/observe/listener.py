"""The metrics listener: `metrics.addr` (`--metrics-addr HOST:PORT`), a plain HTTP server
apart from the registry's port, as distribution's `http.debug`.

It runs in a thread of the `pyreg serve` main process (the uvicorn supervisor when there are
several workers) and answers every GET with the merged metrics of all workers. Off the public
port, so the metrics are not exposed to registry clients; bind it to loopback or a private
network.
"""

from __future__ import annotations

import ipaddress
from typing import Any


class AddressError(ValueError):
    """A metrics address that is not HOST:PORT."""


def parse_addr(addr: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces) -> (host, port)."""
    host, sep, raw_port = addr.rpartition(":")
    if not sep or not (raw_port.isascii() and raw_port.isdigit()) or int(raw_port) > 65535:
        raise AddressError(f"metrics address {addr!r}: expected HOST:PORT")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host.strip("[]") or "0.0.0.0"
    if ":" in host:
        if not bracketed:
            raise AddressError(f"metrics address {addr!r}: write IPv6 as [ADDRESS]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"metrics address {addr!r}: bad IPv6 address") from None
    return host, int(raw_port)


def start(addr: str) -> Any:
    """Start serving; returns the server (`shutdown()` stops it). Raises OSError when the
    address cannot be bound."""
    from prometheus_client import start_http_server

    from registry.observe.metrics import scrape_registry

    host, port = parse_addr(addr)
    server, _thread = start_http_server(port, addr=host, registry=scrape_registry())
    return server
