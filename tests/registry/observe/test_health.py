"""/healthz and /readyz in process: unauthenticated, terse, 503 with the failing checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from registry.observe import health
from registry.settings import Settings
from storage_backends.memory import MemoryBackend
from tests.registry.observe.conftest import AppClient


class _DownBackend(MemoryBackend):
    """Storage that stops answering: `exists` fails (an outage) or hangs (a stuck mount)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "up"

    async def exists(self, path: str) -> bool:
        if self.mode == "fail":
            raise OSError(5, "Input/output error: /secret/mount/point")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        return await super().exists(path)


async def test_probes_answer_ok_without_credentials(
    app_client: AppClient, auth_settings: Settings
) -> None:
    client = await app_client(auth_settings)
    assert (await client.get("/v2/")).status_code == 401  # access control is on
    for path in ("/healthz", "/readyz"):
        response = await client.get(path)
        assert (response.status_code, response.text) == (200, "ok\n")
        assert (await client.head(path)).status_code == 200


async def test_readyz_names_failing_storage_only(app_client: AppClient) -> None:
    backend = _DownBackend()
    client = await app_client(backend=backend)
    backend.mode = "fail"
    response = await client.get("/readyz")
    assert (response.status_code, response.text) == (503, "failing: storage\n")
    assert "secret" not in response.text
    assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
    backend.mode = "up"
    assert (await client.get("/readyz")).status_code == 200


async def test_readyz_times_out_on_hanging_storage(
    app_client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.2)
    backend = _DownBackend()
    client = await app_client(backend=backend)
    backend.mode = "hang"
    response = await asyncio.wait_for(client.get("/readyz"), 30)
    assert (response.status_code, response.text) == (503, "failing: storage\n")


async def test_readyz_fails_auth_when_users_file_goes(
    app_client: AppClient, auth_settings: Settings
) -> None:
    client = await app_client(auth_settings)
    assert auth_settings.auth is not None
    users = Path(auth_settings.auth["htpasswd"])
    users.rename(users.with_suffix(".gone"))
    response = await client.get("/readyz")
    assert (response.status_code, response.text) == (503, "failing: auth\n")
    users.with_suffix(".gone").write_text("not a valid line\n")
    users.with_suffix(".gone").rename(users)
    assert (await client.get("/readyz")).text == "failing: auth\n"
