"""What the conformance checks run against: a `pyreg serve` process started by the fixtures,
or a registry someone else runs (`OCI_ROOT_URL`)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tests.support.server import RegistryServer


@dataclass(frozen=True)
class External:
    """A registry given by URL; the checks use only `url` and `port`."""

    url: str

    @property
    def port(self) -> int:
        port = httpx.URL(self.url).port
        return port if port is not None else 80


Target = RegistryServer | External
