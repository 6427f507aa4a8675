"""Ports for servers that cannot bind port 0 and report it back (Ceph, redis-server, ...):
a block of free ports below the ephemeral range (32768-60999), which outgoing connections
take from, so a chosen port cannot be taken by a client socket meanwhile."""

from __future__ import annotations

import secrets
import socket


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_block(size: int = 1, low: int = 20000, high: int = 32000) -> int:
    """The first of `size` consecutive ports free on 127.0.0.1, chosen at random in [low, high)."""
    rng = secrets.SystemRandom()
    for _ in range(500):
        base = rng.randrange(low, high - size)
        if all(port_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no block of {size} free ports in {low}-{high}")
