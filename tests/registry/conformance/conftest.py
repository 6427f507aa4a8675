"""One real `pyreg serve` process (filesystem storage) for the conformance package, and an
httpx client on it. Each module is one ordered workflow, as in the Go suite, and works in
repositories of its own, so tag counts and referrer lists mean what the suite expects."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RegistryServer


@pytest.fixture(scope="package")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    storage = tmp_path_factory.mktemp("conformance") / "storage"
    with RegistryServer(f"file://{storage}") as server:
        yield server


@pytest.fixture(scope="module")
def client(registry: RegistryServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30.0) as c:
        yield c
