"""In-process apps for the observability tests: open and with access control (memory storage)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.app import create_app
from registry.settings import Settings
from storage_backends.base import StorageBackend
from storage_backends.memory import MemoryBackend
from tests.support.auth import auth_section

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
RULES = [{"repository": "**", "pull": ["alice", "bob"], "push": ["alice"], "delete": ["alice"]}]

AppClient = Callable[..., Any]


@pytest.fixture
async def app_client() -> AsyncIterator[Callable[..., Any]]:
    """`await make(settings=None, backend=None)` -> an httpx client on a fresh app."""
    opened: list[Any] = []

    async def make(
        settings: Settings | None = None, backend: StorageBackend | None = None
    ) -> httpx.AsyncClient:
        app = create_app(settings or Settings(), backend=backend or MemoryBackend())
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        opened.append(lifespan)
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://registry")
        opened.append(client)
        return client

    yield make
    for item in reversed(opened):
        if isinstance(item, httpx.AsyncClient):
            await item.aclose()
        else:
            await item.__aexit__(None, None, None)


@pytest.fixture
def auth_settings(tmp_path: Path) -> Settings:
    section = auth_section(tmp_path, USERS, RULES, lockout={"max_failures": 3})
    return Settings(auth=section)
