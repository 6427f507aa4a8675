"""Read-only mode: pulls work, every write on /v2/ is 405 UNSUPPORTED with the spec's JSON
and a message (as distribution's maintenance.readonly answers 405), the upload purge does not
run; and its settings (YAML, environment, flag)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.app import create_app
from registry.cli import register
from registry.settings import Settings, SettingsError, load_settings
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import push_image
from tests.support.server import RegistryServer

NAME = "team/app"


async def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://registry")


@pytest.fixture
async def filled() -> AsyncIterator[MemoryBackend]:
    """A backend with one tagged image, pushed while writable."""
    backend = MemoryBackend()
    await backend.open()
    app = create_app(Settings(), backend=backend)
    async with app.router.lifespan_context(app), await _client(app) as client:
        manifest, _ = await push_image(client, NAME)
        put = await client.put(
            f"/v2/{NAME}/manifests/v1",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert put.status_code == 201
    yield backend


async def test_pulls_work_and_every_write_is_refused(filled: MemoryBackend) -> None:
    app = create_app(Settings(readonly=True), backend=filled)
    async with app.router.lifespan_context(app), await _client(app) as client:
        manifest = await client.get(f"/v2/{NAME}/manifests/v1")
        assert manifest.status_code == 200
        digest = manifest.headers["Docker-Content-Digest"]
        layer = manifest.json()["layers"][0]["digest"]
        assert (await client.get(f"/v2/{NAME}/blobs/{layer}")).content == b"layer-one"
        assert (await client.get(f"/v2/{NAME}/tags/list")).json()["tags"] == ["v1"]
        assert (await client.get("/v2/_catalog")).json()["repositories"] == [NAME]
        writes = [
            ("POST", f"/v2/{NAME}/blobs/uploads/"),
            ("POST", f"/v2/{NAME}/blobs/uploads/?digest={layer}"),
            ("POST", f"/v2/{NAME}/blobs/uploads/?mount={layer}&from={NAME}"),
            ("PATCH", f"/v2/{NAME}/blobs/uploads/some-session"),
            ("PUT", f"/v2/{NAME}/blobs/uploads/some-session?digest={layer}"),
            ("DELETE", f"/v2/{NAME}/blobs/uploads/some-session"),
            ("PUT", f"/v2/{NAME}/manifests/v2"),
            ("DELETE", f"/v2/{NAME}/manifests/v1"),
            ("DELETE", f"/v2/{NAME}/manifests/{digest}"),
            ("DELETE", f"/v2/{NAME}/blobs/{layer}"),
        ]
        for method, path in writes:
            response = await client.request(method, path, content=b"x")
            assert response.status_code == 405, (method, path)
            error = response.json()["errors"][0]
            assert error["code"] == "UNSUPPORTED"
            assert "read-only" in error["message"]
            assert response.headers["Allow"] == "GET, HEAD"
            assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        # nothing changed
        assert (await client.get(f"/v2/{NAME}/manifests/{digest}")).status_code == 200
        assert (await client.get(f"/v2/{NAME}/blobs/{layer}")).status_code == 200


async def test_writes_work_when_not_read_only(filled: MemoryBackend) -> None:
    app = create_app(Settings(), backend=filled)
    async with app.router.lifespan_context(app), await _client(app) as client:
        assert (await client.post(f"/v2/{NAME}/blobs/uploads/")).status_code == 202
        assert (await client.delete(f"/v2/{NAME}/manifests/v1")).status_code == 202


async def _stale_session(backend: MemoryBackend) -> str:
    state = await RegistryStore(backend).uploads.start(NAME)
    state.updated = time.time() - 3600
    await backend.put(paths.upload_state(state.id), state.to_json())
    return state.id


@pytest.mark.parametrize("readonly", [True, False])
async def test_the_upload_purge_does_not_run_in_read_only_mode(readonly: bool) -> None:
    backend = MemoryBackend()
    await backend.open()
    session = await _stale_session(backend)
    settings = Settings(readonly=readonly, upload_ttl=60, upload_purge_interval=0.05)
    app = create_app(settings, backend=backend)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.5)  # ten purge intervals
    survived = await backend.exists(paths.upload_state(session))
    assert survived is readonly


def test_read_only_from_yaml_environment_and_flag(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("readonly: true\n")
    assert load_settings(config, environ={}).readonly is True
    assert load_settings(environ={"PYREG_READONLY": "1"}).readonly is True
    assert load_settings(environ={"PYREG_READONLY": "false"}).readonly is False
    with pytest.raises(SettingsError):
        load_settings(environ={"PYREG_READONLY": "maybe"})
    config.write_text("readonly: maybe\n")
    with pytest.raises(SettingsError):
        load_settings(config, environ={})
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["serve", "--read-only"]).readonly is True
    assert parser.parse_args(["serve"]).readonly is None  # the config file decides


def test_a_served_registry_in_read_only_mode_from_the_environment(tmp_path: Path) -> None:
    """The setting travels from PYREG_READONLY through `pyreg serve` to the worker."""
    with RegistryServer(f"file://{tmp_path / 'storage'}", env={"PYREG_READONLY": "1"}) as server:
        assert httpx.get(f"{server.url}/v2/").status_code == 200
        refused = httpx.post(f"{server.url}/v2/team/app/blobs/uploads/")
        assert refused.status_code == 405
        assert "read-only" in refused.json()["errors"][0]["message"]
